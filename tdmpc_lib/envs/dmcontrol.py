"""One MT30 DMControl task behind a small numpy interface (official tdmpc2/envs/dmcontrol.py).

`make_env(task, seed, episode)` builds the dm_control environment (stock suite task or one of
the 11 custom tasks) and wraps it in `DMControlEnv`: flat float32 observations, the same action
applied for 2 control steps with the rewards summed, and episodes of exactly 500 agent steps.
Rendering needs MUJOCO_GL (egl or osmesa offscreen) set before dm_control is first imported.
"""
from __future__ import annotations

import numpy as np
from dm_control import suite

from .. import tasks
from . import custom

# MT30 task names use "cup" for dm_control's ball_in_cup domain.
_DOMAIN_ALIASES = {"cup": "ball_in_cup"}


class DMControlEnv:
    """A dm_control environment seen by the agent: numpy in, numpy out.

    Attributes: task (name), obs_dim, action_dim, episode_length (500 agent steps),
    action_repeat (2 control steps per agent step), physics (for rendering), dm_env.
    """

    episode_length = tasks.DMC_EPISODE_LENGTH
    action_repeat = tasks.ACTION_REPEAT

    def __init__(self, task: str, dm_env):
        self.task = task
        self.dm_env = dm_env
        self.physics = dm_env.physics
        spec = dm_env.action_spec()
        # The official chain maps [-1, 1] actions onto the task's native bounds; every MT30
        # task's bounds already are [-1, 1], so that map is the identity and is left out.
        if not (np.all(spec.minimum == -1) and np.all(spec.maximum == 1)):
            raise ValueError(f"task {task!r} has action bounds other than [-1, 1]")
        self.action_dim = spec.shape[0]
        self._action_dtype = spec.dtype
        self.obs_dim = sum(int(np.prod(s.shape)) for s in dm_env.observation_spec().values())
        self._steps: int | None = None  # agent steps taken this episode; None before reset()

    def reset(self) -> np.ndarray:
        """Start the next episode of the seeded sequence; returns obs float32 (obs_dim,)."""
        self._steps = 0
        return self._flatten(self.dm_env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, float]]:
        """Apply `action` (action_dim,) — or a longer zero-padded one, sliced to action_dim —
        for `action_repeat` control steps.

        Returns (obs float32 (obs_dim,), reward summed over the control steps, done = 500 agent
        steps taken, info {'success': 0.0, 'terminated': 0.0}).
        """
        if self._steps is None or self._steps >= self.episode_length:
            # dm_control would silently start a new episode here; make that an error instead.
            raise RuntimeError(f"{self.task}: call reset() before stepping a new episode")
        action = np.asarray(action)[: self.action_dim].astype(self._action_dtype)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self.dm_env.step(action)
            reward += 0.0 if time_step.reward is None else float(time_step.reward)
        self._steps += 1
        done = self._steps >= self.episode_length
        return (self._flatten(time_step.observation), reward, done,
                {"success": 0.0, "terminated": 0.0})

    def render(self, width: int = 384, height: int = 384, camera_id: int = 0) -> np.ndarray:
        """An RGB frame, uint8 (height, width, 3)."""
        return self.physics.render(height=height, width=width, camera_id=camera_id)

    @staticmethod
    def _flatten(observation: dict[str, np.ndarray]) -> np.ndarray:
        """The observation dict's values, flattened, in insertion order, as one float32 vector."""
        values = [np.asarray(v).ravel() for v in observation.values()]  # scalars -> size 1
        return np.concatenate(values).astype(np.float32)


def _suite_names(task: str) -> tuple[str, str]:
    """'cup-catch' -> ('ball_in_cup', 'catch'); 'cartpole-balance-sparse' ->
    ('cartpole', 'balance_sparse'): split at the first '-', '-' -> '_' in the rest."""
    domain, name = task.replace("-", "_").split("_", 1)
    return _DOMAIN_ALIASES.get(domain, domain), name


def make_env(task: str, seed: int = 1, episode: int = 0) -> DMControlEnv:
    """The environment of MT30 task `task`, seeded like the official code (random=seed).

    Episodes of one env follow a fixed sequence of initial states: the official evaluation
    makes one env per task and resets it before each episode, so its episode k starts from the
    (k+1)-th reset. `episode` = k makes that reproducible in a fresh env: k resets are done and
    discarded here, so the caller's first `reset()` returns episode k's initial observation.
    """
    if task not in tasks.MT30_TASKS:
        raise ValueError(f"unknown task {task!r}; valid MT30 tasks are: "
                         f"{', '.join(tasks.MT30_TASKS)}")
    if task in custom.CUSTOM_TASKS:
        dm_env = custom.load(task, seed)
    else:
        domain, name = _suite_names(task)
        dm_env = suite.load(domain, name, task_kwargs={"random": seed}, visualize_reward=False)
    for _ in range(episode):
        dm_env.reset()
    return DMControlEnv(task, dm_env)
