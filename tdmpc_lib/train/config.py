"""Typed configuration of a training run (reference sections 4 and 12).

`TrainConfig` holds the TD-MPC2 offline update's hyperparameters (defaults: the official
config.yaml and the TD-MPC-Opt student config) and the run's bookkeeping (steps, device,
evaluation, checkpoints, logging). `DistillConfig` holds everything about the frozen teacher:
the paper's reward distillation (`d_coef`, 0.4 for 200K-step runs, 0.45 for 1M-step runs),
its options beyond the paper (all horizon steps, coefficient schedules, a teacher-target
cache) and the latent (next-state) distillation ablations.

One path for a parameter: CLI / notebook -> these dataclasses -> the function that uses it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..planner import PlannerConfig

SCHEDULES = ("constant", "decrease", "increase")
LATENT_MODES = ("none", "linear", "linear-frozen", "pca")
PRECISIONS = ("fp32", "bf16")
TEACHER_DTYPES = ("fp32", "bf16", "fp16")
CACHE_PRECISIONS = ("auto", "fp32", "bf16")
EVAL_PROTOCOLS = ("clean", "paper")

# Fields that may differ between a run and its `--resume` without changing the losses it
# computes: how long it runs and what it writes around the updates. (A 'decrease'/'increase'
# distillation schedule is relative to `steps`, so extending such a run reshapes its schedule.)
RUN_CONTROL_FIELDS = ("steps", "resume", "eval_freq", "eval_final", "eval_tasks", "eval_episodes",
                      "eval_protocol", "eval_policy", "eval_planner", "checkpoint_freq", "keep_checkpoints", "log_freq", "progress",
                      "wandb_project", "out")
# Fields that may differ on resume, at the price of bit-identical losses (a warning says so).
RESUME_WARN_FIELDS = ("device", "threads", "compile")


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
    cache: None -> online teacher every step; 'auto' -> a teacher-target cache beside the data
        (built once, reused by every run with the same teacher); or a .npy path.
    cache_precision / cache_tolerance / cache_batch_size: how the cache is computed; 'auto' uses
        bf16 when its max abs error on a check batch against fp32 is <= cache_tolerance.
    """
    teacher: str | None = None
    teacher_device: str | None = None
    teacher_dtype: str = "fp32"
    teacher_autocast: bool = False
    d_coef: float = 0.45
    schedule: str = "constant"
    all_steps: bool = False
    latent: str = "none"
    latent_coef: float = 1.0
    projection_lr: float | None = None
    pca_samples: int = 25600
    cache: str | None = None
    cache_precision: str = "auto"
    cache_tolerance: float = 0.02
    cache_batch_size: int = 4096

    @property
    def enabled(self) -> bool:
        return self.teacher is not None

    @property
    def reward_enabled(self) -> bool:
        return self.enabled and self.d_coef > 0

    @property
    def latent_enabled(self) -> bool:
        return self.enabled and self.latent != "none"

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.latent not in LATENT_MODES:
            raise ValueError(f"latent must be one of {LATENT_MODES}, got {self.latent!r}")
        if self.teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {TEACHER_DTYPES}, got {self.teacher_dtype!r}")
        if self.cache_precision not in CACHE_PRECISIONS:
            raise ValueError(f"cache_precision must be one of {CACHE_PRECISIONS}, got {self.cache_precision!r}")
        for name in ("d_coef", "latent_coef", "cache_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.projection_lr is not None and not (math.isfinite(self.projection_lr) and self.projection_lr > 0):
            raise ValueError(f"projection_lr must be a finite number > 0, got {self.projection_lr}")
        if self.teacher is None and (self.latent != "none" or self.cache is not None):
            raise ValueError("latent distillation and a teacher-target cache need a teacher checkpoint")
        if self.pca_samples < 1 or self.cache_batch_size < 1:
            raise ValueError("pca_samples and cache_batch_size must be >= 1")


@dataclass
class TrainConfig:
    """One offline TD-MPC2 training run. Hyperparameter defaults are TD-MPC2's (section 4)."""
    data: str = ""
    out: str = "runs/train"
    student_size: str | int = 1
    init: str | None = None  # optional checkpoint the student starts from (else fresh init)
    # --- the update (section 4)
    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    pi_adam_eps: float = 1e-5
    grad_clip_norm: float = 20.0
    tau: float = 0.01  # target-Q Polyak rate and RunningScale rate
    rho: float = 0.5
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    entropy_coef: float = 1e-4
    horizon: int = 3
    batch_size: int = 256
    # --- the run
    steps: int = 1000
    seed: int = 1
    device: str = "cpu"
    precision: str = "fp32"  # 'bf16': autocast of the forward passes
    compile: bool = False
    threads: int = 0  # torch intra-op threads (0: torch's default)
    eval_freq: int = 0  # 0: no periodic evaluation
    eval_final: bool = False
    eval_tasks: str = "mt30"
    eval_episodes: int = 1
    eval_protocol: str = "clean"
    eval_policy: str = "plan"
    eval_planner: PlannerConfig = field(default_factory=PlannerConfig)  # MPPI settings of the evaluations
    checkpoint_freq: int = 10000
    keep_checkpoints: int = 0  # keep only the newest N step_*.pt (0: keep all)
    log_freq: int = 100
    progress: bool = True
    wandb_project: str | None = None
    resume: bool = False
    distill: DistillConfig = field(default_factory=DistillConfig)

    def validate(self) -> None:
        if not self.data:
            raise ValueError("data: the dataset folder (a store made by tdmpc_lib.data) is required")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.eval_protocol not in EVAL_PROTOCOLS:
            raise ValueError(f"eval_protocol must be one of {EVAL_PROTOCOLS}, got {self.eval_protocol!r}")
        for name in ("lr", "enc_lr_scale", "pi_adam_eps", "grad_clip_norm", "tau", "rho", "consistency_coef",
                     "reward_coef", "value_coef", "entropy_coef"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        for name in ("horizon", "batch_size", "steps", "seed", "threads", "eval_freq", "eval_episodes", "log_freq",
                     "checkpoint_freq", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        for name in ("horizon", "batch_size", "log_freq", "checkpoint_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "eval_freq", "threads", "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.eval_freq or self.eval_final:  # a bad task list fails now, not after the updates are spent
            from ..tasks import get_task_set
            get_task_set("mt30").resolve(self.eval_tasks)
            if self.eval_episodes < 1:
                raise ValueError(f"eval_episodes must be at least 1, got {self.eval_episodes}")
        self.distill.validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        distill = DistillConfig(**d.pop("distill", {}))
        if isinstance(d.get("eval_planner"), dict):
            d["eval_planner"] = PlannerConfig(**d["eval_planner"])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown train config fields {sorted(unknown)}")
        return cls(distill=distill, **d)

    def training_fields(self) -> dict:
        """The fields that determine the losses (all but RUN_CONTROL_FIELDS)."""
        d = self.to_dict()
        for k in RUN_CONTROL_FIELDS + RESUME_WARN_FIELDS:
            d.pop(k, None)
        distill = d.pop("distill")
        distill.pop("teacher_device", None)
        d.update({f"distill.{k}": v for k, v in distill.items()})
        return d
