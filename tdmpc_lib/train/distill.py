"""Distilling a frozen TD-MPC2 teacher into a student (TD-MPC-Opt, reference section 12).

Reward distillation (the paper): for the first step of every sampled sub-trajectory, both
models encode obs[0] with their own encoder and predict the reward of action[0]; the decoded
scalar rewards (two-hot expectation, then symexp: real reward units) are compared by MSE,

    L_distill = mean_B (r_S(obs_0, a_0) - r_T(obs_0, a_0))^2,   total += d_coef(step) * L_distill.

The student's side is its reward head on z_0 = encode(obs_0), i.e. the first reward prediction
of the TD-MPC2 rollout (the same value the paper's second encoder forward produces). With
`all_steps` every horizon step t contributes, the student's prediction being the one its reward
loss trains (on the rolled-out z_t) and the teacher's computed from obs_t with its own encoder.
The teacher is frozen: eval mode, requires_grad False, used under no_grad, never in an
optimizer. Its rewards can come from a teacher-target cache: one float per dataset row r,
the teacher's reward for (obs[r], action[r+1]) (row r+1 stores the action taken at obs r),
computed once, so sweeps over d_coef and seeds never run the teacher again.

Latent (next-state) distillation ablations: the teacher's predicted next latent
z'_T = next_T(encode_T(obs_t), a_t) (1376-d for the 317M teacher) against the student's
z_{t+1} = next_S(z_t, a_t) (128-d) through
  - 'linear-frozen': a Linear(L_T -> L_S) at random (Xavier-uniform) init, never trained
    (what the paper's code did);
  - 'linear': the same projection trained jointly with the world model;
  - 'pca': the top L_S principal components of teacher next-latents (fitted on `pca_samples`
    of exactly the kind of latent it is applied to, centred); the student latent is centred
    over the batch too, since PCA scores have mean zero.

Why SimNorm makes this comparison hard: both latents are SimNorm outputs, i.e. concatenations
of softmax groups of 8 (16 simplices for the 1M student, 172 for the 317M teacher). A student
latent lies in [0, 1]^L with every group summing to 1, whereas a linear or PCA image of the
teacher latent is an arbitrary real vector whose coordinates mix many teacher groups. There is
no correspondence between the teacher's 172 groups and the student's 16, the projected target
is generally not on the student's simplices (so the loss has a floor above zero that pulls
against the consistency loss), and PCA's variance ordering ignores the group structure that
gives SimNorm latents their meaning. The ablations therefore measure "does a crude linear
summary of the teacher's dynamics help", not "does matching the teacher's state help".
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import file_sha256, load_checkpoint
from ..device import DTYPES
from ..world_model import WorldModel
from .cache import TeacherTargetCache
from .config import DistillConfig
from .losses import encode, mlp_forward, task_rows


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


# ---------------------------------------------------------------------------- the teacher
class Teacher:
    """A frozen world model on its own device and dtype (it takes ownership of `model`).

    Distillation needs only the encoder, dynamics and reward head, so the policy and both Q
    ensembles are dropped (replaced by empty modules): the 317M teacher then holds 108M
    parameters (0.43 GB in fp32) instead of 503M. The task embedding's max_norm renormalisation
    (an in-place write on lookup) is applied once here, in fp32, and then switched off, so no
    teacher parameter ever changes afterwards (outputs are those the first lookup would give)."""

    UNUSED = ("_pi", "_Qs", "_target_Qs")

    def __init__(self, model: WorldModel, device=None, dtype: torch.dtype = torch.float32,
                 autocast: bool = False, sha256: str | None = None, path: str | None = None):
        device = torch.device(device) if device is not None else next(model.parameters()).device
        self.total_params = model.total_params  # the teacher's size as TD-MPC2 counts it
        model = model.float().eval()
        for name in self.UNUSED:
            setattr(model, name, nn.Identity())
        if model.cfg.multitask:
            with torch.no_grad():
                model._task_emb(torch.arange(model.cfg.num_tasks, device=model._task_emb.weight.device))  # rows > 1
            model._task_emb.max_norm = None
        self.model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
        self.device, self.dtype = device, dtype
        self.autocast = autocast and dtype == torch.float32
        self.sha256, self.path = sha256, path

    @classmethod
    def load(cls, path: str, device, dtype: str = "fp32", autocast: bool = False) -> "Teacher":
        model = load_checkpoint(path, device="cpu", dtype=torch.float32)
        sha = model.checkpoint_info.get("sha256") or file_sha256(path)
        return cls(model, device, DTYPES[dtype], autocast, sha256=sha, path=str(path))

    @property
    def latent_dim(self) -> int:
        return self.model.cfg.latent_dim

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, action: torch.Tensor, task: torch.Tensor, reward: bool = True,
                next_latent: bool = False, bf16: bool | None = None) -> dict[str, torch.Tensor]:
        """Teacher outputs for (obs (..., O), action (..., A), task), returned in fp32 on obs's
        device: 'reward' (..., 1) decoded scalars, 'next_z' (..., L_T) predicted next latent."""
        out_device = obs.device
        m = self.model
        use_bf16 = self.autocast if bf16 is None else bf16
        obs, action = obs.to(self.device, self.dtype), action.to(self.device, self.dtype)
        task = task.to(self.device)
        # The student's training forward (losses.encode / mlp_forward), not m.encode / m.reward:
        # the same function in another summation order, so a teacher with the student's weights
        # gives the student's predictions bit for bit and distills exactly 0.
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16 and self.dtype == torch.float32):
            e = task_rows(m, task)
            z = encode(m, obs, e)
            out = {}
            L = m.cfg.latent_dim
            if reward:
                out["reward"] = m.decode(mlp_forward(m._reward, torch.cat([z, action], dim=-1), e, L))
            if next_latent:
                out["next_z"] = mlp_forward(m._dynamics, torch.cat([z, action], dim=-1), e, L)
        return {k: v.float().to(out_device) for k, v in out.items()}


def reward_distill_loss(student_reward: torch.Tensor, teacher_reward: torch.Tensor) -> torch.Tensor:
    """Plain MSE between decoded scalar rewards (n, B, 1): the paper's L_distill."""
    return F.mse_loss(student_reward.float(), teacher_reward.float())


# ---------------------------------------------------------------------------- projections
class LatentProjection(nn.Module):
    """Teacher latent (L_T) -> student latent space (L_S) for the latent ablations."""

    def __init__(self, mode: str, teacher_dim: int, student_dim: int, seed: int = 0):
        super().__init__()
        if mode not in ("linear", "linear-frozen", "pca"):
            raise ValueError(f"unknown projection mode {mode!r}")
        self.mode, self.teacher_dim, self.student_dim = mode, teacher_dim, student_dim
        if mode == "pca":
            self.register_buffer("mean", torch.zeros(teacher_dim))
            self.register_buffer("components", torch.zeros(student_dim, teacher_dim))
            self.register_buffer("explained_variance_ratio", torch.zeros(student_dim))
            self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        else:
            self.linear = nn.Linear(teacher_dim, student_dim)
            gen = torch.Generator().manual_seed(seed)  # own generator: the training RNG stream is untouched
            bound = (6.0 / (teacher_dim + student_dim)) ** 0.5  # Xavier-uniform, zero bias (paper's code)
            with torch.no_grad():
                self.linear.weight.copy_(torch.rand(student_dim, teacher_dim, generator=gen) * 2 * bound - bound)
                self.linear.bias.zero_()
            self.linear.requires_grad_(mode == "linear")

    @torch.no_grad()
    def fit_pca(self, latents: torch.Tensor) -> None:
        """Centred PCA of teacher latents (n, L_T); keeps the top L_S components. Computed as the
        eigendecomposition of the (L_T, L_T) covariance in float64: the same components as an SVD
        of the centred data, several times faster for n >> L_T (25,600 x 1376 for the 317M)."""
        x = latents.double()
        if x.shape[0] < 2 or min(x.shape) < self.student_dim:
            raise ValueError(f"PCA to {self.student_dim} components needs at least {self.student_dim} samples "
                             f"of dimension >= {self.student_dim}; got {tuple(x.shape)} (raise pca_samples)")
        mean = x.mean(0)
        centred = x - mean
        var, vecs = torch.linalg.eigh(centred.T @ centred / (x.shape[0] - 1))  # ascending eigenvalues
        var, vecs = var.flip(0).clamp(min=0), vecs.flip(1)
        self.mean.copy_(mean.float())
        self.components.copy_(vecs[:, : self.student_dim].T.float())
        self.explained_variance_ratio.copy_((var[: self.student_dim] / var.sum()).float())
        self.fitted.fill_(True)

    def forward(self, z_teacher: torch.Tensor) -> torch.Tensor:
        if self.mode == "pca":
            return (z_teacher - self.mean) @ self.components.T
        return self.linear(z_teacher)

    def loss(self, z_student: torch.Tensor, z_teacher: torch.Tensor) -> torch.Tensor:
        """MSE between the student's next latents (n, B, L_S) and projected teacher ones."""
        target = self(z_teacher.float())
        z_student = z_student.float()
        if self.mode == "pca":
            z_student = z_student - z_student.mean(dim=-2, keepdim=True)  # centred over the batch
        return F.mse_loss(z_student, target)


def _draw_valid_rows(store, k: int, rng: np.random.Generator) -> np.ndarray:
    """min(k, V) distinct rows drawn uniformly from the V rows that have a next row in their
    episode, in O(k + episodes) memory: the same rows as rng.choice(np.flatnonzero(valid_rows(store)),
    k, replace=False), without that array of one int64 per row (2.8 GB for MT30). Episode e's
    valid rows are starts[e] .. starts[e+1]-2, so valid index v lies in the episode e with
    starts[e] - e <= v and is row v + e."""
    starts = store.episode_starts  # (E + 1,), the last entry is num_rows
    n_valid = int(store.num_rows) - (len(starts) - 1)
    picks = rng.choice(n_valid, size=min(k, n_valid), replace=False)
    first_valid = starts[:-1] - np.arange(len(starts) - 1)  # valid rows before each episode
    return picks + np.searchsorted(first_valid, picks, side="right") - 1


# ---------------------------------------------------------------------------- the distiller
class Distiller:
    """Everything the update needs from the teacher: targets (no gradient) and loss terms."""

    def __init__(self, cfg: DistillConfig, teacher: Teacher | None, student_latent_dim: int,
                 cache: TeacherTargetCache | None = None, seed: int = 0, device="cpu"):
        cfg.validate()
        self.cfg, self.teacher, self.cache = cfg, teacher, cache
        if teacher is None and (cfg.latent_enabled or (cfg.reward_enabled and cache is None)):
            raise ValueError("online distillation needs the teacher model")
        self.projection = None
        if cfg.latent_enabled:
            self.projection = LatentProjection(cfg.latent, teacher.latent_dim, student_latent_dim, seed).to(device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        if self.projection is None:
            return []
        return [p for p in self.projection.parameters() if p.requires_grad]

    def coefficient(self, step: int, total: int) -> float:
        return distill_coefficient(self.cfg.schedule, self.cfg.d_coef, step, total)

    def steps_used(self, horizon: int) -> int:
        return horizon if self.cfg.all_steps else 1

    @torch.no_grad()
    def fit_pca(self, store, seed: int, batch_size: int = 4096) -> None:
        """Fit the PCA on teacher next-latents of `pca_samples` random (obs_r, action_{r+1}) pairs
        (own generator: the training batches are the same with or without the fit)."""
        if self.projection is None or self.projection.mode != "pca" or bool(self.projection.fitted):
            return
        rng = np.random.Generator(np.random.PCG64(seed))
        rows = np.sort(_draw_valid_rows(store, self.cfg.pca_samples, rng))
        latents = []
        for lo in range(0, rows.size, batch_size):
            r = rows[lo:lo + batch_size]
            obs, task = store.gather(r, ("obs", "task"))
            (action,) = store.gather(r + 1, ("action",))
            out = self.teacher.predict(torch.from_numpy(obs), torch.from_numpy(action),
                                       torch.from_numpy(task.astype(np.int64)), reward=False, next_latent=True)
            latents.append(out["next_z"])
        self.projection.fit_pca(torch.cat(latents))

    @torch.no_grad()
    def targets(self, batch, horizon: int) -> dict[str, torch.Tensor]:
        """Teacher targets for the first n = 1 (paper) or H horizon steps of the batch."""
        n = self.steps_used(horizon)
        out = {}
        need_reward = self.cfg.reward_enabled
        if need_reward and self.cache is not None:
            out["reward"] = self.cache.lookup(batch.rows[:n])
            need_reward = False
        if need_reward or self.projection is not None:
            out.update(self.teacher.predict(batch.obs[:n], batch.action[:n], batch.task, reward=need_reward,
                                            next_latent=self.projection is not None))
        return out

    def losses(self, targets: dict, reward_logits: torch.Tensor, zs: torch.Tensor, decode) -> dict[str, torch.Tensor]:
        """'distill_reward': MSE of decoded rewards; 'distill_latent': projected next-latent MSE."""
        terms = {}
        if "reward" in targets:
            n = targets["reward"].shape[0]
            terms["distill_reward"] = reward_distill_loss(decode(reward_logits[:n]), targets["reward"])
        if "next_z" in targets:
            n = targets["next_z"].shape[0]
            terms["distill_latent"] = self.projection.loss(zs[1:n + 1], targets["next_z"])
        return terms

    def metrics(self) -> dict[str, float]:
        if self.projection is not None and self.projection.mode == "pca" and bool(self.projection.fitted):
            return {"pca_explained_variance": float(self.projection.explained_variance_ratio.sum())}
        return {}

    def state_dict(self) -> dict:
        return {"projection": None if self.projection is None else
                {k: v.detach().cpu() for k, v in self.projection.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        if self.projection is not None and state.get("projection") is not None:
            self.projection.load_state_dict(state["projection"])
