"""Typed configuration of a training run (official tdmpc2/config.yaml; TD-MPC-Opt paper).

`TrainConfig` holds the TD-MPC2 offline update's hyperparameters (defaults: the official
config.yaml and the TD-MPC-Opt student config) and the run's bookkeeping (steps, device,
evaluation, checkpoints, logging). `DistillConfig` holds everything about the frozen teacher:
the paper's reward distillation (`d_coef`, 0.4 for 200K-step runs, 0.45 for 1M-step runs),
its options beyond the paper (all horizon steps, coefficient schedules, a teacher-target
cache) and the latent (next-state) distillation ablations.

One path for a parameter: CLI / notebook -> these dataclasses -> the function that uses it.
The command line `python -m tdmpc_lib.train` is generated from them by tyro (the fields'
comments are its help); `validate()` holds every range and cross-field rule, so the Python API,
the CLI, `--set` and the study's notebook parameters get the same checks.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field

from typing import Annotated

import tyro

from ..choices import CachePrecision, LatentMode, ModelSize, Precision, Schedule
from ..choices import TrainPrecision, check_choice, options
from ..evaluate import EvalConfig
from ..typed import from_dict
from .cache import random_value_kind

# The choices as tuples (derived from the Literal types of tdmpc_lib.choices)
SCHEDULES, LATENT_MODES = options(Schedule), options(LatentMode)

# Fields that may differ between a run and its `--resume` without changing the losses it
# computes: how long it runs and what it writes around the updates. (A 'decrease'/'increase'
# distillation schedule is relative to `steps`, so extending such a run reshapes its schedule.)
RUN_CONTROL_FIELDS = ("steps", "resume", "eval_freq", "eval_final", "eval", "checkpoint_freq", "keep_checkpoints",
                      "log_freq", "progress", "wandb_project", "out")
EVAL_DEVICE_DEFAULT = EvalConfig.device  # TrainConfig.eval.device left as is: the run's device

# The evaluation fields of run configs saved before TrainConfig.eval (eval_tasks, ...)
_FLAT_EVAL_FIELDS = ("tasks", "episodes", "protocol", "policy", "planner")

# Fields that may differ on resume, at the price of bit-identical losses (a warning says so).
RESUME_WARN_FIELDS = ("device", "threads", "compile")


def distill_coefficient(schedule: str, base: float, step: int, total: int) -> float:
    """d_coef at update `step` of `total`: constant, linear decrease to 0, linear increase to base."""
    frac = step / max(total, 1)
    if schedule == "constant":
        return base
    if schedule == "decrease":
        return base * max(0.0, 1.0 - frac)
    if schedule == "increase":
        return base * min(1.0, frac)
    raise ValueError(f"unknown distillation schedule {schedule!r}")


@dataclass
class DistillConfig:
    """The frozen teacher and the distillation terms added to the TD-MPC2 loss.

    teacher: checkpoint path (any size preset, any format `load_checkpoint` reads) or None.
    teacher_device / teacher_dtype: where and in which weight dtype the teacher lives
        (default: the training device, fp32). teacher_autocast runs an fp32 teacher's matmuls
        in bf16.
    d_coef, schedule: coefficient of the reward-distillation MSE at step s of S:
        constant -> d_coef; decrease -> d_coef * max(0, 1 - s/S); increase -> d_coef * min(1, s/S).
    all_steps: distil every horizon step t = 0..H-1 instead of only t = 0 (the paper).
    latent, latent_coef: next-state latent distillation ablation ('none', 'linear' = a trained
        projection, 'linear-frozen' = random frozen projection as the paper's code, 'pca').
    projection_lr: learning rate of a trained linear projection (None: the model's lr).
    pca_samples: number of teacher next-latents the PCA is fitted on.
    q_coef (beyond the paper): value distillation, the student's ensemble-mean Q at the data's
        (obs_t, a_t) against the teacher's, MSE in symlog space.
    pi_coef (beyond the paper): policy distillation, the student's policy prior (tanh-mean and
        log-std) at obs_t against the teacher's prior, MSE; added to the policy loss.
    q_random_actions: value distillation also at this many uniform random actions per state (the
        actions MPPI samples, which the data's actions rarely cover): the teacher's Q at
        (obs_t, a ~ U[-1, 1] on the task's action dims) is a target too (the actions are a
        function of the row, so a teacher cache holds these Qs too).
    q_target_mix (beyond the paper): value distillation through the student's own value loss: its Q
        target at the data's (obs_t, a_t) is (1 - q_target_mix) * TD target + q_target_mix *
        Q_T(obs_t, a_t) at every horizon step, and the random-action term is the same two-hot cross-entropy against the
        teacher's Q (instead of the symlog and advantage MSEs). Needs q_coef > 0.
    detach_encoder: the distillation terms read detached latents, so they train the heads they
        compare (reward, Q, policy; dynamics for the latent term) and never the encoder.
    cache: None -> online teacher every step; 'auto' -> a teacher-target cache beside the data
        (built once, reused by every run with the same teacher); or a .npy path.
    cache_precision / cache_tolerance / cache_batch_size: how the cache is computed; 'auto' uses
        bf16 when its max abs error on a check batch against fp32 is <= cache_tolerance.
    """
    teacher: str | None = None  # frozen teacher checkpoint (any size preset); None: plain TD-MPC2
    teacher_device: str | None = None  # the teacher's device (None: the run's device)
    teacher_dtype: Precision = "fp32"  # the teacher's weights
    teacher_autocast: bool = False  # bf16 matmuls for an fp32 teacher
    d_coef: float = 0.45  # reward-distillation coefficient
    schedule: Schedule = "constant"  # d_coef over the run
    all_steps: bool = False  # distil every horizon step, not only t=0
    latent: LatentMode = "none"  # next-latent distillation ablation
    latent_coef: float = 1.0  # coefficient of the next-latent distillation loss
    projection_lr: float | None = None  # a trained projection's learning rate (None: the model's)
    pca_samples: int = 25600  # teacher next-latents the PCA projection is fitted on
    q_coef: float = 0.0  # value distillation: the teacher's Q as a target of the student's Q
    pi_coef: float = 0.0  # policy distillation: the teacher's prior as a target of the student's
    q_random_actions: int = 0  # value distillation also at this many random actions per state
    q_target_mix: float = 0.0  # share of the teacher's Q in the student's Q target (0: TD-MPC2's TD target)
    detach_encoder: bool = False  # keep distillation gradients out of the encoder (heads only)
    # 'auto' (beside the data) or a .npy path: teacher reward targets computed once (None: online)
    cache: Annotated[str | None, tyro.conf.arg(name="teacher-cache")] = None
    cache_precision: CachePrecision = "auto"  # 'auto': bf16 when within cache_tolerance of fp32
    cache_tolerance: float = 0.02  # max abs error of a bf16 cache on a check batch
    cache_batch_size: int = 4096  # rows per teacher forward while the cache is built

    @property
    def enabled(self) -> bool:
        return self.teacher is not None

    def coefficient(self, step: int, total: int) -> float:
        """The reward-distillation coefficient at update `step` (0-based) of `total` (`schedule`)."""
        return distill_coefficient(self.schedule, self.d_coef, step, total)

    @property
    def reward_enabled(self) -> bool:
        return self.enabled and self.d_coef > 0

    @property
    def latent_enabled(self) -> bool:
        return self.enabled and self.latent != "none"

    @property
    def value_enabled(self) -> bool:
        return self.enabled and self.q_coef > 0

    @property
    def policy_enabled(self) -> bool:
        return self.enabled and self.pi_coef > 0

    @property
    def value_at_random_actions(self) -> bool:
        """Value distillation also at q_random_actions random actions."""
        return self.value_enabled and self.q_random_actions > 0

    @property
    def needs_teacher_model(self) -> bool:
        """A term whose targets no cache holds: the latent one."""
        return self.latent_enabled

    @property
    def target_kinds(self) -> tuple[str, ...]:
        """The per-row teacher targets the enabled terms read ('reward', 'value', 'policy', and
        'value_randomK' for the Qs at K random actions)."""
        on = {"reward": self.reward_enabled, "value": self.value_enabled, "policy": self.policy_enabled,
              random_value_kind(self.q_random_actions): self.value_at_random_actions}
        return tuple(k for k, v in on.items() if v)

    @property
    def cached_kinds(self) -> tuple[str, ...]:
        """The teacher-target caches this config reads: target_kinds, when it has a cache."""
        return self.target_kinds if self.cache is not None else ()

    def validate(self) -> None:
        for name in ("schedule", "latent", "teacher_dtype", "cache_precision"):
            check_choice(name, getattr(self, name), _HINTS[DistillConfig][name])
        for name in ("d_coef", "latent_coef", "q_coef", "pi_coef", "q_target_mix", "cache_tolerance"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.projection_lr is not None and not (math.isfinite(self.projection_lr) and self.projection_lr > 0):
            raise ValueError(f"projection_lr must be a finite number > 0, got {self.projection_lr}")
        if self.teacher is None and (self.latent != "none" or self.cache is not None):
            raise ValueError("latent distillation and a teacher-target cache need a teacher checkpoint")
        if self.q_target_mix > 1:
            raise ValueError(f"q_target_mix is a share in [0, 1], got {self.q_target_mix}")
        if self.q_target_mix > 0 and self.q_coef <= 0:
            raise ValueError("q_target_mix needs value distillation on (q_coef > 0): the teacher's Q is its target")
        if not _is_whole(self.q_random_actions) or self.q_random_actions < 0:
            raise ValueError(f"q_random_actions must be a whole number >= 0, got {self.q_random_actions!r}")
        for name in ("pca_samples", "cache_batch_size"):
            value = getattr(self, name)
            if not _is_whole(value) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")


@dataclass
class TrainConfig:
    """One offline TD-MPC2 training run. Hyperparameter defaults are TD-MPC2's (official config.yaml)."""
    data: str = ""  # dataset folder (a store made by tdmpc_lib.data); required
    out: str = "runs/train"  # run folder (checkpoints, metrics, config)
    student_size: ModelSize = 1  # student preset
    init: str | None = None  # optional checkpoint the student starts from (else fresh init)
    lr: float = 3e-4  # learning rate (official TDMPC2._update)
    enc_lr_scale: float = 0.3  # the encoder's learning rate relative to lr
    pi_adam_eps: float = 1e-5  # Adam epsilon of the policy optimizer
    grad_clip_norm: float = 20.0  # gradient-norm clip of the world model
    tau: float = 0.01  # target-Q Polyak rate and RunningScale rate
    rho: float = 0.5  # discount of the per-horizon-step loss weights
    consistency_coef: float = 20.0  # latent-consistency loss coefficient
    reward_coef: float = 0.1  # reward loss coefficient
    value_coef: float = 0.1  # Q loss coefficient
    entropy_coef: float = 1e-4  # policy entropy coefficient
    horizon: int = 3  # model rollout length of an update
    batch_size: int = 256  # sub-trajectories per update
    steps: int = 1000  # updates of the run
    seed: int = 1  # seeds the student's init, the sampler and the evaluations
    device: str = "cpu"  # cpu, cuda or cuda:N
    precision: TrainPrecision = "fp32"  # 'bf16': autocast of the forward passes
    compile: bool = False  # fused LayerNorm + Mish kernels by torch.compile (eager with a warning if it cannot build)
    threads: int = 0  # torch intra-op threads (0: torch's default)
    eval_freq: int = 0  # evaluate every N updates (0: never)
    eval_final: bool = False  # evaluate at the end of the run
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(episodes=1))  # those evaluations (on the run's device)
    checkpoint_freq: int = 10000
    keep_checkpoints: int = 0  # keep only the newest N step_*.pt (0: keep all)
    log_freq: int = 100
    progress: bool = True  # show a progress bar
    wandb_project: str | None = None  # also log to Weights & Biases (optional)
    # continue the run in --out from its newest checkpoint; its saved config is used, overridden
    # only by the options given with --resume (e.g. a larger --steps)
    resume: bool = False
    # the teacher and the distillation terms; their command-line flags have no prefix (--d-coef)
    distill: Annotated[DistillConfig, tyro.conf.arg(name="")] = field(default_factory=DistillConfig)

    def validate(self) -> None:
        if not self.data:
            raise ValueError("data: the dataset folder (a store made by tdmpc_lib.data) is required")
        from ..files import check_output_dir
        check_output_dir(self.out)  # a run folder that cannot be written fails before any update
        for name in ("precision",):
            check_choice(name, getattr(self, name), _HINTS[TrainConfig][name])
        from ..config import _parse_size
        _parse_size(self.student_size)
        for name in ("lr", "enc_lr_scale", "pi_adam_eps", "grad_clip_norm", "tau", "rho", "consistency_coef",
                     "reward_coef", "value_coef", "entropy_coef"):
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("horizon", "batch_size", "steps", "seed", "threads", "eval_freq", "log_freq",
                     "checkpoint_freq", "keep_checkpoints"):
            value = getattr(self, name)
            if not _is_whole(value):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        for name in ("horizon", "batch_size", "log_freq", "checkpoint_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "eval_freq", "threads", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.eval.device not in (EVAL_DEVICE_DEFAULT, self.device):
            raise ValueError(f"eval.device is {self.eval.device!r} but a run evaluates on its own device "
                             f"({self.device!r}); leave eval.device unset")
        try:  # a bad task list fails now, not after the updates are spent
            self.eval.validate()
        except ValueError as e:
            raise ValueError(f"eval.{e}") from None
        self.distill.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A saved config (config.json, a checkpoint's train_config), names and types checked.
        Runs saved before the evaluation settings were an EvalConfig held them as flat eval_*
        fields; those are read into `eval`, so such a run still resumes."""
        d = dict(d)
        flat = {k: d.pop(f"eval_{k}") for k in _FLAT_EVAL_FIELDS if f"eval_{k}" in d}
        if flat:
            d["eval"] = {**dict(d.get("eval") or {}), **flat}
        return from_dict(cls, d, "TrainConfig")

    def training_fields(self) -> dict:
        """The fields that determine the losses (all but RUN_CONTROL_FIELDS)."""
        d = self.to_dict()
        for k in RUN_CONTROL_FIELDS + RESUME_WARN_FIELDS:
            d.pop(k, None)
        distill = d.pop("distill")
        distill.pop("teacher_device", None)
        d.update({f"distill.{k}": v for k, v in distill.items()})
        return d


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_HINTS = {cls: typing.get_type_hints(cls) for cls in (DistillConfig, TrainConfig)}
