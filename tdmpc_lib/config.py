"""Typed model configuration and the TD-MPC2 size presets (official tdmpc2/common/__init__.py, config.yaml).

`model_config(size, task_set)` resolves a preset for a task set with the same rules as the
official parser: the task_dim rule (96 for MT80 or sizes 1/317, else 64; 0 single-task)
and the MT30 exception that the 19M model uses a 512-d latent.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field

from .tasks import TaskSet, get_task_set

# Architecture keys a preset overrides; everything else comes from ModelConfig's defaults.
PRESETS: dict[str | int, dict] = {
    "tiny": dict(enc_dim=64, mlp_dim=64, latent_dim=32, num_enc_layers=2, num_q=2),
    1: dict(enc_dim=256, mlp_dim=384, latent_dim=128, num_enc_layers=2, num_q=2),
    5: dict(enc_dim=256, mlp_dim=512, latent_dim=512, num_enc_layers=2),
    19: dict(enc_dim=1024, mlp_dim=1024, latent_dim=768, num_enc_layers=3),
    48: dict(enc_dim=1792, mlp_dim=1792, latent_dim=768, num_enc_layers=4),
    317: dict(enc_dim=4096, mlp_dim=4096, latent_dim=1376, num_enc_layers=5, num_q=8),
}
SIZES = (1, 5, 19, 48, 317)


@dataclass
class ModelConfig:
    """World-model architecture. Defaults are TD-MPC2's config.yaml; presets override some.

    obs_dim / action_dim are the padded maxima of the task set (24 / 6 for MT30).
    action_dims lists each task's true action size (rebuilds the action masks).
    """
    obs_dim: int = 24
    action_dim: int = 6
    task_set: str | None = "mt30"
    num_tasks: int = 30
    task_dim: int = 96
    action_dims: tuple[int, ...] = field(default_factory=tuple)
    discounts: tuple[float, ...] = field(default_factory=tuple)
    enc_dim: int = 256
    mlp_dim: int = 512
    latent_dim: int = 512
    num_enc_layers: int = 2
    num_q: int = 5
    dropout: float = 0.01
    simnorm_dim: int = 8
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    size: str | int | None = None

    @property
    def multitask(self) -> bool:
        return self.num_tasks > 0 and self.task_dim > 0

    @property
    def bin_size(self) -> float:
        return (self.vmax - self.vmin) / (self.num_bins - 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["action_dims"] = list(self.action_dims)
        d["discounts"] = list(self.discounts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config fields {sorted(unknown)}; known: {sorted(names)}")
        d = dict(d)
        for k in ("action_dims", "discounts"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)


def task_dim_rule(size: str | int, task_set: str | None) -> int:
    """Official parser: single-task -> 0; MT80 or sizes {1, 317} -> 96; otherwise 64."""
    if task_set is None:
        return 0
    return 96 if task_set == "mt80" or size in (1, 317) else 64


def _parse_size(size) -> str | int:
    """The one rule for a model size: a preset's name, 'tiny' or a whole number of millions
    given as an int or its digits ('48'); bools and floats are refused (True == 1 and 1.0 == 1
    would otherwise pass as the 1M preset)."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = int(size)
    elif isinstance(size, str) and size.strip().isdigit():
        size = int(size.strip())
    if not isinstance(size, (int, str)) or isinstance(size, bool) or size not in PRESETS:
        raise ValueError(f"unknown model size {size!r}; choose one of {list(PRESETS)}")
    return size


def model_config(size: str | int, task_set: str | TaskSet | None = "mt30", **overrides) -> ModelConfig:
    """Resolve a size preset (1/5/19/48/317 or 'tiny') for a task set ('mt30', 'mt80')."""
    size = _parse_size(size)
    arch = dict(PRESETS[size])
    if task_set is None:
        cfg = ModelConfig(task_set=None, num_tasks=0, task_dim=0, size=size, **arch)
    else:
        ts = get_task_set(task_set) if isinstance(task_set, str) else task_set
        if size == 19 and ts.name == "mt30":
            arch["latent_dim"] = 512  # the official parser's MT30 exception for the 19M preset
        cfg = ModelConfig(obs_dim=ts.obs_dim, action_dim=ts.action_dim, task_set=ts.name,
                          num_tasks=len(ts), task_dim=task_dim_rule(size, ts.name),
                          action_dims=ts.action_dims, discounts=ts.discounts, size=size, **arch)
    return dataclasses.replace(cfg, **overrides)
