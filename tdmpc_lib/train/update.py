"""One TD-MPC2 gradient update (official tdmpc2/tdmpc2.py, TDMPC2._update), with optional distillation terms.

    targets (eval mode, no grad) -> model losses (train mode) + distillation -> world-model step
    -> policy step on the detached latents -> Polyak update of the target Qs -> eval mode.

Optimizers (official): Adam over [encoder at lr * enc_lr_scale, dynamics, reward, Qs, task
embedding at lr] (+ a trained latent projection, at projection_lr), gradients clipped to a
global norm of grad_clip_norm; a separate Adam(pi, lr, eps=pi_adam_eps), clipped alike.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import time
import warnings

import torch

from ..world_model import WorldModel
from .config import TrainConfig
from .distill import Distiller
from .losses import (
    RunningScale,
    compiled_layer_norm_mish,
    encode,
    layer_norm_mish,
    model_losses,
    policy_loss,
    policy_values,
    task_rows,
    td_targets,
)

# glibc mallopt parameters (malloc.h) and the values a training process uses.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_TRIM_THRESHOLD_BYTES = 512 << 20
_MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's own upper limit for this setting on 64-bit
_malloc_tuned = False


def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks for reuse instead of returning them to the OS (once per process).

    An update allocates and frees ~100 MB of activations and gradients in blocks of 0.1-3 MB.
    By default glibc serves blocks above its mmap threshold with fresh mmaps and trims the heap
    above 128 KiB-32 MiB of free space, so every update page-faults the same memory in again:
    ~3,500 minor faults per 1M update at batch 256, about 5% of its CPU time on the 2-core VM
    (measured: 0.3 faults per update afterwards). The cost is that up to
    _TRIM_THRESHOLD_BYTES of freed memory stays mapped. No-op off glibc. Returns whether set."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        _malloc_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
                             and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False
    return _malloc_tuned


def compiled_norm_mish(model: WorldModel):
    """(compiled LayerNorm + Mish, compile seconds), or (layer_norm_mish, 0) with a warning where
    torch.compile cannot build it (e.g. no C++ compiler): the update then runs eagerly.

    TrainConfig.compile used to compile model_losses and policy_values whole; on the 2-core CPU
    that took 96-173 s and the update was no faster (graph breaks at the embedding renorm, the
    random member draws and the policy's info dict; the matmuls are MKL calls either way).
    LayerNorm + Mish is where a compiled kernel beats the eager ops (2x on their forward and
    backward). The training-mode variants of the model's widths are built here (so a failing
    compiler is found before any update); the no-grad and bf16 ones in the first update."""
    tic = time.perf_counter()
    cfg = model.cfg
    try:
        fn = compiled_layer_norm_mish()
        shapes = [((8, w), (w,)) for w in sorted({cfg.enc_dim, cfg.mlp_dim})]
        shapes.append(((cfg.num_q, 8, cfg.mlp_dim), (cfg.num_q, 1, cfg.mlp_dim)))  # Q members' own affine
        for shape, affine in shapes:
            h = torch.randn(shape, requires_grad=True)
            w, b = torch.ones(affine, requires_grad=True), torch.zeros(affine, requires_grad=True)
            fn(h, w, b).sum().backward()
    except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
        warnings.warn(f"compile: the fused LayerNorm + Mish kernels could not be built ({type(err).__name__}: "
                      f"{err}); training runs eagerly", stacklevel=3)
        return layer_norm_mish, 0.0
    return fn, time.perf_counter() - tic


def world_model_param_groups(model: WorldModel, cfg: TrainConfig) -> list[dict]:
    """The world-model optimizer's parameter groups, as TD-MPC2 (tdmpc2.py, TDMPC2.__init__)
    builds them: the encoder at lr * enc_lr_scale, then dynamics, reward, Q ensemble and the task
    embedding (multi-task) at lr. The policy has its own optimizer."""
    groups = [{"params": list(model._encoder.parameters()), "lr": cfg.lr * cfg.enc_lr_scale},
              {"params": list(model._dynamics.parameters())},
              {"params": list(model._reward.parameters())},
              {"params": list(model._Qs.parameters())}]
    if model.cfg.multitask:
        groups.append({"params": list(model._task_emb.parameters())})
    return groups


# Each loss term of `Learner.update` and the TrainConfig field that weighs it in the total; 'pi'
# is the policy's whole loss (its distillation term included), of weight 1.
LOSS_WEIGHTS = {"consistency": "consistency_coef", "reward": "reward_coef", "value": "value_coef",
                "distill_reward": "distill.d_coef", "distill_value": "distill.q_coef",
                "distill_latent": "distill.latent_coef", "distill_policy": "distill.pi_coef", "pi": None}


class Learner:
    """Owns the optimizers, the RunningScale and the update step of one student."""

    def __init__(self, model: WorldModel, cfg: TrainConfig, distiller: Distiller | None = None):
        self.model, self.cfg, self.distiller = model, cfg, distiller
        self.device = next(model.parameters()).device
        groups = world_model_param_groups(model, cfg)
        extra = distiller.trainable_parameters() if distiller is not None else []
        if extra:
            groups.append({"params": extra, "lr": cfg.distill.projection_lr or cfg.lr})
        # Fused Adam: one kernel per parameter instead of ~10 tensor ops per parameter (PyTorch
        # defaults to its per-tensor loop on the CPU); the same update up to float rounding.
        fused = self.device.type in ("cpu", "cuda")
        self.optim = torch.optim.Adam(groups, lr=cfg.lr, fused=fused)
        self.pi_optim = torch.optim.Adam(model._pi.parameters(), lr=cfg.lr, eps=cfg.pi_adam_eps, fused=fused)
        self.model_params = [p for g in groups for p in g["params"]]
        self.pi_params = list(model._pi.parameters())
        self.scale = RunningScale(cfg.tau, self.device)
        self.bf16 = cfg.precision == "bf16"
        if self.device.type == "cpu":
            keep_freed_memory()
        self.norm_mish, self.compile_s = layer_norm_mish, 0.0
        if cfg.compile:
            self.norm_mish, self.compile_s = compiled_norm_mish(model)

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def update(self, batch, step: int = 0) -> dict[str, torch.Tensor]:
        """One update on `batch` (already on the model's device); `step` (0-based) only sets the
        distillation coefficient's schedule. Returns named detached scalar tensors."""
        cfg, model = self.cfg, self.model
        obs, action, reward, task = batch.obs, batch.action, batch.reward, batch.task
        # TD targets: no gradient, eval mode (no Q dropout), before any parameter changes.
        model.eval()
        with torch.no_grad(), self._autocast():
            e = task_rows(model, task)
            next_z = encode(model, obs[1:], e, self.norm_mish)
            td_target = td_targets(model, next_z, reward, task, e, self.norm_mish).float()
            teacher_targets = self.distiller.targets(batch, cfg.horizon) if self.distiller else {}
            if teacher_targets:  # value distillation through the target (q_target_mix), else unchanged
                td_target = self.distiller.td_target(td_target, teacher_targets)

        # Model losses in train mode (Q dropout active).
        model.train()
        with self._autocast():
            rollout = {}
            terms, zs, reward_logits = model_losses(model, obs, action, reward, task, next_z.float(), td_target,
                                                    cfg.rho, self.norm_mish, outputs=rollout)
            total = (cfg.consistency_coef * terms["consistency"] + cfg.reward_coef * terms["reward"]
                     + cfg.value_coef * terms["value"])
            out = {}
            if teacher_targets:
                dterms = self.distiller.losses(teacher_targets, model, zs, action, rollout["task_rows"], reward_logits,
                                               rollout["q_logits"], self.norm_mish)
                if "distill_reward" in dterms:
                    d_coef = self.distiller.cfg.coefficient(step, cfg.steps)
                    total = total + d_coef * dterms["distill_reward"]
                    out["d_coef"] = torch.tensor(d_coef, dtype=torch.float64)
                if "distill_value" in dterms:
                    total = total + cfg.distill.q_coef * dterms["distill_value"]
                if "distill_latent" in dterms:
                    total = total + cfg.distill.latent_coef * dterms["distill_latent"]
                terms.update(dterms)
        # Zero before backward (the fork's order): the official code zeroes after its step, so the
        # policy loss's gradient on the task embedding leaks into the next world-model step
        # (official tdmpc2/tdmpc2.py); clearing here trains the embedding only through the world-model losses.
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model_params, cfg.grad_clip_norm)
        self.optim.step()

        # Policy update on detached latents, online Qs without parameter gradients. The task
        # embedding is frozen meanwhile (as in the fork): its pi-loss gradient would be discarded
        # by the zero_grad above anyway, so it is not computed at all.
        self.pi_optim.zero_grad(set_to_none=True)
        emb = model._task_emb.weight if model.cfg.multitask else None
        if emb is not None:
            emb.requires_grad_(False)
        try:
            with self._autocast():
                q, pi_info = policy_values(model, zs.detach(), task, self.norm_mish)
                pi_loss, pi_stats = policy_loss(q, pi_info, self.scale, cfg.rho, cfg.entropy_coef)
                distill_policy = self.distiller.policy_loss(teacher_targets, pi_info) if teacher_targets else None
                if distill_policy is not None:  # policy distillation: the teacher's prior as a target
                    pi_loss = pi_loss + cfg.distill.pi_coef * distill_policy
                    terms["distill_policy"] = distill_policy
            pi_loss.backward()
        finally:
            if emb is not None:
                emb.requires_grad_(True)
        pi_grad_norm = torch.nn.utils.clip_grad_norm_(self.pi_params, cfg.grad_clip_norm)
        self.pi_optim.step()

        # Polyak update of the target Qs, then back to eval mode.
        model.soft_update_target_Q(cfg.tau)
        model.eval()
        out.update({f"{k}_loss": v.detach() for k, v in terms.items()})
        out.update(total_loss=total.detach(), grad_norm=grad_norm.detach(), pi_loss=pi_loss.detach(),
                   pi_grad_norm=pi_grad_norm.detach(), td_target=td_target.mean(), **pi_stats)
        return out

    def state_dict(self) -> dict:
        return {"optim": self.optim.state_dict(), "pi_optim": self.pi_optim.state_dict(),
                "scale": self.scale.state_dict(),
                "distiller": self.distiller.state_dict() if self.distiller is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.optim.load_state_dict(state["optim"])
        self.pi_optim.load_state_dict(state["pi_optim"])
        self.scale.load_state_dict(state["scale"])
        if self.distiller is not None and state.get("distiller") is not None:
            self.distiller.load_state_dict(state["distiller"])
