"""MPPI planning with the learned world model (TD-MPC2 paper, Sec. 3.2; official TDMPC2.act), batched over
environments: E environments x S samples go through the model in one forward per latent
step, so the planner runs once per agent step for every environment of a run.

Per environment the semantics are TD-MPC2's: 24 policy-prior trajectories kept fixed, 488
Gaussian samples around a warm-started mean, 6 iterations of top-64 elite refitting with
temperature 0.5, value = discounted decoded rewards + gamma^H * Q_avg(z_H, pi(z_H)), the
executed action sampled from the elites' final scores (Gumbel-max), plus std[0] noise when
not in eval mode.
"""
from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import fused_cpu
from .layers import NormedLinear, SimNorm
from . import math as tmath
from .math import mish_inference
from .world_model import WorldModel


@dataclass
class PlannerConfig:
    """MPPI settings; defaults are TD-MPC2's (config.yaml)."""
    mpc: bool = True  # False: act with the policy prior only
    horizon: int = 3  # planning horizon
    iterations: int = 6  # MPPI iterations per agent step
    num_samples: int = 512  # action sequences per iteration
    num_elites: int = 64  # best sequences the distribution is refitted on
    num_pi_trajs: int = 24  # of the samples, sequences from the policy prior
    min_std: float = 0.05  # lower bound of the sampling std
    max_std: float = 2.0  # initial sampling std
    temperature: float = 0.5  # softmax temperature of the elite weights
    # Environments planned together in one forward: None = all on GPU; on CPU as many as fit
    # cpu_rows_per_group rows (E x num_samples), so the layer activations stay in the 1-2 MB
    # L2 cache instead of streaming through memory (benchmarks/eval_throughput.py compares).
    envs_per_group: int | None = None
    cpu_rows_per_group: int = 1024  # rows (E x num_samples) per planned group on CPU (see envs_per_group)
    # CPU: plan the environment groups in this many threads at once, one torch thread each.
    # One plan is a chain of small ops whose Python overhead and short matmuls leave a second
    # core mostly idle even with two torch threads; whole groups in parallel use both. With
    # threads > 1 the environments are split into at least `threads` groups and each group
    # draws from its own generator, seeded from the global one in group order: returns are
    # reproducible for a given setting but differ from threads=1 (other random numbers).
    threads: int = 1

    def validate(self, where: str = "planner") -> None:
        """One-line ValueError naming the field when the settings cannot plan."""
        for name in ("horizon", "iterations", "num_samples", "num_elites", "num_pi_trajs", "cpu_rows_per_group",
                     "threads"):
            value = getattr(self, name)
            low = 0 if name == "num_pi_trajs" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{where}.{name} must be a whole number >= {low}, got {value!r}")
        if self.envs_per_group is not None and self.envs_per_group < 1:
            raise ValueError(f"{where}.envs_per_group must be >= 1 or None, got {self.envs_per_group!r}")
        if not self.num_pi_trajs < self.num_samples or self.num_elites > self.num_samples:
            raise ValueError(f"{where}: need num_pi_trajs < num_samples and num_elites <= num_samples, got "
                             f"{self.num_pi_trajs}, {self.num_samples}, {self.num_elites}")
        for name in ("min_std", "max_std", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{where}.{name} must be a finite number > 0, got {value!r}")
        if self.min_std > self.max_std:
            raise ValueError(f"{where}: min_std {self.min_std} exceeds max_std {self.max_std}")


def autocast_context(device: torch.device | str, precision: str):
    """bf16/fp16 autocast for planning ('fp32' -> no-op). fp16 autocast only on CUDA."""
    device_type = torch.device(device).type
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    if precision == "fp16" and device_type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    raise ValueError(f"precision {precision!r} is not supported on {device_type}; use fp32 or bf16"
                     + (" (fp16 autocast needs a CUDA device)" if precision == "fp16" else ""))


class TaskBoundModel:
    """The world model's planning heads with each environment's task fixed.

    The first layer of every head sees [z, e_task, a] (or [z, e_task]); with the task fixed per
    environment, W_e @ e_task + b is one constant per environment, computed once per planning
    call instead of concatenating the 96-d embedding onto every one of the E x S rows. This is
    the same arithmetic as the model's own forward (up to float summation order) with ~40% less
    work in first layers and no per-call concatenation. Inputs are (E, S, ...) per environment.
    """

    def __init__(self, model: WorldModel, task: torch.Tensor):
        self.m, cfg = model, model.cfg
        self.L, self.T = cfg.latent_dim, cfg.task_dim if cfg.multitask else 0
        emb = model._task_emb(task) if cfg.multitask else None  # (E, T), renormalised once

        def split(weight, bias):  # weight (..., out, L + T [+ A]) -> W_z, per-env bias, W_a
            w_z, w_e, w_a = weight[..., :self.L], weight[..., self.L:self.L + self.T], weight[..., self.L + self.T:]
            if emb is None:
                return w_z, bias.unsqueeze(-2).unsqueeze(-2), w_a
            env_bias = torch.einsum("et,...ot->...eo", emb.to(weight.dtype), w_e) + bias.unsqueeze(-2)
            return w_z, env_bias.unsqueeze(-2), w_a  # bias (..., E, 1, out)

        self.dyn = split(model._dynamics[0].weight, model._dynamics[0].bias)
        self.rew = split(model._reward[0].weight, model._reward[0].bias)
        self.pi_first = split(model._pi[0].weight, model._pi[0].bias)
        q0 = model._Qs.params[0]
        self.q = split(q0.weight, q0.bias)

    @staticmethod
    def _first(parts, z, a=None):
        w_z, env_bias, w_a = parts
        h = torch.matmul(z, w_z.transpose(-1, -2)) + env_bias
        return h if a is None else h + torch.matmul(a, w_a.transpose(-1, -2))

    @staticmethod
    def _norm_act(layer: NormedLinear, h):
        """The LayerNorm and activation of a NormedLinear; Mish in its planning form."""
        h = layer.ln(h)
        return mish_inference(h) if type(layer.act) is nn.Mish else layer.act(h)

    def _head(self, seq, parts, z, a=None):
        """The head `seq` (NormedLinears, then a NormedLinear or Linear) on [z, e_task(, a)].
        Layers of another kind (quantize.DynamicInt8Linear: int8 matmul, then its own LayerNorm
        and activation) run their own forward after the first."""
        h = self._norm_act(seq[0], self._first(parts, z, a))
        for layer in seq[1:]:
            if type(layer) not in (NormedLinear, nn.Linear):
                h = layer(h)
                continue
            h = F.linear(h, layer.weight, layer.bias)
            if isinstance(layer, NormedLinear):
                h = self._norm_act(layer, h)
        return h

    def next(self, z, a):
        return self._head(self.m._dynamics, self.dyn, z, a)

    def reward(self, z, a):
        return self._head(self.m._reward, self.rew, z, a)

    def pi(self, z, task):
        """Same sampling as WorldModel.pi, with the bound first layer."""
        return self.m.pi(z, task, features=self._head(self.m._pi, self.pi_first, z))

    def q_avg(self, z, a):
        """Mean of two distinct randomly drawn online Q members, decoded: (E, S, 1)."""
        qs = self.m._Qs
        members = torch.randperm(qs.num_q, device=z.device)[:2]
        w_z, env_bias, w_a = (t[members] for t in self.q)  # (2, M, L), (2, E, 1, M), (2, M, A)
        h = torch.matmul(z, w_z.transpose(-1, -2).unsqueeze(1)) + env_bias
        h = h + torch.matmul(a, w_a.transpose(-1, -2).unsqueeze(1))  # (2, E, S, M)
        q = qs.forward_hidden(h.flatten(1, 2), members, mish=mish_inference)  # (2, E*S, K)
        q1, q2 = self.m.decode(q).unflatten(1, z.shape[:2]).unbind(0)
        return (q1 + q2) / 2


def _ln_mish(x: torch.Tensor, ln: tuple, bias: torch.Tensor | None = None, out: torch.Tensor | None = None,
             fused: bool = True) -> torch.Tensor:
    """mish(LayerNorm(x + bias)) of 2-D x (N, M) (rows may be strided) in x's dtype; the
    statistics and Mish in fp32, as autocast runs LayerNorm. `ln` = (weight, bias) fp32."""
    if fused and x.device.type == "cpu":
        return fused_cpu.ln_mish(x, ln[0], ln[1], bias=bias, out=out, out_dtype=x.dtype)
    h = x.float() if bias is None else x.float() + bias
    h = mish_inference(F.layer_norm(h, h.shape[-1:], ln[0], ln[1]))
    return h.to(x.dtype) if out is None else out.copy_(h)


class _CastWeights:
    """The planning heads' parameters, cast once per act() to the compute dtype (matmul
    weights) or fp32 (biases, LayerNorm affines), so no per-op autocast casts remain."""

    def __init__(self, model: WorldModel, dtype: torch.dtype):
        self.dtype, f32 = dtype, torch.float32

        def cast(t, d):
            return t.detach().to(d).contiguous()

        def head(seq):  # [first (weight fp32, bias, ln)] + [(W^T cd, bias fp32, ln or None)] for the rest
            first = seq[0]
            layers = [(first.weight.detach().float(), cast(first.bias, f32), (cast(first.ln.weight, f32), cast(first.ln.bias, f32)))]
            for layer in seq[1:]:
                ln = (cast(layer.ln.weight, f32), cast(layer.ln.bias, f32)) if isinstance(layer, NormedLinear) else None
                layers.append((cast(layer.weight, dtype).t(), cast(layer.bias, f32), ln))
            return layers

        self.dyn, self.rew, self.pi = head(model._dynamics), head(model._reward), head(model._pi)
        q = model._Qs.params
        self.q_first = (q[0].weight.detach().float(), cast(q[0].bias, f32), (cast(q[0].ln.weight, f32), cast(q[0].ln.bias, f32)))
        self.q1 = (cast(q[1].weight, dtype).transpose(1, 2), cast(q[1].bias, f32), (cast(q[1].ln.weight, f32), cast(q[1].ln.bias, f32)))
        self.q2 = (cast(q[2].weight, dtype).transpose(1, 2), cast(q[2].bias, dtype))


def fast_path_supported(model: WorldModel) -> bool:
    """Whether FastHeads computes exactly what the model's own planning heads do: plain
    NormedLinear/Linear heads (Mish hidden layers, SimNorm dynamics output), no Q dropout."""
    def plain(seq, last_act):  # mlp(in, [M, M], out): two hidden NormedLinears, then the output layer
        if len(seq) != 3 or any(isinstance(l, NormedLinear) and l.ln.eps != 1e-5 for l in seq):
            return False
        hidden_ok = all(type(l) is NormedLinear and type(l.act) is nn.Mish and l.dropout is None for l in seq[:-1])
        last = seq[-1]
        last_ok = (type(last) is nn.Linear) if last_act is None else (
            type(last) is NormedLinear and type(last.act) is last_act and last.dropout is None)
        return hidden_ok and last_ok

    qs = model._Qs
    q_dropout = qs.dropout_p > 0 and (qs.training or qs.dropout_at_inference)
    return (plain(model._dynamics, SimNorm) and plain(model._reward, None) and plain(model._pi, None)
            and len(qs.params) == 3 and not q_dropout)


class FastHeads:
    """The planning heads for one group of E environments on the CPU, built for speed.

    Same functions as TaskBoundModel (per environment: [z, e_task, a] through each head), with
    - every first layer's input laid out as X = [a | onehot(env) | z] and its weight as
      [W_a | (W_e e_task + b)^T | W_z]: the per-environment bias enters the matmul through the
      one-hot columns, so a first layer is one matmul with nothing to add; the dynamics and
      reward first layers (same input) are one matmul into 2M columns; the policy reads the
      [onehot | z] columns of the same buffer;
    - at the first latent step z is each environment's own latent, so W_z z + bias is folded
      into the one-hot columns too and the matmul only sees [a | onehot];
    - weights pre-cast once per act() (bf16 or fp32), activations kept in that dtype between
      layers; LayerNorm statistics and Mish in fp32 (as autocast runs them), fused with the
      bias add into one pass per layer (tdmpc_lib.fused_cpu) when that kernel is available.
    Results equal TaskBoundModel's up to float summation order (fp32) and bf16 rounding points
    (bf16: within the same error as autocast; tests/test_planner.py measures both).
    """

    def __init__(self, w: _CastWeights, model: WorldModel, task: torch.Tensor, z: torch.Tensor,
                 generator: torch.Generator | None = None):
        cfg, cd = model.cfg, w.dtype
        self.w, self.m, self.cd, self.gen = w, model, cd, generator
        self.E, self.L, self.A, self.M = z.shape[0], cfg.latent_dim, cfg.action_dim, cfg.mlp_dim
        self.fused = fused_cpu.available()
        E, L, A = self.E, self.L, self.A
        T = cfg.task_dim if cfg.multitask else 0
        emb = model._task_emb(task).float() if cfg.multitask else None  # (E, T)

        def env_bias(weight, bias):  # weight (..., M, L + T [+ A]) fp32 -> (..., M, E)
            if emb is None:
                return bias.unsqueeze(-1).expand(*bias.shape, E)
            return torch.matmul(weight[..., L:L + T], emb.t()) + bias.unsqueeze(-1)

        def first(weight, bias, with_a=True):  # -> [W_a | env bias | W_z] (..., M, A + E + L)
            w_a = weight[..., L + T:] if with_a else weight.new_zeros(weight.shape[:-1] + (A,))
            return torch.cat([w_a, env_bias(weight, bias), weight[..., :L]], -1)

        (dw, db, self.dyn_ln0), (rw, rb, self.rew_ln0) = w.dyn[0], w.rew[0]
        dr = torch.cat([first(dw, db), first(rw, rb)])  # (2M, A + E + L)
        self.dr_t = dr.to(cd).t()
        # first latent step: z is the environment's own, so W_z z joins the one-hot columns
        fold = dr[:, A:A + E] + torch.matmul(dr[:, A + E:], z.float().t())  # (2M, E)
        self.dr0_t = torch.cat([dr[:, :A], fold], 1).to(cd).t()  # (A + E, 2M)
        pw, pb, self.pi_ln0 = w.pi[0]
        self.pi_t = first(pw, pb, with_a=False)[:, A:].to(cd).t()  # (E + L, M)
        qw, qb, self.q_ln0 = w.q_first
        self.q_first = first(qw, qb).to(cd)  # (N_q, M, A + E + L)
        self.z = z

    def buffer(self, S: int, steps: int) -> torch.Tensor:
        """Input buffers X (steps, E*S, A + E + L) with the one-hot columns filled."""
        E, A = self.E, self.A
        X = torch.zeros(steps, E * S, A + E + self.L, dtype=self.cd)
        X[:, :, A:A + E] = torch.eye(E, dtype=self.cd).repeat_interleave(S, 0)
        return X

    def _mlp_rest(self, h, layers):  # h (N, M) after the first layer's LayerNorm + Mish
        (w1_t, b1, ln1), (w2_t, b2, ln2) = layers[1], layers[2]
        h = _ln_mish(torch.mm(h, w1_t), ln1, bias=b1, fused=self.fused)
        return torch.mm(h, w2_t), b2, ln2

    def _first_pair(self, X: torch.Tensor, t0: bool):
        """Dynamics and reward first layers (LayerNorm + Mish applied) on X (N, A + E + L)."""
        M = self.M
        h = torch.mm(X[:, :self.A + self.E], self.dr0_t) if t0 else torch.mm(X, self.dr_t)  # (N, 2M)
        return (_ln_mish(h[:, :M], self.dyn_ln0, fused=self.fused),
                _ln_mish(h[:, M:], self.rew_ln0, fused=self.fused))

    def _next(self, h, out):
        """Dynamics from its first layer's output h -> SimNorm latent written into out (N, L)."""
        y, b2, ln2 = self._mlp_rest(h, self.w.dyn)
        group = self.m._dynamics[-1].act.dim
        if self.fused:
            fused_cpu.ln_simnorm(y, ln2[0], ln2[1], group, bias=b2, out=out)
            return
        y = F.layer_norm(y.float() + b2, y.shape[-1:], ln2[0], ln2[1]).view(y.shape[0], -1, group)
        y = (y - y.amax(-1, keepdim=True)).exp_()  # softmax per group (F.softmax over 8 is slow on CPU)
        out.copy_(y.div_(y.sum(-1, keepdim=True)).view(out.shape))

    def _reward(self, h):
        y, b2, _ = self._mlp_rest(h, self.w.rew)
        return self.m.decode(y.float() + b2)  # (N, 1)

    def _pi(self, X, task_mask, eps):
        """Policy sample as WorldModel.pi from X's [onehot | z] columns; eps (N, A) -> (N, A) fp32."""
        cfg = self.m.cfg
        h = _ln_mish(torch.mm(X[:, self.A:], self.pi_t), self.pi_ln0, fused=self.fused)
        y, b2, _ = self._mlp_rest(h, self.w.pi)
        mu, log_std = (y.float() + b2).chunk(2, dim=-1)
        log_std = tmath.log_std(log_std, cfg.log_std_min, cfg.log_std_max)
        if task_mask is not None:
            mu, log_std, eps = mu * task_mask, log_std * task_mask, eps * task_mask
        return torch.tanh(mu + eps * log_std.exp())

    def _q_avg(self, X, members):
        """Mean of the decoded Q of two members on X = [a | onehot | z] -> (N, 1). The members
        are taken in ascending order: (q1 + q2) / 2 is the same float either way round."""
        M = self.M
        i, j = sorted(int(k) for k in members)
        w0 = self.q_first[:2] if (i, j) == (0, 1) else self.q_first[[i, j]]  # (2, M, K')
        h = torch.mm(X, w0.view(-1, w0.shape[-1]).t())  # (N, 2M): one matmul for both members
        w1_t, b1, ln1 = self.w.q1
        w2_t, b2 = self.w.q2
        q = []
        for col, k in enumerate((i, j)):
            hk = _ln_mish(h[:, col * M:(col + 1) * M], (self.q_ln0[0][k], self.q_ln0[1][k]), fused=self.fused)
            hk = _ln_mish(torch.mm(hk, w1_t[k]), (ln1[0][k], ln1[1][k]), bias=b1[k], fused=self.fused)
            q.append(self.m.decode(torch.addmm(b2[k], hk, w2_t[k])))
        return (q[0] + q[1]) / 2

    def prior(self, P: int, H: int, task_mask: torch.Tensor | None) -> torch.Tensor:
        """Policy-prior trajectories (H, E, P, A) fp32, RNG draws as the reference order."""
        E, A = self.E, self.A
        X = self.buffer(P, 1)[0]
        X[:, A + E:] = self.z.to(self.cd).repeat_interleave(P, 0)
        mask = None if task_mask is None else task_mask.repeat_interleave(P, 0)
        out = torch.empty(H, E, P, A)
        for t in range(H):
            eps = torch.randn(E, P, A, generator=self.gen).view(E * P, A)
            a = self._pi(X, mask, eps)
            out[t] = a.view(E, P, A)
            if t < H - 1:
                X[:, :A] = a
                h = _ln_mish(torch.mm(X, self.dr_t[:, :self.M]), self.dyn_ln0, fused=self.fused)
                self._next(h, X[:, A + E:])
        return out

    def value(self, X: torch.Tensor, actions: torch.Tensor, gamma: torch.Tensor,
              task_mask: torch.Tensor | None) -> torch.Tensor:
        """actions (H, E, S, A) with buffers X (H + 1, E*S, .) -> return estimate (E, S, 1):
        sum_t gamma^t r_t + gamma^H Q_avg(z_H, pi(z_H)); RNG: the policy's eps, then the Q members."""
        H, E, S, A = actions.shape
        N = E * S
        X[:H, :, :A] = actions.view(H, N, A)
        G, discount = torch.zeros(E, S, 1), torch.ones_like(gamma)
        for t in range(H):
            hd, hr = self._first_pair(X[t], t == 0)
            reward = self._reward(hr).view(E, S, 1)
            self._next(hd, X[t + 1][:, A + E:])
            G = G + discount * reward
            discount = discount * gamma
        eps = torch.randn(E, S, A, generator=self.gen).view(N, A)
        a = self._pi(X[H], task_mask, eps)
        X[H][:, :A] = a
        members = torch.randperm(self.m._Qs.num_q, generator=self.gen)[:2]
        return G + discount * self._q_avg(X[H], members).view(E, S, 1)


class BatchedPlanner:
    """Plans for E environments at once. Holds each environment's warm-start mean.

    act(obs (E, O), task (E,) long, t0 (E,) bool) -> actions (E, A) in [-1, 1], padded to A
    (entries beyond a task's action dim are 0).
    """

    # Builds the planning heads for (model, task (E,)); benchmarks swap in the model's generic
    # forward to time the reference's way of planning against this one.
    heads_factory = TaskBoundModel

    def __init__(self, model: WorldModel, cfg: PlannerConfig | None = None, eval_mode: bool = True,
                 precision: str = "fp32", fast: bool = True):
        """`fast`: on the CPU, plan with FastHeads (pre-cast weights, no autocast, fused
        LayerNorm + Mish) where the model allows it (fast_path_supported); False keeps the
        autocast + TaskBoundModel path (the benchmarks' "before")."""
        self.model, self.cfg, self.eval_mode, self.precision = model, cfg or PlannerConfig(), eval_mode, precision
        self.fast = fast
        self._prev_mean: torch.Tensor | None = None
        self._pool: ThreadPoolExecutor | None = None  # PlannerConfig.threads > 1, made on first use
        autocast_context(next(model.parameters()).device, precision)  # validate early

    def uses_fast_path(self, device: torch.device) -> bool:
        return (self.fast and device.type == "cpu" and self.precision in ("fp32", "bf16")
                and self.heads_factory is TaskBoundModel and fast_path_supported(self.model))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, task: torch.Tensor, t0: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        obs, task, t0 = obs.to(device), task.to(device).long(), t0.to(device)
        with autocast_context(device, self.precision):
            z = self.model.encode(obs, task)
            if not self.cfg.mpc:
                action, info = self.model.pi(z, task)
                return (info["mean"] if self.eval_mode else action).float()
        z, E = z.float(), z.shape[0]
        prev = self._prev_mean if self._prev_mean is not None and self._prev_mean.shape[1] == E else None
        group = self.group_size(E, device)
        groups = [slice(start, start + group) for start in range(0, E, group)]
        if self.uses_fast_path(device):
            weights = _CastWeights(self.model, torch.bfloat16 if self.precision == "bf16" else torch.float32)
            context, plan = contextlib.nullcontext(), lambda *args: self._plan_fast(weights, *args)
        else:
            context, plan = autocast_context(device, self.precision), self._plan

        def plan_group(envs: slice, generator: torch.Generator | None = None):
            with torch.no_grad(), context:  # grad mode and autocast are per thread
                return plan(z[envs], task[envs], t0[envs], None if prev is None else prev[:, envs], generator)

        if self.threaded(device) and len(groups) > 1:
            seeds = torch.randint(2 ** 62, (len(groups),)).tolist()  # one draw per group, in group order
            out = self._in_threads(lambda i: plan_group(groups[i], torch.Generator().manual_seed(seeds[i])),
                                   len(groups))
        else:
            out = [plan_group(envs) for envs in groups]
        self._prev_mean = torch.cat([mean for _, mean in out], 1)
        return torch.cat([action for action, _ in out])

    def threaded(self, device: torch.device) -> bool:
        """Whether groups are planned in PlannerConfig.threads threads (the CPU fast path only)."""
        return self.cfg.threads > 1 and self.uses_fast_path(device)

    def group_size(self, E: int, device: torch.device) -> int:
        """How many of E environments one planning forward takes (see PlannerConfig)."""
        if self.cfg.envs_per_group is not None:
            return max(1, self.cfg.envs_per_group)
        if device.type != "cpu":
            return max(1, E)
        size = max(1, self.cfg.cpu_rows_per_group // self.cfg.num_samples)
        if self.threaded(device):  # at least one group per thread
            size = min(size, -(-E // self.cfg.threads))
        return size

    def _in_threads(self, fn, n: int) -> list:
        """[fn(0), ..., fn(n - 1)] in the planner's threads, with one torch thread each (torch's
        thread count is process-wide: it is restored afterwards)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.cfg.threads, thread_name_prefix="planner")
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return list(self._pool.map(fn, range(n)))
        finally:
            torch.set_num_threads(before)

    def _value(self, heads: TaskBoundModel, z: torch.Tensor, actions: torch.Tensor, task: torch.Tensor,
               gamma: torch.Tensor) -> torch.Tensor:
        """z (E, S, L), actions (H, E, S, A), gamma (E, 1, 1) -> return estimate (E, S, 1):
        sum_t gamma^t r_t + gamma^H Q_avg(z_H, pi(z_H))."""
        G, discount = torch.zeros(z.shape[:-1] + (1,), device=z.device), torch.ones_like(gamma)
        for t in range(actions.shape[0]):
            reward = self.model.decode(heads.reward(z, actions[t]))
            z = heads.next(z, actions[t])
            G = G + discount * reward
            discount = discount * gamma
        action, _ = heads.pi(z, task)
        return G + discount * heads.q_avg(z, action)

    def _warm_start(self, E: int, t0: torch.Tensor, device, prev: torch.Tensor | None) -> torch.Tensor:
        """Initial mean (H, E, A): zeros at an episode's first step, else the previous final
        mean prev (H, E, A) shifted one step ahead with a zero last step. std is never warm-started."""
        mean = torch.zeros(self.cfg.horizon, E, self.model.cfg.action_dim, device=device)
        if prev is not None:
            warm = ~t0.bool()
            mean[:-1, warm] = prev[1:, warm]
        return mean

    def _plan(self, z: torch.Tensor, task: torch.Tensor, t0: torch.Tensor, prev_mean: torch.Tensor | None,
              generator: None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """MPPI for E environments: z (E, L) -> (action (E, A), final mean (H, E, A)). Draws
        from the global generator (the model's own pi and Q draw there); never threaded."""
        cfg, m = self.cfg, self.model
        E, A, H, S, P = z.shape[0], m.cfg.action_dim, cfg.horizon, cfg.num_samples, cfg.num_pi_trajs
        heads = self.heads_factory(m, task)
        task_s = task[:, None].expand(E, S)
        gamma = m.discount(task, z.device)[:, None]  # (E, 1, 1)
        mask = m.action_mask(task, z)  # (E, A) or None
        actions = torch.empty(H, E, S, A, device=z.device)
        if P > 0:  # policy-prior trajectories, fixed over iterations
            z_pi, task_p = z[:, None].expand(E, P, -1), task[:, None].expand(E, P)
            for t in range(H):
                actions[t, :, :P] = heads.pi(z_pi, task_p)[0].float()
                if t < H - 1:
                    z_pi = heads.next(z_pi, actions[t, :, :P])

        mean = self._warm_start(E, t0, z.device, prev_mean)
        z_s = z[:, None].expand(E, S, -1)

        def value_of(actions):
            return self._value(heads, z_s, actions, task_s, gamma)

        return self._mppi(actions, mean, mask, value_of)

    def _plan_fast(self, weights: _CastWeights, z: torch.Tensor, task: torch.Tensor, t0: torch.Tensor,
                   prev_mean: torch.Tensor | None, generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """_plan with FastHeads: the same RNG draws in the same order, the same MPPI; from
        `generator` instead of the global one when given."""
        cfg, m = self.cfg, self.model
        E, A, H, S, P = z.shape[0], m.cfg.action_dim, cfg.horizon, cfg.num_samples, cfg.num_pi_trajs
        heads = FastHeads(weights, m, task, z, generator)
        gamma = m.discount(task, z.device)[:, None]  # (E, 1, 1)
        mask = m.action_mask(task, z)  # (E, A) or None
        mask_rows = None if mask is None else mask.repeat_interleave(S, 0)  # (E*S, A)
        actions = torch.empty(H, E, S, A)
        if P > 0:
            actions[:, :, :P] = heads.prior(P, H, None if mask is None else mask)
        mean = self._warm_start(E, t0, z.device, prev_mean)
        X = heads.buffer(S, H + 1)
        return self._mppi(actions, mean, mask, lambda actions: heads.value(X, actions, gamma, mask_rows), generator)

    def _mppi(self, actions: torch.Tensor, mean: torch.Tensor, mask: torch.Tensor | None, value_of,
              generator: torch.Generator | None = None):
        """MPPI iterations on actions (H, E, S, A) whose first num_pi_trajs samples are filled;
        value_of(actions) -> (E, S, 1). Returns (action (E, A), final mean (H, E, A))."""
        cfg = self.cfg
        H, E, S, A = actions.shape
        P = cfg.num_pi_trajs
        mask_s = None if mask is None else mask[:, None, :]
        std = torch.full((H, E, A), cfg.max_std, device=actions.device)
        for _ in range(cfg.iterations):
            noise = torch.randn(H, E, S - P, A, device=actions.device, generator=generator)
            actions[:, :, P:] = (mean[:, :, None] + std[:, :, None] * noise).clamp(-1, 1)
            if mask_s is not None:
                actions.mul_(mask_s)
            value = torch.nan_to_num(value_of(actions).squeeze(-1), nan=0.0)  # (E, S)
            elite_value, elite_idx = torch.topk(value, cfg.num_elites, dim=1)
            elite_actions = torch.gather(actions, 2, elite_idx[None, :, :, None].expand(H, E, -1, A))
            score = torch.exp(cfg.temperature * (elite_value - elite_value.max(1, keepdim=True).values))
            score = score / score.sum(1, keepdim=True)  # (E, K)
            w = score[None, :, :, None]
            denom = score.sum(1)[None, :, None] + 1e-9
            mean = (w * elite_actions).sum(2) / denom
            std = ((w * (elite_actions - mean[:, :, None]) ** 2).sum(2) / denom).sqrt()
            std = std.clamp(cfg.min_std, cfg.max_std)
            if mask is not None:
                mean, std = mean * mask, std * mask

        # Sample one elite per environment from the final scores (Gumbel-max on log score).
        uniform = torch.rand(score.shape, dtype=score.dtype, device=score.device, generator=generator)
        gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-20)))
        choice = torch.argmax(torch.log(score) + gumbel, dim=1)  # (E,)
        action = elite_actions[0, torch.arange(E, device=actions.device), choice]  # (E, A)
        if not self.eval_mode:
            action = action + std[0] * torch.randn(action.shape, dtype=action.dtype, device=action.device,
                                                   generator=generator)
        return action.clamp(-1, 1), mean
