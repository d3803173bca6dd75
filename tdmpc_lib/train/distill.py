"""Distilling a frozen TD-MPC2 teacher into a student (TD-MPC-Opt paper; its code, tdmpc2/tdmpc2.py, TDMPC2.update).

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

Beyond the paper, the teacher's value and policy, the two things MPPI reads besides the reward:

    value:   L_value  = mean_{n,B} (symlog mean_q Q_S,q(z_t, a_t) - symlog mean_q Q_T,q(obs_t, a_t))^2
             (both ensembles averaged over all members and decoded to real units; the student's
             Q in train mode, i.e. with its dropout), total += q_coef * L_value;
    policy:  L_policy = mean_{n,B,A} (tanh mu_S(z_t) - tanh mu_T(obs_t))^2 + (log_std_S - log_std_T)^2
             (the priors' means and log-stds, inactive action dims zero on both sides), added as
             pi_coef * L_policy to the policy loss (on the detached latents the policy step uses).

With `q_random_actions` = K > 0 the value term also compares both Qs at K uniform random actions
per state (drawn by `cache.contrast_actions` from the row index: the same actions in every run and in
the teacher cache, whose 'value_randomK' table holds the teacher's Qs there), so the
student learns how the teacher ranks the actions MPPI samples, not only the behaviour's actions:
L_value += mean (A_S - A_T)^2 / mean A_T^2 with A = Q(z, a_k) - mean_k Q(z, a_k) over the K
actions (advantage_distill_loss).

With `q_target_mix` = m > 0 the teacher's Q enters through the student's own value loss instead
(teacher-bootstrapped TD): the Q target at the data's (obs_t, a_t) becomes
y_t = (1 - m) (r_t + gamma Q'_S(z_{t+1}, pi_S(z_{t+1}))) + m Q_T(obs_t, a_t) at every horizon
step t (the TD target it replaces exists at every step, whatever `all_steps` says), trained by
TD-MPC2's two-hot cross-entropy; the value term is then that same cross-entropy at the K random
actions of every step against the teacher's Q there (random_action_value_ce).
Unlike the other terms it does not vanish for an identical teacher: it replaces the student's
bootstrapped target, whose level rises only slowly (about tau per update) on a short run.

With `detach_encoder` the distillation terms read detached latents (and task embeddings): they
train the heads they compare (reward head, Q ensemble, policy; dynamics for the latent term)
but never the encoder, whose latent is then shaped by TD-MPC2's own losses only.

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
from .. import math as tmath
from .cache import TeacherTargetCache, random_value_kind, task_contrast_actions
from .config import DistillConfig
from .losses import encode, layer_norm_mish, mlp_forward, q_logits, soft_ce, task_rows


def prior_moments(model: WorldModel, features: torch.Tensor, task) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy prior's (tanh mu, log_std), each (..., A), from the _pi network's output
    features (..., 2A), as WorldModel.pi computes them (inactive action dims 0), without drawing."""
    cfg = model.cfg
    mu, log_std = features.chunk(2, dim=-1)
    log_std = tmath.log_std(log_std, cfg.log_std_min, cfg.log_std_max)
    mask = model.action_mask(task, mu)
    if mask is not None:
        mu, log_std = mu * mask, log_std * mask
    return torch.tanh(mu), log_std


# ---------------------------------------------------------------------------- the teacher
class Teacher:
    """A frozen world model on its own device and dtype (it takes ownership of `model`).

    Reward and latent distillation need only the encoder, dynamics and reward head, so the target
    Q ensemble, and the policy and online Qs unless `keep` names them ('pi', 'Q': policy and value
    distillation), are dropped (replaced by empty modules): the 317M teacher then holds 108M
    parameters (0.43 GB in fp32) instead of 503M. The task embedding's max_norm renormalisation
    (an in-place write on lookup) is applied once here, in fp32, and then switched off, so no
    teacher parameter ever changes afterwards (outputs are those the first lookup would give)."""

    UNUSED = ("_pi", "_Qs", "_target_Qs")
    KEEP = {"pi": "_pi", "Q": "_Qs"}  # what `keep` may name

    def __init__(self, model: WorldModel, device=None, dtype: torch.dtype = torch.float32,
                 autocast: bool = False, sha256: str | None = None, path: str | None = None,
                 keep: tuple[str, ...] = ()):
        device = torch.device(device) if device is not None else next(model.parameters()).device
        self.total_params = model.total_params  # the teacher's size as TD-MPC2 counts it
        model = model.float().eval()
        self.kept = tuple(keep)
        for name in self.UNUSED:
            if name not in {self.KEEP[k] for k in self.kept}:
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
    def load(cls, path: str, device, dtype: str = "fp32", autocast: bool = False,
             keep: tuple[str, ...] = ()) -> "Teacher":
        model = load_checkpoint(path, device="cpu", dtype=torch.float32)
        sha = model.checkpoint_info.get("sha256") or file_sha256(path)
        return cls(model, device, DTYPES[dtype], autocast, sha256=sha, path=str(path), keep=keep)

    @staticmethod
    def keep_for(cfg: DistillConfig) -> tuple[str, ...]:
        """The networks beyond encoder, dynamics and reward head that `cfg`'s terms need."""
        return (("pi",) if cfg.policy_enabled else ()) + (("Q",) if cfg.value_enabled else ())

    @property
    def latent_dim(self) -> int:
        return self.model.cfg.latent_dim

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, action: torch.Tensor, task: torch.Tensor, reward: bool = True,
                next_latent: bool = False, value: bool = False, policy: bool = False,
                value_actions: torch.Tensor | None = None, bf16: bool | None = None) -> dict[str, torch.Tensor]:
        """Teacher outputs for (obs (..., O), action (..., A), task), returned in fp32 on obs's
        device: 'reward' (..., 1) decoded scalars, 'next_z' (..., L_T) predicted next latent,
        'value' (..., 1) the decoded Q of every member averaged (eval mode: no dropout),
        'pi_mean' / 'pi_log_std' (..., A) the policy prior's tanh-mean and log-std at obs;
        with value_actions (k, ..., A): 'value_random' (k, ..., 1), the Q at each of them."""
        for flag, net in ((value or value_actions is not None, "Q"), (policy, "pi")):
            if flag and net not in self.kept:
                raise ValueError(f"this teacher was loaded without its {net} network (Teacher keep={self.kept})")
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
            if value:
                out["value"] = m.decode(q_logits(m, z, action, e)).mean(0)
            if policy:
                out["pi_mean"], out["pi_log_std"] = prior_moments(m, mlp_forward(m._pi, z, e, L), task)
            if value_actions is not None:
                a = value_actions.to(self.device, self.dtype)
                out["value_random"] = m.decode(q_logits(m, z.expand(a.shape[0], *z.shape), a, e)).mean(0)
        return {k: v.float().to(out_device) for k, v in out.items()}


def reward_distill_loss(student_reward: torch.Tensor, teacher_reward: torch.Tensor) -> torch.Tensor:
    """Plain MSE between decoded scalar rewards (n, B, 1): the paper's L_distill."""
    return F.mse_loss(student_reward.float(), teacher_reward.float())


def value_distill_loss(student_value: torch.Tensor, teacher_value: torch.Tensor) -> torch.Tensor:
    """MSE in symlog space between ensemble-mean decoded Qs (n, B, 1): the scale of a value (up
    to ~1000 in DMControl) does not swamp the other terms, and an identical Q gives exactly 0."""
    return F.mse_loss(tmath.symlog(student_value.float()), tmath.symlog(teacher_value.float()))


def advantage_distill_loss(student_q: torch.Tensor, teacher_q: torch.Tensor) -> torch.Tensor:
    """Normalised MSE of the advantages over K actions of each state, Q (K, n, B, 1) minus its
    mean over the K actions: mean (A_S - A_T)^2 / mean A_T^2. MPPI weighs candidate actions by
    their value differences (a few units on a Q of hundreds), which a loss on the Q level barely
    sees; 1 for a student whose Q ignores the action, 0 for an identical one."""
    adv_s = student_q.float() - student_q.float().mean(0, keepdim=True)
    adv_t = teacher_q.float() - teacher_q.float().mean(0, keepdim=True)
    return (adv_s - adv_t).pow(2).mean() / adv_t.pow(2).mean().clamp(min=1e-6)


def teacher_td_target(td_target: torch.Tensor, teacher_value: torch.Tensor, mix: float) -> torch.Tensor:
    """y_t = (1 - mix) * (r_t + gamma Q'_S(z_{t+1}, pi_S)) + mix * Q_T(obs_t, a_t) for the n steps
    the teacher's values cover: td_target (H, B, 1), teacher_value (n, B, 1) -> (H, B, 1)."""
    n = teacher_value.shape[0]
    mixed = (1 - mix) * td_target[:n] + mix * teacher_value.to(td_target.dtype)
    return torch.cat([mixed, td_target[n:]]) if n < td_target.shape[0] else mixed


def random_action_value_ce(model: WorldModel, z: torch.Tensor, actions: torch.Tensor, e: torch.Tensor | None,
                           teacher_value: torch.Tensor, norm_mish=layer_norm_mish) -> torch.Tensor:
    """TD-MPC2's value loss (soft cross-entropy of every member's logits against the two-hot
    target) at K actions per state, the teacher's Q as target: z (n, B, L), actions (K, n, B, A),
    teacher_value (K, n, B, 1) -> scalar. The two-hot target encodes the teacher's value to a
    fraction of a bin, so the student learns value differences far below the bin width."""
    logits = q_logits(model, z.expand(actions.shape[0], *z.shape), actions, e, norm_mish=norm_mish)
    c = model.cfg
    return soft_ce(logits.float(), teacher_value.unsqueeze(0), c.num_bins, c.vmin, c.vmax).mean()


def policy_distill_loss(student_mean: torch.Tensor, student_log_std: torch.Tensor, teacher_mean: torch.Tensor,
                        teacher_log_std: torch.Tensor) -> torch.Tensor:
    """MSE of the priors' tanh-means plus MSE of their log-stds, each (n, B, A)."""
    return (F.mse_loss(student_mean.float(), teacher_mean.float())
            + F.mse_loss(student_log_std.float(), teacher_log_std.float()))


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
                 cache: TeacherTargetCache | dict[str, TeacherTargetCache] | None = None, seed: int = 0,
                 device="cpu", action_mask=None):
        """action_mask: (task, like) -> mask of the task's action dims (WorldModel.action_mask of
        the student, whose task set is the teacher's), for random actions without a teacher model."""
        cfg.validate()
        self.action_mask = action_mask if teacher is None else teacher.model.action_mask
        # caches by kind ('reward', 'value', 'policy', 'value_randomK'); a single cache is a reward cache
        caches = {} if cache is None else dict(cache) if isinstance(cache, dict) else {"reward": cache}
        for kind, c in caches.items():
            if getattr(c, "kind", kind) != kind:  # any object with lookup(rows) serves as a cache
                raise ValueError(f"teacher cache {c.path} holds {c.kind} targets, not {kind}")
        self.cfg, self.teacher, self.caches = cfg, teacher, caches
        online = set(cfg.target_kinds) - set(caches)
        if teacher is None and (cfg.needs_teacher_model or online):
            raise ValueError("online distillation needs the teacher model")
        if self.action_mask is None and cfg.value_at_random_actions:
            raise ValueError("value distillation at random actions from a cache needs the student's action_mask")
        self.projection = None
        if cfg.latent_enabled:
            self.projection = LatentProjection(cfg.latent, teacher.latent_dim, student_latent_dim, seed).to(device)

    @property
    def cache(self) -> TeacherTargetCache | None:
        """The reward cache (None: none)."""
        return self.caches.get("reward")

    def trainable_parameters(self) -> list[nn.Parameter]:
        if self.projection is None:
            return []
        return [p for p in self.projection.parameters() if p.requires_grad]

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

    def value_steps(self, horizon: int) -> int:
        """Horizon steps the value targets cover: all of them with q_target_mix (the TD target it
        replaces exists at every step), else steps_used."""
        return horizon if self.cfg.q_target_mix > 0 else self.steps_used(horizon)

    @torch.no_grad()
    def targets(self, batch, horizon: int) -> dict[str, torch.Tensor]:
        """Teacher targets for the first n = 1 (paper) or H horizon steps of the batch (value
        targets: value_steps)."""
        n, n_v = self.steps_used(horizon), self.value_steps(horizon)
        random_kind = random_value_kind(self.cfg.q_random_actions)
        out = {}
        need = []
        for kind in self.cfg.target_kinds:
            if kind not in self.caches:
                need.append(kind)
                continue
            values = self.caches[kind].lookup(batch.rows[:n if kind in ("reward", "policy") else n_v])  # (n, B, C)
            if kind == "policy":
                out["pi_mean"], out["pi_log_std"] = values.chunk(2, dim=-1)
            elif kind == random_kind:
                out["value_random"] = values.permute(2, 0, 1).unsqueeze(-1)  # (K, n_v, B, 1)
            else:
                out[kind] = values
        if self.cfg.value_at_random_actions:
            out["random_actions"] = task_contrast_actions(batch.rows[:n_v], self.cfg.q_random_actions, batch.task,
                                                          batch.action.shape[-1], self.action_mask)  # (K, n, B, A)
        value_actions = out.get("random_actions") if random_kind in need else None
        if n_v != n and ("value" in need or value_actions is not None):  # value targets cover more steps
            out.update(self.teacher.predict(batch.obs[:n_v], batch.action[:n_v], batch.task, reward=False,
                                            value="value" in need, value_actions=value_actions))
            need, value_actions = [k for k in need if k not in ("value", random_kind)], None
        if need or self.projection is not None:
            out.update(self.teacher.predict(batch.obs[:n], batch.action[:n], batch.task, reward="reward" in need,
                                            value="value" in need, policy="policy" in need,
                                            next_latent=self.projection is not None, value_actions=value_actions))
        return out

    def losses(self, targets: dict, model: WorldModel, zs: torch.Tensor, action: torch.Tensor,
               e: torch.Tensor | None, reward_logits: torch.Tensor, q_all: torch.Tensor | None = None,
               norm_mish=layer_norm_mish) -> dict[str, torch.Tensor]:
        """The world-model distillation terms on the update's rollout: zs (H+1, B, L) latents,
        action (H, B, A), e (B, T) task rows, reward_logits (H, B, K), q_all (N_q, H, B, K) the
        Q logits of every member (train mode). 'distill_reward': MSE of decoded rewards;
        'distill_value': symlog MSE of ensemble-mean Qs; 'distill_latent': projected next-latent
        MSE. With detach_encoder the heads are evaluated again on the detached latents."""
        terms = {}
        n = next((targets[k].shape[0] for k in ("reward", "next_z", "pi_mean", "value") if k in targets), 0)
        mix = "value" in targets and self.cfg.q_target_mix > 0  # value terms over targets["value"]'s steps
        L = model.cfg.latent_dim
        if self.cfg.detach_encoder:
            z, a = zs[:n].detach(), action[:n]
            e = None if e is None else e.detach()
            za = torch.cat([z, a], dim=-1)
            if "reward" in targets:
                reward_logits = mlp_forward(model._reward, za, e, L, norm_mish)
            if "value" in targets and not mix:
                q_all = q_logits(model, z, a, e, norm_mish=norm_mish)
            next_z = mlp_forward(model._dynamics, za, e, L, norm_mish) if "next_z" in targets else None
        else:
            next_z = zs[1:n + 1]
        if "reward" in targets:
            terms["distill_reward"] = reward_distill_loss(model.decode(reward_logits[:n]), targets["reward"])
        if mix:
            if "value_random" in targets:  # the data's actions are in the TD target (td_target)
                n_v = targets["value"].shape[0]
                z = zs[:n_v].detach() if self.cfg.detach_encoder else zs[:n_v]
                terms["distill_value"] = random_action_value_ce(model, z, targets["random_actions"], e,
                                                                targets["value_random"], norm_mish)
        elif "value" in targets:
            terms["distill_value"] = value_distill_loss(model.decode(q_all[:, :n]).mean(0), targets["value"])
            if "value_random" in targets:  # the same term at the random actions, averaged with it
                a = targets["random_actions"]  # (K, n, B, A); e is already detached with detach_encoder
                z = zs[:n].detach() if self.cfg.detach_encoder else zs[:n]
                q_r = model.decode(q_logits(model, z.expand(a.shape[0], *z.shape), a, e, norm_mish=norm_mish)).mean(0)
                terms["distill_value"] = terms["distill_value"] + advantage_distill_loss(q_r, targets["value_random"])
        if "next_z" in targets:
            terms["distill_latent"] = self.projection.loss(next_z, targets["next_z"])
        return terms

    def td_target(self, td_target: torch.Tensor, targets: dict) -> torch.Tensor:
        """The student's Q target (H, B, 1): TD-MPC2's, or with q_target_mix > 0 mixed with the
        teacher's Q at the data's actions at every step (teacher_td_target)."""
        if self.cfg.q_target_mix <= 0 or "value" not in targets:
            return td_target
        return teacher_td_target(td_target, targets["value"], self.cfg.q_target_mix)

    def policy_loss(self, targets: dict, pi_info: dict) -> torch.Tensor | None:
        """'distill_policy' from the policy step's prior (pi_info of policy_values on zs (H+1, B, L)),
        or None when the term is off."""
        if "pi_mean" not in targets:
            return None
        n = targets["pi_mean"].shape[0]
        return policy_distill_loss(pi_info["mean"][:n], pi_info["log_std"][:n], targets["pi_mean"],
                                   targets["pi_log_std"])

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
