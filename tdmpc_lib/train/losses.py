"""The terms of the TD-MPC2 update (reference section 4), written as the paper states them.

With a batch of B sub-trajectories (obs (H+1,B,O), action (H,B,A), reward (H,B,1), task (B,)):

- TD targets (4.2, no gradient, model in eval mode):
      y_t = r_t + gamma_task * Q_min^target(z'_t, a'_t),  z'_t = encode(obs[t+1]), a'_t ~ pi(z'_t).
- Model losses (4.3, model in train mode: Q dropout on), on the latent rollout
  z_0 = encode(obs[0]), z_{t+1} = next(z_t, a_t):
      L_c = 1/H sum_t rho^t mean_{B,L} (z_{t+1} - z'_t)^2
      L_r = 1/H sum_t rho^t mean_B CE(reward(z_t, a_t), two_hot(r_t))
      L_v = 1/(H N_q) sum_t sum_q rho^t mean_B CE(Q_q(z_t, a_t), two_hot(y_t))
- Policy loss (4.4) on the detached latents z_0..z_H with the gradient-free online Qs:
      L_pi = 1/(H+1) sum_t rho^t mean_B (alpha * E_t - Q_avg(z_t, pi(z_t)) / S)
  where S is the RunningScale of Q (5th-95th percentile range of the first time step).

Every function returns its terms as named tensors (detached values are taken by the caller,
so a GPU step needs no host synchronisation); nothing here touches an optimizer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import math as tmath
from ..world_model import WorldModel


def rho_weights(rho: float, n: int, device) -> torch.Tensor:
    """(n,) the temporal weights rho^t, t = 0..n-1 (python powers, as the reference computes)."""
    return torch.tensor([rho ** t for t in range(n)], dtype=torch.float32, device=device)


class RunningScale:
    """Running estimate S of the Q-value range used to normalise the policy objective.

    update(q): S <- S + tau * (max(p95 - p5, 1) - S), percentiles along the batch with linear
    interpolation at position p (n-1)/100 (numpy's 'linear' method); S starts at 1."""

    PERCENTILES = (5.0, 95.0)

    def __init__(self, tau: float, device="cpu"):
        self.tau = tau
        self.value = torch.ones(1, dtype=torch.float32, device=device)

    def _percentiles(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().float().reshape(x.shape[0], -1)  # (n, D): percentiles along dim 0
        n = x.shape[0]
        ordered = torch.sort(x, dim=0).values
        out = []
        for p in self.PERCENTILES:
            pos = p * (n - 1) / 100
            lo = int(pos)
            hi = min(lo + 1, n - 1)
            w = pos - lo
            out.append(ordered[lo] * (1.0 - w) + ordered[hi] * w)
        return torch.stack(out)  # (2, D)

    def update(self, x: torch.Tensor) -> None:
        p5, p95 = self._percentiles(x)
        self.value.lerp_(torch.clamp(p95 - p5, min=1.0), self.tau)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1 / self.value)

    def state_dict(self) -> dict:
        return {"value": self.value.detach().cpu().clone(), "tau": self.tau}

    def load_state_dict(self, state: dict) -> None:
        self.value.copy_(state["value"].to(self.value.device))


@torch.no_grad()
def td_targets(model: WorldModel, next_z: torch.Tensor, reward: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
    """y (H, B, 1) = r + gamma_task * min of two random target-Q members at (z', a' ~ pi(z'))."""
    action, _ = model.pi(next_z, task)
    discount = model.discount(task, next_z.device)  # (B, 1): broadcast over the horizon
    return reward + discount * model.Q(next_z, action, task, return_type="min", target=True)


def model_losses(model: WorldModel, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                 task: torch.Tensor, next_z: torch.Tensor, td_target: torch.Tensor, rho: float):
    """Latent rollout and the three world-model losses (section 4.3).

    Returns (terms, zs, reward_logits): terms = {'consistency', 'reward', 'value'} scalar tensors
    (with gradient), zs (H+1, B, L) the rolled-out latents z_0..z_H, reward_logits (H, B, K)."""
    H = action.shape[0]
    cfg = model.cfg
    z = model.encode(obs[0], task)
    zs = [z]
    for t in range(H):
        z = model.next(z, action[t], task)
        zs.append(z)
    zs = torch.stack(zs)  # (H+1, B, L)
    w = rho_weights(rho, H, obs.device)
    consistency = (F.mse_loss(zs[1:].float(), next_z.float(), reduction="none").mean(dim=(1, 2)) * w).sum() / H
    _zs = zs[:-1]
    reward_logits = model.reward(_zs, action, task)  # (H, B, K)
    q_logits = model.Q(_zs, action, task, return_type="all")  # (N_q, H, B, K), every member
    ce_r = tmath.soft_ce(reward_logits.float(), reward, cfg.num_bins, cfg.vmin, cfg.vmax)  # (H, B, 1)
    reward_loss = (ce_r.mean(dim=(1, 2)) * w).sum() / H
    ce_q = tmath.soft_ce(q_logits.float(), td_target.unsqueeze(0), cfg.num_bins, cfg.vmin, cfg.vmax)
    value_loss = (ce_q.mean(dim=(2, 3)) * w).sum() / (H * ce_q.shape[0])  # (N_q, H) -> scalar
    terms = {"consistency": consistency, "reward": reward_loss, "value": value_loss}
    return terms, zs, reward_logits


def policy_values(model: WorldModel, zs: torch.Tensor, task: torch.Tensor):
    """a ~ pi(z) and Q_avg(z, a) with the online Qs' parameters detached (gradients reach pi
    through the action only): returns (q (H+1, B, 1), pi info)."""
    action, info = model.pi(zs, task)
    return model.Q(zs, action, task, return_type="avg", detach=True), info


def policy_loss(q: torch.Tensor, info: dict, scale: RunningScale, rho: float, entropy_coef: float):
    """Policy-prior objective (section 4.4) from policy_values on DETACHED latents: the
    RunningScale is updated with the first time step, then the scaled Q enters the loss."""
    scale.update(q[0])
    q = scale(q)
    w = rho_weights(rho, q.shape[0], q.device)
    # -(alpha * scaled_entropy + q): alpha * E_t - q_t with E_t = A_task * g (official new formula)
    loss = (-(entropy_coef * info["scaled_entropy"].float() + q.float()).mean(dim=(1, 2)) * w).mean()
    stats = {"pi_entropy": info["entropy"].detach().mean(), "pi_scaled_entropy": info["scaled_entropy"].detach().mean(),
             "pi_log_std": info["log_std"].detach().mean(), "pi_scale": scale.value.detach()[0],
             "pi_q": q.detach().mean()}
    return loss, stats
