"""The official TD-MPC2 update, computed the way the official code computes it — a timing
reference only (benchmarks/train_throughput.py times it beside tdmpc_lib's Learner).

Re-stated by us from the facts of the official `TDMPC2._update` (nicklashansen/tdmpc2,
tdmpc2/tdmpc2.py: `_update`, `_td_target`, `update_pi`; the models in
tdmpc2/common/world_model.py); no code is copied. What makes it "the official way":
- targets: encode(obs[1:]) and the TD target with the WorldModel calls, model in eval mode;
- the latent rollout one step at a time, each step's consistency term added as it is made,
  latents written into a preallocated (H+1, B, L) tensor;
- reward and value cross-entropies one time step (and one Q member) at a time, with the dense
  two-hot target of math.soft_ce;
- every network call concatenates [z, task embedding, a] and looks the embedding up again;
- Q 'min'/'avg' evaluate ALL members and then index the two drawn ones;
- Adam in PyTorch's default (per-tensor loop on the CPU), gradients clipped over
  model.parameters(), backward -> clip -> step -> zero_grad (so the policy loss's gradient on
  the task embedding reaches the next world-model step, as in the official code);
- the policy update on the detached latents through the online Qs with detached parameters,
  the task embedding NOT frozen.
The vectorised Q ensemble itself (official: torch.func vmap over stacked parameters) is
tdmpc_lib's QEnsemble (batched matmuls), the same arithmetic. The returned statistics are
averaged into one dict of tensors as the official code does (TensorDict(...).detach().mean()).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from tdmpc_lib import math as tmath
from tdmpc_lib.train.config import TrainConfig
from tdmpc_lib.train.losses import RunningScale
from tdmpc_lib.train.update import world_model_param_groups
from tdmpc_lib.world_model import WorldModel


class OfficialStyleUpdate:
    """Official-way update of a WorldModel; `update(batch, step)` like tdmpc_lib's Learner."""

    def __init__(self, model: WorldModel, cfg: TrainConfig):
        self.model, self.cfg = model, cfg
        model.eval()  # between updates the official model is in eval mode (targets without Q dropout)
        self.device = next(model.parameters()).device
        self.optim = torch.optim.Adam(world_model_param_groups(model, cfg), lr=cfg.lr)  # default (for-loop) Adam
        self.pi_optim = torch.optim.Adam(model._pi.parameters(), lr=cfg.lr, eps=cfg.pi_adam_eps)
        self.scale = RunningScale(cfg.tau, self.device)
        self.bf16 = cfg.precision == "bf16"

    def _autocast(self):
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ the official helpers
    def _Q(self, z, a, task, return_type, target=False, detach=False):
        """All members, then two drawn members indexed (the official Q)."""
        m = self.model
        x = torch.cat([m.task_emb(z, task), a], dim=-1)
        out = (m._target_Qs if target else m._Qs)(x, detach=detach)  # (N_q, ..., K)
        if return_type == "all":
            return out
        idx = torch.randperm(m.cfg.num_q, device=out.device)[:2]
        q = m.decode(out[idx])
        return torch.min(q[0], q[1]) if return_type == "min" else q.sum(0) / 2

    def _soft_ce(self, logits, target):
        c = self.model.cfg
        return tmath.soft_ce(logits.float(), target, c.num_bins, c.vmin, c.vmax)

    @torch.no_grad()
    def _td_target(self, next_z, reward, task):
        action, _ = self.model.pi(next_z, task)
        discount = self.model.discount(task, next_z.device)
        return reward + discount * self._Q(next_z, action, task, "min", target=True)

    def _update_pi(self, zs, task):
        cfg = self.cfg
        action, info = self.model.pi(zs, task)
        qs = self._Q(zs, action, task, "avg", detach=True)
        self.scale.update(qs[0])
        qs = self.scale(qs)
        rho = torch.pow(cfg.rho, torch.arange(len(qs), device=self.device))
        pi_loss = (-(cfg.entropy_coef * info["scaled_entropy"] + qs).mean(dim=(1, 2)) * rho).mean()
        pi_loss.backward()
        pi_grad_norm = torch.nn.utils.clip_grad_norm_(self.model._pi.parameters(), cfg.grad_clip_norm)
        self.pi_optim.step()
        self.pi_optim.zero_grad(set_to_none=True)
        return {"pi_loss": pi_loss, "pi_grad_norm": pi_grad_norm, "pi_entropy": info["entropy"],
                "pi_scaled_entropy": info["scaled_entropy"], "pi_scale": self.scale.value}

    # ------------------------------------------------------------------ the update
    def update(self, batch, step: int = 0) -> dict[str, torch.Tensor]:
        cfg, m = self.cfg, self.model
        obs, action, reward, task = batch.obs, batch.action, batch.reward, batch.task
        H = action.shape[0]
        with torch.no_grad(), self._autocast():
            next_z = m.encode(obs[1:], task)
            td_targets = self._td_target(next_z, reward, task)
        m.train()
        with self._autocast():
            zs = torch.empty(H + 1, obs.shape[1], m.cfg.latent_dim, device=self.device)
            z = m.encode(obs[0], task)
            zs[0] = z
            consistency_loss = 0
            for t, (_action, _next_z) in enumerate(zip(action.unbind(0), next_z.unbind(0))):
                z = m.next(z, _action, task)
                consistency_loss = consistency_loss + F.mse_loss(z.float(), _next_z.float()) * cfg.rho ** t
                zs[t + 1] = z
            _zs = zs[:-1]
            qs = self._Q(_zs, action, task, "all")
            reward_preds = m.reward(_zs, action, task)
            reward_loss, value_loss = 0, 0
            for t, (rew_pred, rew, td, qs_t) in enumerate(zip(reward_preds.unbind(0), reward.unbind(0),
                                                              td_targets.unbind(0), qs.unbind(1))):
                reward_loss = reward_loss + self._soft_ce(rew_pred, rew).mean() * cfg.rho ** t
                for q in qs_t.unbind(0):
                    value_loss = value_loss + self._soft_ce(q, td.float()).mean() * cfg.rho ** t
            consistency_loss = consistency_loss / H
            reward_loss = reward_loss / H
            value_loss = value_loss / (H * m.cfg.num_q)
            total_loss = (cfg.consistency_coef * consistency_loss + cfg.reward_coef * reward_loss
                          + cfg.value_coef * value_loss)
        total_loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(m.parameters(), cfg.grad_clip_norm)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        with self._autocast():
            pi_info = self._update_pi(zs.detach(), task)
        m.soft_update_target_Q(cfg.tau)
        m.eval()
        info = {"consistency_loss": consistency_loss, "reward_loss": reward_loss, "value_loss": value_loss,
                "total_loss": total_loss, "grad_norm": grad_norm, **pi_info}
        return {k: v.detach().float().mean() for k, v in info.items()}
