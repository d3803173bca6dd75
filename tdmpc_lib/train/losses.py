"""The terms of the TD-MPC2 update (TD-MPC2 paper, Sec. 3.1), written as the paper states them.

With a batch of B sub-trajectories (obs (H+1,B,O), action (H,B,A), reward (H,B,1), task (B,)):

- TD targets (no gradient, model in eval mode):
      y_t = r_t + gamma_task * Q_min^target(z'_t, a'_t),  z'_t = encode(obs[t+1]), a'_t ~ pi(z'_t).
- Model losses (model in train mode: Q dropout on), on the latent rollout
  z_0 = encode(obs[0]), z_{t+1} = next(z_t, a_t):
      L_c = 1/H sum_t rho^t mean_{B,L} (z_{t+1} - z'_t)^2
      L_r = 1/H sum_t rho^t mean_B CE(reward(z_t, a_t), two_hot(r_t))
      L_v = 1/(H N_q) sum_t sum_q rho^t mean_B CE(Q_q(z_t, a_t), two_hot(y_t))
- Policy loss on the detached latents z_0..z_H with the gradient-free online Qs:
      L_pi = 1/(H+1) sum_t rho^t mean_B (alpha * E_t - Q_avg(z_t, pi(z_t)) / S)
  where S is the RunningScale of Q (5th-95th percentile range of the first time step).

Every function returns its terms as named tensors (detached values are taken by the caller,
so a GPU step needs no host synchronisation); nothing here touches an optimizer.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import fused_cpu
from .. import math as tmath
from ..layers import NormedLinear
from ..world_model import WorldModel

# Above this input Mish's tanh(softplus(x)) is 1 in fp32 and bf16; capping exp's argument there
# keeps every intermediate of the fused Mish finite (as math.mish_inference does).
MISH_EXP_CAP = 20.0
LN_EPS = 1e-5  # nn.LayerNorm's default, used by every LayerNorm of the world model
COMPILED_GRAPHS_LIMIT = 32  # dynamo graphs allowed per compiled function (see compiled_layer_norm_mish)


def rho_weights(rho: float, n: int, device) -> torch.Tensor:
    """(n,) the temporal weights rho^t, t = 0..n-1 (python powers, as the official code computes)."""
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


# ---------------------------------------------------------------------------- training forward
# The update evaluates the networks through the functions below instead of WorldModel.encode /
# next / reward / pi / Q. Same parameters, same function, same random draws in the same order;
# two things differ, both for speed:
#  - The first layer of every network that sees the task embedding e is split: for input
#    [x_lead, e, x_rest], W [x_lead, e, x_rest] + b = W_x [x_lead, x_rest] + (W_e e + b), and
#    W_e e + b is computed once per sample (B rows) instead of once per (time step, sample)
#    row, and the concatenated input is never built. In the MT30 1M model the embedding is 96
#    of the 230 inputs of dynamics/reward/Q/pi and 96 of the encoder's 120, i.e. a quarter of
#    all the update's matmul FLOPs. Floats are summed in another order: results move in the
#    last bits (~1e-7 relative), which tests/test_update_parity.py bounds.
#  - The task embedding is looked up once per phase (the official code looks it up in every
#    network call; the lookup renormalises the rows in place, which only changes anything the
#    first time after an optimizer step, i.e. at the start of each phase).


def _task_columns(weight: torch.Tensor, lead: int, task_dim: int):
    """Split a first-layer weight (..., out, lead + T + rest) whose input is [x_lead, e, x_rest]
    into (W_x (..., out, lead + rest), W_e (..., out, T)); (weight, None) without a task."""
    if task_dim == 0:
        return weight, None
    w_task = weight[..., lead:lead + task_dim]
    if weight.shape[-1] == lead + task_dim:
        return weight[..., :lead], w_task
    return torch.cat([weight[..., :lead], weight[..., lead + task_dim:]], dim=-1), w_task


def task_rows(model: WorldModel, task) -> torch.Tensor | None:
    """The task embedding rows (B, T) of `task` (B,), renormalised in place by the embedding's
    max_norm exactly as a WorldModel call does; None for a single-task model."""
    if not model.cfg.multitask:
        return None
    return model._task_emb(model._task_ids(task, model._task_emb.weight.device))


def _first_linear(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, e: torch.Tensor | None,
                  lead: int) -> torch.Tensor:
    """Linear(weight, bias) of [x[..., :lead], e, x[..., lead:]] without building that input:
    x (..., B, lead + rest), e (B, T) or None -> (..., B, out)."""
    w_x, w_e = _task_columns(weight, lead, 0 if e is None else e.shape[-1])
    rows = bias if e is None else torch.addmm(bias, e, w_e.t())  # (B, out): once per sample
    if x.dim() == 2:
        return torch.addmm(rows, x, w_x.t())
    return torch.matmul(x, w_x.t()) + rows


def layer_norm_mish(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Mish(LayerNorm(h) * weight + bias) over the last dim (eps LN_EPS): h (..., M); weight,
    bias (M,) as nn.LayerNorm — then F.mish(layer.ln(h)) — or per ensemble member (n, 1, M) for
    h (n, N, M). The eager (default) form of the training forward's norm + Mish. On the CPU,
    Mish's forward and backward are the fused_cpu kernels (one exp per element instead of
    torch's exp, log1p and tanh; within ~1e-6 relative of F.mish) when they are available."""
    if weight.dim() == 1:
        return fused_cpu.mish(F.layer_norm(h, h.shape[-1:], weight, bias, LN_EPS))
    return fused_cpu.mish(torch.addcmul(bias, F.layer_norm(h, h.shape[-1:], eps=LN_EPS), weight))


def _activation(layer: torch.nn.Module, h: torch.Tensor, norm_mish) -> torch.Tensor:
    """layer.act(layer.ln(h)) of a NormedLinear; `norm_mish` computes LayerNorm + Mish layers."""
    if type(layer.act) is torch.nn.Mish and layer.ln.eps == LN_EPS:
        return norm_mish(h, layer.ln.weight, layer.ln.bias)
    return layer.act(layer.ln(h))


def _layer(layer: torch.nn.Module, h: torch.Tensor, norm_mish) -> torch.Tensor:
    """NormedLinear.forward (Linear -> LayerNorm -> activation; dropout-free layers) or a Linear."""
    if not isinstance(layer, NormedLinear):
        return layer(h)
    return _activation(layer, F.linear(h, layer.weight, layer.bias), norm_mish)


def mlp_forward(net: torch.nn.Sequential, x: torch.Tensor, e: torch.Tensor | None, lead: int,
                norm_mish=layer_norm_mish) -> torch.Tensor:
    """One of the world model's mlp() networks on [x[..., :lead], e, x[..., lead:]]:
    x (..., B, lead + rest), e (B, T) or None -> (..., B, out). Its first layer is a
    NormedLinear without dropout (true of every network but the Q ensemble)."""
    first = net[0]
    h = _activation(first, _first_linear(first.weight, first.bias, x, e, lead), norm_mish)
    for layer in net[1:]:
        h = _layer(layer, h, norm_mish)
    return h


def encode(model: WorldModel, obs: torch.Tensor, e: torch.Tensor | None, norm_mish=layer_norm_mish) -> torch.Tensor:
    """WorldModel.encode: obs (..., B, O) -> z (..., B, L)."""
    return mlp_forward(model._encoder["state"], obs, e, model.cfg.obs_dim, norm_mish)


def q_logits(model: WorldModel, z: torch.Tensor, a: torch.Tensor, e: torch.Tensor | None,
             members: torch.Tensor | None = None, target: bool = False, detach: bool = False,
             norm_mish=layer_norm_mish) -> torch.Tensor:
    """WorldModel.Q(..., return_type='all') of `members` (None: all, in order): z (..., B, L),
    a (..., B, A) -> logits (n, ..., B, K). Dropout as the ensemble's mode says (the same
    random draw as WorldModel.Q). With `detach` and inputs z, e without gradient (the policy
    update), only the action's part of the first layer is differentiated: the gradient reaches
    pi through the action, and the rest of the first layer is one product without autograd."""
    qs = model._Qs if not target else model._target_Qs
    layer = qs.params[0]
    w, b = (layer.weight.detach(), layer.bias.detach()) if detach else (layer.weight, layer.bias)
    if members is not None:
        w, b = w[members], b[members]
    n, L, T = w.shape[0], z.shape[-1], 0 if e is None else e.shape[-1]
    lead = z.shape[:-1]
    zf = z.reshape(1, -1, L)
    rows = b.unsqueeze(1) if e is None else torch.baddbmm(b.unsqueeze(1), e.expand(n, -1, -1),
                                                         w[..., L:L + T].transpose(1, 2))  # (n, B, M)
    rows = rows.view(n, *([1] * (len(lead) - 1)), rows.shape[-2], rows.shape[-1])
    w_a = w[..., L + T:]
    # Explicit bmm on the shared input expanded over members (no copy): a broadcasting matmul
    # of (1, N, k) by (n, k, M) computes a transposed product, and its backward then copies
    # a transposed (n, M, N) gradient.
    N = zf.shape[1]
    if detach and not (z.requires_grad or (e is not None and e.requires_grad)):
        with torch.no_grad():
            h = torch.bmm(zf.expand(n, N, L), w[..., :L].transpose(1, 2)).view(n, *lead, -1) + rows
        a_f = a.reshape(1, N, a.shape[-1]).expand(n, N, a.shape[-1])
        h = h + torch.bmm(a_f, w_a.transpose(1, 2)).view(n, *lead, -1)
    else:
        x = torch.cat([zf, a.reshape(1, N, a.shape[-1])], dim=-1).expand(n, N, -1)
        w_x = torch.cat([w[..., :L], w_a], dim=-1)
        h = torch.bmm(x, w_x.transpose(1, 2)).view(n, *lead, -1) + rows
    out = _q_hidden(qs, h.reshape(n, -1, h.shape[-1]), members, detach, norm_mish)
    return out.view(n, *lead, out.shape[-1])


def _q_hidden(qs, h: torch.Tensor, members: torch.Tensor | None, detach: bool, norm_mish) -> torch.Tensor:
    """QEnsemble.forward_hidden for the training forward: h (n, N, M) the first Linear's
    output -> logits (n, N, K). The same dropout draw; LayerNorm's per-member affine as one
    addcmul (layer_norm_mish: one pass instead of a multiply and an add), and only the
    parameters each layer uses gathered for the drawn members."""
    for i, layer in enumerate(qs.params):
        if i > 0:
            w, b = (layer.weight.detach(), layer.bias.detach()) if detach else (layer.weight, layer.bias)
            if members is not None:
                w, b = w[members], b[members]
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        if layer.ln is not None:
            if i == 0 and qs.dropout_p > 0 and (qs.training or qs.dropout_at_inference):
                h = F.dropout(h, qs.dropout_p, training=True)  # one draw, independent mask per member
            g, beta = (layer.ln.weight.detach(), layer.ln.bias.detach()) if detach else (layer.ln.weight, layer.ln.bias)
            if members is not None:
                g, beta = g[members], beta[members]
            h = norm_mish(h, g.unsqueeze(1), beta.unsqueeze(1))
    return h


def q_pair(model: WorldModel, z: torch.Tensor, a: torch.Tensor, e: torch.Tensor | None, task,
           return_type: str, target: bool = False, detach: bool = False, norm_mish=layer_norm_mish) -> torch.Tensor:
    """WorldModel.Q(..., return_type='min'|'avg'): two distinct members drawn at random (the
    same randperm draw), decoded, min or mean -> (..., B, 1)."""
    qs = model._target_Qs if target else model._Qs
    members = torch.randperm(model.cfg.num_q, device=z.device)[:2]
    if model.cfg.num_q == 2 and (not (qs.training or qs.dropout_at_inference)
                                 or (members.device.type == "cpu" and members.tolist() == [0, 1])):
        # Both members: min and mean are symmetric, and without dropout masks (or in the drawn
        # order, checked where reading the draw costs no device sync) the order changes nothing
        # else, so the parameters need not be gathered (copied).
        members = None
    q1, q2 = model.decode(q_logits(model, z, a, e, members, target, detach, norm_mish)).unbind(0)
    return torch.min(q1, q2) if return_type == "min" else (q1 + q2) / 2


def soft_ce(logits: torch.Tensor, target: torch.Tensor, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """math.soft_ce, bit for bit: logits (..., K), scalars (..., 1) -> (..., 1). The two-hot
    target has two non-zero entries, so the cross-entropy is two gathered log-probabilities
    (the dense product adds only exact zeros to them) instead of a (..., K) target built,
    multiplied and summed (value loss: N_q * H * B * K)."""
    if num_bins <= 1:
        return tmath.soft_ce(logits, target, num_bins, vmin, vmax)
    log_pred = F.log_softmax(logits, dim=-1)
    bin_size = (vmax - vmin) / (num_bins - 1)
    pos = (torch.clamp(tmath.symlog(target), vmin, vmax) - vmin) / bin_size
    idx = torch.floor(pos)
    offset = pos - idx
    idx = idx.long()
    shape = log_pred.shape[:-1] + (1,)
    lo = log_pred.gather(-1, idx.expand(shape))
    hi = log_pred.gather(-1, ((idx + 1) % num_bins).expand(shape))
    return -((1 - offset) * lo + offset * hi)


def _fused_layer_norm_mish(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """layer_norm_mish with Mish in its one-exp form, tanh(softplus(y)) = n / (n + 2),
    n = e^y (e^y + 2): what TrainConfig.compile compiles (see compiled_layer_norm_mish)."""
    y = F.layer_norm(h, h.shape[-1:], eps=LN_EPS) * weight + bias
    e = torch.exp(torch.clamp(y, max=MISH_EXP_CAP))
    n = e * (e + 2.0)
    return y * (n / (n + 2.0))


def compiled_layer_norm_mish():
    """_fused_layer_norm_mish through torch.compile (dynamic shapes): LayerNorm, its affine and
    Mish in one kernel forward and one backward, with one exp instead of Mish's exp, log1p and
    tanh (and the backward's sigmoid). On the 2-core CPU LayerNorm + Mish were a third of the
    eager update's CPU time; fused they cost ~45% of that. Not bit-identical to the eager
    layers (float rounding, ~1e-7 relative), which is why it is opt-in (TrainConfig.compile)."""
    import torch._dynamo

    # One graph per (width M, input rank, grad mode / which inputs need gradients, dtype): the
    # update uses ~12 (LayerNorm's normalised width is always specialised). Dynamo's default of
    # 8 graphs per function would silently run the rest eagerly, slower than no compile at all.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, COMPILED_GRAPHS_LIMIT)
    fn = torch.compile(_fused_layer_norm_mish, dynamic=True)

    def norm_mish(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # Two input ranks only, (rows, M) or (n, rows, M): every other rank would be another
        # compiled graph, and dynamo stops compiling after 8 variants of one function.
        lead = (-1,) if weight.dim() == 1 else (h.shape[0], -1)
        return fn(h.reshape(*lead, h.shape[-1]), weight, bias).view(h.shape)

    return norm_mish


@torch.no_grad()
def td_targets(model: WorldModel, next_z: torch.Tensor, reward: torch.Tensor, task: torch.Tensor,
               e: torch.Tensor | None = None, norm_mish=layer_norm_mish) -> torch.Tensor:
    """y (H, B, 1) = r + gamma_task * min of two random target-Q members at (z', a' ~ pi(z')).
    `e`: the batch's task embedding rows (B, T) if already looked up."""
    if e is None:
        e = task_rows(model, task)
    features = mlp_forward(model._pi, next_z, e, model.cfg.latent_dim, norm_mish)
    action, _ = model.pi(next_z, task, features=features)
    discount = model.discount(task, next_z.device)  # (B, 1): broadcast over the horizon
    return reward + discount * q_pair(model, next_z, action, e, task, "min", target=True, norm_mish=norm_mish)


def model_losses(model: WorldModel, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                 task: torch.Tensor, next_z: torch.Tensor, td_target: torch.Tensor, rho: float, norm_mish=layer_norm_mish,
                 outputs: dict | None = None):
    """Latent rollout and the three world-model losses (TD-MPC2 paper, Sec. 3.1).

    Returns (terms, zs, reward_logits): terms = {'consistency', 'reward', 'value'} scalar tensors
    (with gradient), zs (H+1, B, L) the rolled-out latents z_0..z_H, reward_logits (H, B, K).
    `outputs`, when given, also receives 'q_logits' (N_q, H, B, K) and 'task_rows' (B, T) or
    None, for the distillation terms."""
    H = action.shape[0]
    cfg = model.cfg
    L = cfg.latent_dim
    e = task_rows(model, task)
    z = encode(model, obs[0], e, norm_mish)
    # Dynamics: its first layer's task part is the same at every step (computed once).
    dyn = model._dynamics
    first = dyn[0]
    w_x, w_e = _task_columns(first.weight, L, 0 if e is None else e.shape[-1])
    rows = first.bias if e is None else torch.addmm(first.bias, e, w_e.t())
    zs = [z]
    for t in range(H):
        h = _activation(first, torch.addmm(rows, torch.cat([z, action[t]], dim=-1), w_x.t()), norm_mish)
        for layer in dyn[1:]:
            h = _layer(layer, h, norm_mish)
        z = h
        zs.append(z)
    zs = torch.stack(zs)  # (H+1, B, L)
    w = rho_weights(rho, H, obs.device)
    consistency = (F.mse_loss(zs[1:].float(), next_z.float(), reduction="none").mean(dim=(1, 2)) * w).sum() / H
    _zs = zs[:-1]
    reward_logits = mlp_forward(model._reward, torch.cat([_zs, action], dim=-1), e, L, norm_mish)  # (H, B, K)
    q = q_logits(model, _zs, action, e, norm_mish=norm_mish)  # (N_q, H, B, K), every member
    ce_r = soft_ce(reward_logits.float(), reward, cfg.num_bins, cfg.vmin, cfg.vmax)  # (H, B, 1)
    reward_loss = (ce_r.mean(dim=(1, 2)) * w).sum() / H
    ce_q = soft_ce(q.float(), td_target.unsqueeze(0), cfg.num_bins, cfg.vmin, cfg.vmax)
    value_loss = (ce_q.mean(dim=(2, 3)) * w).sum() / (H * ce_q.shape[0])  # (N_q, H) -> scalar
    terms = {"consistency": consistency, "reward": reward_loss, "value": value_loss}
    if outputs is not None:
        outputs.update(q_logits=q, task_rows=e)
    return terms, zs, reward_logits


def policy_values(model: WorldModel, zs: torch.Tensor, task: torch.Tensor, norm_mish=layer_norm_mish):
    """a ~ pi(z) and Q_avg(z, a) with the online Qs' parameters detached (gradients reach pi
    through the action only): returns (q (H+1, B, 1), pi info)."""
    e = task_rows(model, task)
    features = mlp_forward(model._pi, zs, e, model.cfg.latent_dim, norm_mish)
    action, info = model.pi(zs, task, features=features)
    return q_pair(model, zs, action, e, task, "avg", detach=True, norm_mish=norm_mish), info


def policy_loss(q: torch.Tensor, info: dict, scale: RunningScale, rho: float, entropy_coef: float):
    """Policy-prior objective (TD-MPC2 paper, Sec. 3.1) from policy_values on DETACHED latents: the
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
