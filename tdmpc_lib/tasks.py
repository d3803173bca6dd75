"""Multi-task task sets: MT30 and MT80 task order, per-task observation/action dims,
episode lengths and discounts (official tdmpc2/common/__init__.py, tdmpc2/tdmpc2.py).

The task id of a task is its index in the task set's list; the public datasets and every
released multi-task checkpoint depend on this order, so it must never change.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

MT30_TASKS: tuple[str, ...] = (
    "walker-stand", "walker-walk", "walker-run", "cheetah-run", "reacher-easy", "reacher-hard",
    "acrobot-swingup", "pendulum-swingup", "cartpole-balance", "cartpole-balance-sparse",
    "cartpole-swingup", "cartpole-swingup-sparse", "cup-catch", "finger-spin", "finger-turn-easy",
    "finger-turn-hard", "fish-swim", "hopper-stand", "hopper-hop", "walker-walk-backwards",
    "walker-run-backwards", "cheetah-run-backwards", "cheetah-run-front", "cheetah-run-back",
    "cheetah-jump", "hopper-hop-backwards", "reacher-three-easy", "reacher-three-hard",
    "cup-spin", "pendulum-spin",
)

MT30_OBS_DIMS: tuple[int, ...] = (
    24, 24, 24, 17, 6, 6, 6, 3, 5, 5, 5, 5, 8, 9, 12, 12, 24, 15, 15, 24, 24, 17, 17, 17, 17,
    15, 8, 8, 8, 3,
)
MT30_ACTION_DIMS: tuple[int, ...] = (
    6, 6, 6, 6, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 5, 4, 4, 6, 6, 6, 6, 6, 6, 4, 3, 3, 2, 1,
)

MW_TASKS: tuple[str, ...] = tuple("mw-" + n for n in (
    "assembly", "basketball", "button-press-topdown", "button-press-topdown-wall", "button-press",
    "button-press-wall", "coffee-button", "coffee-pull", "coffee-push", "dial-turn", "disassemble",
    "door-open", "door-close", "drawer-close", "drawer-open", "faucet-open", "faucet-close",
    "hammer", "handle-press-side", "handle-press", "handle-pull-side", "handle-pull", "lever-pull",
    "peg-insert-side", "peg-unplug-side", "pick-out-of-hole", "pick-place", "pick-place-wall",
    "plate-slide", "plate-slide-side", "plate-slide-back", "plate-slide-back-side", "push-back",
    "push", "push-wall", "reach", "reach-wall", "shelf-place", "soccer", "stick-push", "stick-pull",
    "sweep-into", "sweep", "window-open", "window-close", "bin-picking", "box-close", "door-lock",
    "door-unlock", "hand-insert",
))
MW_OBS_DIM, MW_ACTION_DIM = 39, 4  # Meta-World v2 goal-observable state (not measured here)

DMC_EPISODE_LENGTH = 500  # agent steps (1000 control steps at action repeat 2)
MW_EPISODE_LENGTH = 100
ACTION_REPEAT = 2

# Discount heuristic (official tdmpc2/tdmpc2.py): f = L_ep / denom; gamma = clip((f - 1) / f, min, max).
DISCOUNT_DENOM, DISCOUNT_MIN, DISCOUNT_MAX = 5, 0.95, 0.995


def discount_for_episode_length(episode_length: int) -> float:
    frac = episode_length / DISCOUNT_DENOM
    return min(max((frac - 1) / frac, DISCOUNT_MIN), DISCOUNT_MAX)


@dataclass(frozen=True)
class TaskSet:
    """An ordered list of tasks with their true (unpadded) observation and action dims."""
    name: str
    tasks: tuple[str, ...]
    obs_dims: tuple[int, ...]
    action_dims: tuple[int, ...]
    episode_lengths: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.tasks)

    @property
    def obs_dim(self) -> int:
        """Padded observation size O (the maximum over tasks)."""
        return max(self.obs_dims)

    @property
    def action_dim(self) -> int:
        """Padded action size A (the maximum over tasks)."""
        return max(self.action_dims)

    @cached_property
    def discounts(self) -> tuple[float, ...]:
        return tuple(discount_for_episode_length(n) for n in self.episode_lengths)

    def index(self, task: str) -> int:
        """Task id of `task`; a clear error for an unknown name."""
        try:
            return self.tasks.index(task)
        except ValueError:
            raise ValueError(f"unknown task {task!r} for task set {self.name}; "
                             f"choose one of: {', '.join(self.tasks)}") from None

    def resolve(self, spec: str | list[str] | tuple[str, ...]) -> list[str]:
        """'mt30' / the set's name -> all tasks; 'a,b' or a list -> those tasks, checked."""
        if isinstance(spec, str):
            if spec.strip().lower() == self.name:
                return list(self.tasks)
            spec = [s for s in spec.split(",") if s.strip()]
        names = [s.strip() for s in spec]
        if not names:
            raise ValueError("no tasks given; pass a task set name such as 'mt30' or task names")
        for n in names:
            self.index(n)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:  # a repeated task would add its episodes into one slot (returns above 1000)
            raise ValueError(f"task(s) {', '.join(repeated)} given more than once; list each task once "
                             f"and set the number of episodes instead")
        return names


MT30 = TaskSet("mt30", MT30_TASKS, MT30_OBS_DIMS, MT30_ACTION_DIMS,
               (DMC_EPISODE_LENGTH,) * len(MT30_TASKS))
MT80 = TaskSet("mt80", MT30_TASKS + MW_TASKS,
               MT30_OBS_DIMS + (MW_OBS_DIM,) * len(MW_TASKS),
               MT30_ACTION_DIMS + (MW_ACTION_DIM,) * len(MW_TASKS),
               (DMC_EPISODE_LENGTH,) * len(MT30_TASKS) + (MW_EPISODE_LENGTH,) * len(MW_TASKS))
TASK_SETS = {"mt30": MT30, "mt80": MT80}


def get_task_set(name: str) -> TaskSet:
    try:
        return TASK_SETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown task set {name!r}; choose one of: {', '.join(TASK_SETS)}") from None
