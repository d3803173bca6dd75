"""The 11 custom MT30 tasks (official tdmpc2/envs/tasks/): models derived from dm_control's XMLs,
task classes, and `load(task, seed)` returning a dm_control environment."""
from .suite import CUSTOM_TASKS, load

__all__ = ["CUSTOM_TASKS", "load"]
