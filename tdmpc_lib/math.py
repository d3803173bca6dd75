"""TD-MPC2 math utilities (official tdmpc2/common/math.py): symlog/symexp, the discrete two-hot
regression in symlog space, soft cross-entropy and the Gaussian/tanh policy helpers."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI_HALF = 0.5 * math.log(2 * math.pi)  # 0.9189385...


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(torch.abs(x))


def mish_inference(x: torch.Tensor) -> torch.Tensor:
    """Mish x * tanh(softplus(x)) for planning. (...) -> (...)

    Uses the one-exp identity tanh(softplus(x)) = n / (n + 2), n = e^x (e^x + 2), in place on
    temporaries: 1.9x faster than F.mish on this CPU, where Mish was a quarter of the
    planner's time; equal to F.mish within 1e-6 (fp32). e^x is capped at x = 20, where
    n / (n + 2) is 1 in fp32 and bf16. With autograd, and for fp16 (whose range the cap would
    overflow), it is F.mish itself. The model's own layers keep F.mish, so their forward is
    the same function with and without autograd (a teacher equal to its student distills 0).
    """
    if torch.is_grad_enabled() or x.dtype not in (torch.float32, torch.bfloat16):
        return F.mish(x)
    e = x.clamp(max=20.0).exp_()
    n = e.add(2.0).mul_(e)
    return n.div_(n + 2.0).mul_(x)


def bin_centers(num_bins: int, vmin: float, vmax: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """(K,) equally spaced support in symlog space."""
    return torch.linspace(vmin, vmax, num_bins, device=device, dtype=dtype)


def two_hot(x: torch.Tensor, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """Scalars (..., 1) -> two-hot targets (..., K) in symlog space.

    K = 0 is the identity and K = 1 is plain symlog (official two_hot's degenerate cases)."""
    if num_bins == 0:
        return x
    if num_bins == 1:
        return symlog(x)
    bin_size = (vmax - vmin) / (num_bins - 1)
    y = torch.clamp(symlog(x), vmin, vmax).squeeze(-1)
    pos = (y - vmin) / bin_size
    idx = torch.floor(pos)
    offset = (pos - idx).unsqueeze(-1)
    idx = idx.long().unsqueeze(-1)
    target = torch.zeros(*y.shape, num_bins, device=x.device, dtype=x.dtype)
    target.scatter_(-1, idx, 1 - offset)
    # At y == vmax exactly, offset == 0 and idx + 1 wraps to bin 0 with weight 0 (as official two_hot).
    target.scatter_add_(-1, (idx + 1) % num_bins, offset)
    return target


def two_hot_inv(logits: torch.Tensor, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """Logits (..., K) -> decoded scalars (..., 1): symexp of the softmax-expected bin."""
    if num_bins == 0:
        return logits
    if num_bins == 1:
        return symexp(logits)
    bins = bin_centers(num_bins, vmin, vmax, logits.device, torch.float32)
    expected = torch.sum(F.softmax(logits.float(), dim=-1) * bins, dim=-1, keepdim=True)
    return symexp(expected)


def soft_ce(logits: torch.Tensor, target: torch.Tensor, num_bins: int, vmin: float,
            vmax: float) -> torch.Tensor:
    """Cross-entropy between logits (..., K) and the two-hot encoding of scalars (..., 1) -> (..., 1)."""
    log_pred = F.log_softmax(logits, dim=-1)
    return -(two_hot(target, num_bins, vmin, vmax) * log_pred).sum(-1, keepdim=True)


def log_std(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The policy's raw log-std output x (...) mapped into [low, high] by a shifted tanh."""
    return low + 0.5 * (high - low) * (torch.tanh(x) + 1)


def gaussian_logprob(eps: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Official (new) per-sample Gaussian log-prob summed over ALL dims (masked ones included):
    sum_i(-0.5 eps_i^2 - log_std_i - 0.5 ln 2pi) -> (..., 1)."""
    return (-0.5 * eps.pow(2) - log_std - LOG_2PI_HALF).sum(-1, keepdim=True)


def squash(mu: torch.Tensor, pi: torch.Tensor, log_pi: torch.Tensor):
    """tanh squashing of mean and sample, with the change-of-variables correction on log_pi."""
    mu, pi = torch.tanh(mu), torch.tanh(pi)
    log_pi = log_pi - torch.log(F.relu(1 - pi.pow(2)) + 1e-6).sum(-1, keepdim=True)
    return mu, pi, log_pi
