"""The TD-MPC2 world model (official tdmpc2/common/world_model.py): task embedding, encoder, latent dynamics,
reward head, policy prior and the Q ensemble with its target copy.

Method names follow the official code so its users feel at home:
`encode`, `next`, `reward`, `pi`, `Q`. Shapes: obs (..., O), z (..., L), a (..., A),
reward/Q logits (..., K); `task` is an int, a (1,) tensor or a tensor of the batch's shape.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from . import math as tmath
from .config import ModelConfig, model_config
from .layers import QEnsemble, SimNorm, init_weights, mlp


def _action_masks(cfg: ModelConfig) -> torch.Tensor:
    """(num_tasks, A): 1 on each task's active action dims."""
    masks = torch.zeros(cfg.num_tasks, cfg.action_dim)
    for i, dim in enumerate(cfg.action_dims):
        masks[i, :dim] = 1.0
    return masks


def _discounts(cfg: ModelConfig) -> torch.Tensor:
    """(num_tasks,) per-task discount factors (one entry single-task)."""
    return torch.tensor(cfg.discounts if cfg.discounts else [0.99], dtype=torch.float32)


class WorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        L, T, A, M, K = cfg.latent_dim, cfg.task_dim if cfg.multitask else 0, cfg.action_dim, cfg.mlp_dim, cfg.num_bins
        if cfg.multitask:
            self._task_emb = nn.Embedding(cfg.num_tasks, T, max_norm=1)
            self.register_buffer("_action_masks", _action_masks(cfg))
        self._encoder = nn.ModuleDict({"state": mlp(
            cfg.obs_dim + T, [cfg.enc_dim] * max(cfg.num_enc_layers - 1, 1), L, act=SimNorm(cfg.simnorm_dim))})
        self._dynamics = mlp(L + T + A, [M, M], L, act=SimNorm(cfg.simnorm_dim))
        self._reward = mlp(L + T + A, [M, M], K)
        self._pi = mlp(L + T, [M, M], 2 * A)
        self._Qs = QEnsemble(cfg.num_q, L + T + A, M, K, cfg.dropout)
        self.apply(init_weights)
        # Reward and Q logits start uniform (as the official WorldModel): zero the last weights.
        nn.init.zeros_(self._reward[-1].weight)
        nn.init.zeros_(self._Qs.params[-1].weight)
        self._target_Qs = copy.deepcopy(self._Qs).requires_grad_(False)
        self.register_buffer("discounts", _discounts(cfg), persistent=False)

    @classmethod
    def uninitialized(cls, cfg: ModelConfig) -> "WorldModel":
        """A model with allocated but uninitialised parameters, to load a checkpoint into: built
        on the meta device, so the random initialisation (most of the time of building a 317M
        model) is skipped. Its constant buffers (action masks, discounts) are filled."""
        with torch.device("meta"):
            model = cls(cfg)
        model = model.to_empty(device="cpu")
        if cfg.multitask:
            model._action_masks.copy_(_action_masks(cfg))
        model.discounts.copy_(_discounts(cfg))
        return model

    # ------------------------------------------------------------------ utilities
    def train(self, mode: bool = True):
        super().train(mode)
        self._target_Qs.train(False)  # target Qs never use dropout in training
        return self

    def set_q_dropout_at_inference(self, enabled: bool) -> None:
        """Emulate the OLD Q-ensemble code (official before Nov 2024, TD-MPC-Opt fork): Q dropout
        active even in eval mode, for online and target Qs. Used by the evaluator's `paper` protocol."""
        self._Qs.dropout_at_inference = enabled
        self._target_Qs.dropout_at_inference = enabled

    @property
    def total_params(self) -> int:
        """Trainable parameters (target Qs excluded), as TD-MPC2 reports model size."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def component_params(self) -> dict[str, int]:
        parts = {"task_emb": getattr(self, "_task_emb", None), "encoder": self._encoder,
                 "dynamics": self._dynamics, "reward": self._reward, "pi": self._pi, "Qs": self._Qs}
        return {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items() if m is not None}

    def _task_ids(self, task, device) -> torch.Tensor:
        return torch.as_tensor(task, device=device).long()

    def task_emb(self, x: torch.Tensor, task) -> torch.Tensor:
        """Append the task embedding: x (..., D) -> (..., D + T). Single-task: x unchanged."""
        if not self.cfg.multitask:
            return x
        emb = self._task_emb(self._task_ids(task, x.device)).to(x.dtype)
        if emb.ndim == 1:
            emb = emb.unsqueeze(0)
        return torch.cat([x, torch.broadcast_to(emb, x.shape[:-1] + emb.shape[-1:])], dim=-1)

    def action_mask(self, task, like: torch.Tensor) -> torch.Tensor | None:
        """(..., A) mask of the task's active action dims (None single-task)."""
        if not self.cfg.multitask:
            return None
        return self._action_masks[self._task_ids(task, like.device)].to(like.dtype)

    def discount(self, task, device) -> torch.Tensor:
        """Per-task discount gamma (..., 1)."""
        if not self.cfg.multitask:
            return self.discounts[:1].to(device)
        return self.discounts.to(device)[self._task_ids(task, device)].unsqueeze(-1)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Reward/Q logits (..., K) -> scalars (..., 1) in real units (fp32)."""
        return tmath.two_hot_inv(logits, self.cfg.num_bins, self.cfg.vmin, self.cfg.vmax)

    # ------------------------------------------------------------------ the model
    def encode(self, obs: torch.Tensor, task) -> torch.Tensor:
        """obs (..., O) padded -> latent z (..., L) (SimNorm groups of 8)."""
        return self._encoder["state"](self.task_emb(obs, task))

    def next(self, z: torch.Tensor, a: torch.Tensor, task) -> torch.Tensor:
        """Latent dynamics: z (..., L), a (..., A) -> next z (..., L)."""
        return self._dynamics(torch.cat([self.task_emb(z, task), a], dim=-1))

    def reward(self, z: torch.Tensor, a: torch.Tensor, task) -> torch.Tensor:
        """Reward logits (..., K)."""
        return self._reward(torch.cat([self.task_emb(z, task), a], dim=-1))

    def pi(self, z: torch.Tensor, task, features: torch.Tensor | None = None):
        """Policy prior (official WorldModel.pi): returns (action (..., A), info dict) where info holds
        mean (tanh mu), log_std, entropy and scaled_entropy (official new formulas).
        `features` = the _pi network's output (..., 2A) when the caller computed it already."""
        cfg = self.cfg
        if features is None:
            features = self._pi(self.task_emb(z, task))
        mu, log_std = features.chunk(2, dim=-1)
        log_std = tmath.log_std(log_std, cfg.log_std_min, cfg.log_std_max)
        eps = torch.randn_like(mu)
        mask = self.action_mask(task, mu)
        if mask is not None:
            mu, log_std, eps = mu * mask, log_std * mask, eps * mask
            active_dims = mask.sum(-1, keepdim=True)
        else:
            active_dims = mu.shape[-1]
        log_prob = tmath.gaussian_logprob(eps, log_std)
        scaled_log_prob = log_prob * active_dims
        action = mu + eps * log_std.exp()
        mean, action, log_prob = tmath.squash(mu, action, log_prob)
        entropy_scale = scaled_log_prob / (log_prob + 1e-8)
        info = {"mean": mean, "log_std": log_std, "entropy": -log_prob,
                "scaled_entropy": -log_prob * entropy_scale}
        return action, info

    def Q(self, z: torch.Tensor, a: torch.Tensor, task, return_type: str = "min",
          target: bool = False, detach: bool = False) -> torch.Tensor:
        """Q values. 'all' -> logits (N_q, ..., K); 'min'/'avg' -> (..., 1): two distinct
        members drawn at random (one draw per call), decoded, then min or mean.
        `detach` uses the online Qs without gradient to their parameters (policy update)."""
        if return_type not in ("all", "min", "avg"):
            raise ValueError(f"return_type must be 'all', 'min' or 'avg', got {return_type!r}")
        x = torch.cat([self.task_emb(z, task), a], dim=-1)
        qs = self._target_Qs if target else self._Qs
        if return_type == "all":
            return qs(x, detach=detach)
        # Only the two drawn members are evaluated: the same distribution as evaluating all
        # and indexing, at a fraction of the cost for large ensembles (317M has 8 members).
        members = torch.randperm(self.cfg.num_q, device=x.device)[:2]
        q1, q2 = self.decode(qs(x, members, detach=detach)).unbind(0)
        return torch.min(q1, q2) if return_type == "min" else (q1 + q2) / 2

    @torch.no_grad()
    def soft_update_target_Q(self, tau: float) -> None:
        """Polyak averaging: target <- target + tau * (online - target)."""
        for p_t, p in zip(self._target_Qs.parameters(), self._Qs.parameters()):
            p_t.lerp_(p, tau)


def make_world_model(size: str | int = 1, task_set: str | None = "mt30", seed: int | None = None,
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                     **overrides) -> WorldModel:
    """A freshly initialised world model from a size preset (1/5/19/48/317 or 'tiny')."""
    if seed is not None:
        torch.manual_seed(seed)
    return WorldModel(model_config(size, task_set, **overrides)).to(device=device, dtype=dtype)
