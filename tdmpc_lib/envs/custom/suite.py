"""The 11 custom MT30 tasks as dm_control `base.Task`s (official tdmpc2/envs/tasks/*.py).

Every task reuses the stock domain's Physics class and episode initialisation; only the reward
(and, for cup-spin, the initial ball placement) is new. Rewards are per control step in [0, 1];
the agent-facing wrapper sums them over its action repeat.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from dm_control.rl import control
from dm_control.suite import ball_in_cup, base, cheetah, hopper, pendulum, reacher, walker
from dm_control.utils import rewards

from . import models

_INF = float("inf")

# Walker: the stock stand height and walk/run speeds, with the target speed negated.
WALKER_STAND_HEIGHT = 1.2
WALKER_WALK_SPEED, WALKER_RUN_SPEED = 1.0, 8.0

# Cheetah: speeds are fractions of the stock run speed of 10 m/s.
CHEETAH_UP_HEIGHT = 1.2
CHEETAH_BACKWARDS_SPEED = 0.8 * 10
CHEETAH_ONE_FOOT_SPEED = 0.6 * 10
CHEETAH_JUMP_SPEED = 0.5  # the jump rewards |speed| <= 0.5, i.e. staying in place

HOPPER_STAND_HEIGHT, HOPPER_MAX_HEIGHT = 0.6, 2.0
HOPPER_BACKWARDS_SPEED = 1.0

CUP_SPIN_DISTANCE, CUP_SPIN_SPEED = 0.5, 6.0
CUP_INIT_OUT_PROB = 0.1  # fraction of episodes that may start with the ball outside the cup

REACHER_EASY_TARGET, REACHER_HARD_TARGET = 0.05, 0.015  # target sphere radii (stock values)

PENDULUM_SPIN_SPEED = 9.0


def _at_least(x: float, bound: float, margin: float, **kwargs) -> float:
    """tol(x; bound, inf, margin): 1 above `bound`, decaying below it."""
    return rewards.tolerance(x, bounds=(bound, _INF), margin=margin, **kwargs)


def _at_most(x: float, bound: float, margin: float, **kwargs) -> float:
    """tol(x; -inf, bound, margin): 1 below `bound`, decaying above it."""
    return rewards.tolerance(x, bounds=(-_INF, bound), margin=margin, **kwargs)


def _body_z(physics, body: str) -> float:
    """World z of a body's frame origin."""
    return physics.named.data.xpos[body, "z"]


class BackwardsWalker(walker.PlanarWalker):
    """walker-walk/run-backwards: the stock walk/run reward with the x-velocity target negated."""

    def get_reward(self, physics: walker.Physics) -> float:
        standing = _at_least(physics.torso_height(), WALKER_STAND_HEIGHT, WALKER_STAND_HEIGHT / 2)
        upright = (1 + physics.torso_upright()) / 2
        stand = (3 * standing + upright) / 4
        move = _at_most(physics.horizontal_velocity(), -self._move_speed, self._move_speed / 2,
                        value_at_margin=0.5, sigmoid="linear")
        return stand * (5 * move + 1) / 6


class CheetahRunBackwards(cheetah.Cheetah):
    """cheetah-run-backwards: linear in -speed, 1 at speed <= -8."""

    def get_reward(self, physics: cheetah.Physics) -> float:
        return _at_most(physics.speed(), -CHEETAH_BACKWARDS_SPEED, CHEETAH_BACKWARDS_SPEED,
                        value_at_margin=0, sigmoid="linear")


class CheetahRunOneFoot(cheetah.Cheetah):
    """cheetah-run-front (`foot`="bfoot") / cheetah-run-back (`foot`="ffoot"): run forward
    with the torso and `foot` (the foot that should stay in the air) above 1.2."""

    def __init__(self, foot: str, random=None):
        self._foot = foot
        super().__init__(random=random)

    def get_reward(self, physics: cheetah.Physics) -> float:
        margin = CHEETAH_UP_HEIGHT / 2
        torso_up = _at_least(_body_z(physics, "torso"), CHEETAH_UP_HEIGHT, margin)
        foot_up = _at_least(_body_z(physics, self._foot), CHEETAH_UP_HEIGHT, margin)
        up = (3 * foot_up + 2 * torso_up) / 5
        speed = _at_least(physics.speed(), CHEETAH_ONE_FOOT_SPEED, CHEETAH_ONE_FOOT_SPEED,
                          value_at_margin=0, sigmoid="linear")
        return up * (5 * speed + 1) / 6


class CheetahJump(cheetah.Cheetah):
    """cheetah-jump: the mean of "stand on the front foot" and "stand on the back foot"."""

    def _stand(self, physics: cheetah.Physics, foot: str) -> float:
        height = (_body_z(physics, "torso") + _body_z(physics, foot)) / 2
        high = _at_least(height, CHEETAH_UP_HEIGHT, CHEETAH_UP_HEIGHT / 2)
        still = rewards.tolerance(physics.speed(), bounds=(-CHEETAH_JUMP_SPEED, CHEETAH_JUMP_SPEED),
                                  margin=CHEETAH_JUMP_SPEED, value_at_margin=0, sigmoid="linear")
        return (5 * high + still) / 6

    def get_reward(self, physics: cheetah.Physics) -> float:
        return (self._stand(physics, "bfoot") + self._stand(physics, "ffoot")) / 2


class HopperHopBackwards(hopper.Hopper):
    """hopper-hop-backwards: standing (an indicator) times a linear reward for speed <= -1."""

    def __init__(self, random=None):
        super().__init__(hopping=True, random=random)

    def get_reward(self, physics: hopper.Physics) -> float:
        standing = rewards.tolerance(physics.height(), (HOPPER_STAND_HEIGHT, HOPPER_MAX_HEIGHT))
        hopping = _at_most(physics.speed(), -HOPPER_BACKWARDS_SPEED, HOPPER_BACKWARDS_SPEED / 2,
                           value_at_margin=0.5, sigmoid="linear")
        return standing * hopping


class CupSpin(ball_in_cup.BallInCup):
    """cup-spin: keep the ball out of the cup, far from it (>= 0.5) and fast (>= 6 m/s)."""

    def initialize_episode(self, physics: ball_in_cup.Physics) -> None:
        """Place the ball without contacts, inside the cup unless this episode drew "out".

        The draw order (the "out" flag once, then x and z per attempt) fixes the initial
        states of a seeded sequence of episodes, so it must not change.
        """
        may_start_out = self.random.uniform() < CUP_INIT_OUT_PROB
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-.2, .2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(.2, .5)
            physics.after_reset()  # forward kinematics and collision detection
            if physics.data.ncon == 0 and (may_start_out or physics.in_target()):
                break
        base.Task.initialize_episode(self, physics)  # skip the stock placement

    def get_reward(self, physics: ball_in_cup.Physics) -> float:
        distance = float(np.linalg.norm(physics.ball_to_target()))
        velocity = float(np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]]))
        far = _at_least(distance, CUP_SPIN_DISTANCE, CUP_SPIN_DISTANCE / 2,
                        value_at_margin=0.5, sigmoid="linear")
        fast = _at_least(velocity, CUP_SPIN_SPEED, CUP_SPIN_SPEED / 2,
                         value_at_margin=0.5, sigmoid="linear")
        return (1 - physics.in_target()) * (far + 2 * fast) / 3


class PendulumSpin(pendulum.SwingUp):
    """pendulum-spin: linear reward for |angular velocity| >= 9 rad/s in either direction."""

    def get_reward(self, physics: pendulum.Physics) -> float:
        speed = abs(float(physics.angular_velocity()[0]))
        return _at_least(speed, PENDULUM_SPIN_SPEED, PENDULUM_SPIN_SPEED / 2,
                         value_at_margin=0.5, sigmoid="linear")


@dataclass(frozen=True)
class _Domain:
    """How to build one domain's physics, and its episode timing.

    `control_timestep` None means one physics step per control step. Every domain here gives
    1000 control steps per episode (time_limit / control timestep).
    """
    physics: type
    model: Callable[[], tuple[str, dict[str, bytes]]]
    time_limit: float
    control_timestep: float | None = None


_WALKER = _Domain(walker.Physics, models.walker_model, 25, 0.025)
_CHEETAH = _Domain(cheetah.Physics, models.cheetah_model, 10)
_HOPPER = _Domain(hopper.Physics, hopper.get_model_and_assets, 20, 0.02)
_REACHER3 = _Domain(reacher.Physics, models.reacher_three_links_model, 20)
_CUP = _Domain(ball_in_cup.Physics, ball_in_cup.get_model_and_assets, 20, 0.02)
_PENDULUM = _Domain(pendulum.Physics, pendulum.get_model_and_assets, 20)

# MT30 name -> (domain, task constructor taking the `random` seed).
_TASKS: dict[str, tuple[_Domain, Callable[[object], base.Task]]] = {
    "walker-walk-backwards": (_WALKER, lambda r: BackwardsWalker(WALKER_WALK_SPEED, random=r)),
    "walker-run-backwards": (_WALKER, lambda r: BackwardsWalker(WALKER_RUN_SPEED, random=r)),
    "cheetah-run-backwards": (_CHEETAH, lambda r: CheetahRunBackwards(random=r)),
    "cheetah-run-front": (_CHEETAH, lambda r: CheetahRunOneFoot("bfoot", random=r)),
    "cheetah-run-back": (_CHEETAH, lambda r: CheetahRunOneFoot("ffoot", random=r)),
    "cheetah-jump": (_CHEETAH, lambda r: CheetahJump(random=r)),
    "hopper-hop-backwards": (_HOPPER, lambda r: HopperHopBackwards(random=r)),
    # The stock Reacher task (reward: finger within target + finger radius; stock init) as is.
    "reacher-three-easy": (_REACHER3, lambda r: reacher.Reacher(REACHER_EASY_TARGET, random=r)),
    "reacher-three-hard": (_REACHER3, lambda r: reacher.Reacher(REACHER_HARD_TARGET, random=r)),
    "cup-spin": (_CUP, lambda r: CupSpin(random=r)),
    "pendulum-spin": (_PENDULUM, lambda r: PendulumSpin(random=r)),
}
CUSTOM_TASKS: tuple[str, ...] = tuple(_TASKS)


def load(task: str, seed: int | None = None) -> control.Environment:
    """The dm_control environment of custom MT30 task `task` (e.g. "cup-spin").

    `seed` seeds the task's RandomState, like `task_kwargs={"random": seed}` for suite.load.
    """
    domain, make_task = _TASKS[task]
    physics = domain.physics.from_xml_string(*domain.model())
    return control.Environment(physics, make_task(seed), time_limit=domain.time_limit,
                               control_timestep=domain.control_timestep)
