"""The CPU fast planning path (planner.FastHeads, fused_cpu kernels) against the autocast +
TaskBoundModel path and the model's own forward.

Tolerances: fp32 differs from the reference path only in float summation order (the task bias
and, at the first latent step, W_z z enter the first matmul as extra columns; the fused kernel
sums LayerNorm statistics in another order and uses a polynomial exp): 1e-5 on heads, 1e-4 on
values, and the same planned actions for the same seed. bf16 rounds at other points than
autocast does (the first layer's output once after the fp32-accumulated matmul instead of two
bf16 partial products plus an fp32 bias): its value error against fp32 must stay within 1.5x
autocast's own bf16 error (plus 0.02 absolute).
"""
import pytest
import torch
import torch.nn.functional as F

from tdmpc_lib import fused_cpu, make_world_model, quantize as Q
from tdmpc_lib.math import mish_inference
from tdmpc_lib.planner import (BatchedPlanner, FastHeads, PlannerConfig, TaskBoundModel, _CastWeights,
                               autocast_context, fast_path_supported)

needs_kernel = pytest.mark.skipif(not fused_cpu.available(), reason=f"fused kernel: {fused_cpu.unavailable_reason()}")


def _model(size=1, seed=0):
    m = make_world_model(size, seed=seed)
    with torch.no_grad():  # non-trivial heads (fresh reward/Q heads output constants)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def _inputs(m, E=3, S=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    L, A = m.cfg.latent_dim, m.cfg.action_dim
    z = torch.softmax(torch.randn(E, L, generator=g).view(E, -1, 8), -1).view(E, L)
    actions = torch.rand(3, E, S, A, generator=g) * 2 - 1  # horizon 3
    return z, actions


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_kernels_match_eager(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(70, 2 * 384, generator=g) * 3).to(dtype)[:, 384:]  # strided rows, as the planner passes
    gamma, beta, bias = (torch.randn(384, generator=g) for _ in range(3))
    out = fused_cpu.ln_mish(x, gamma, beta, bias=bias)
    ref = mish_inference(F.layer_norm(x.float() + bias, (384,), gamma, beta))
    tol = 2e-6 if dtype == torch.float32 else 8e-3  # bf16: one rounding of the output, ties may differ
    assert out.dtype == dtype and torch.allclose(out.float(), ref.to(dtype).float(), rtol=tol, atol=tol)
    y = (torch.randn(70, 128, generator=g) * 3).to(dtype)
    out = fused_cpu.ln_simnorm(y, gamma[:128], beta[:128], 8, bias=bias[:128])
    ref = F.softmax(F.layer_norm(y.float() + bias[:128], (128,), gamma[:128], beta[:128]).view(70, 16, 8), -1)
    assert torch.allclose(out.float(), ref.view(70, 128).to(dtype).float(), rtol=tol, atol=tol)
    with pytest.raises(ValueError):
        fused_cpu.ln_mish(x.t(), gamma, beta)


def _fast_value(m, z, actions, task, dtype, fused=True):
    heads = FastHeads(_CastWeights(m, dtype), m, task, z)
    heads.fused = heads.fused and fused
    H, E, S, A = actions.shape
    mask = m.action_mask(task, z).repeat_interleave(S, 0)
    gamma = m.discount(task, z.device)[:, None]
    torch.manual_seed(7)
    return heads.value(heads.buffer(S, H + 1), actions.clone(), gamma, mask).squeeze(-1)


def _reference_value(m, z, actions, task, precision):
    planner = BatchedPlanner(m, precision=precision, fast=False)
    heads = TaskBoundModel(m, task)
    E, S = actions.shape[1:3]
    torch.manual_seed(7)
    with torch.no_grad(), autocast_context("cpu", precision):
        return planner._value(heads, z[:, None].expand(E, S, -1), actions, task[:, None].expand(E, S),
                              m.discount(task, z.device)[:, None]).squeeze(-1).float()


@pytest.mark.parametrize("fused", [True, False])
def test_fast_value_fp32_equals_the_reference_path(fused):
    """Same RNG draws (policy eps, Q members) in the same order -> the same value up to float order."""
    if fused and not fused_cpu.available():
        pytest.skip(fused_cpu.unavailable_reason())
    m = _model()
    task = torch.tensor([4, 6, 16])  # 2, 1, 5 action dims
    z, actions = _inputs(m)
    actions = actions * m.action_mask(task, z)[None, :, None]
    with torch.no_grad():
        fast = _fast_value(m, z, actions, task, torch.float32, fused)
        ref = _reference_value(m, z, actions, task, "fp32")
    assert torch.allclose(fast, ref, atol=1e-4, rtol=1e-5), (fast - ref).abs().max()


def test_fast_value_bf16_error_within_autocast_error():
    m = _model()
    task = torch.tensor([0, 3, 12])
    z, actions = _inputs(m, S=64)
    actions = actions * m.action_mask(task, z)[None, :, None]
    with torch.no_grad():
        truth = _reference_value(m, z, actions, task, "fp32")
        autocast_err = (_reference_value(m, z, actions, task, "bf16") - truth).abs().max()
        fast_err = (_fast_value(m, z, actions, task, torch.bfloat16) - truth).abs().max()
    assert fast_err <= 1.5 * autocast_err + 0.02, (fast_err, autocast_err)


def test_fast_planner_fp32_plans_the_reference_actions():
    """Whole act() calls (prior trajectories, 6 MPPI iterations, warm start, env groups): the fast
    fp32 path draws the same random numbers, so it picks the same elites and actions."""
    m = _model()
    obs, task, t0 = torch.randn(3, 24), torch.tensor([0, 4, 16]), torch.ones(3, dtype=torch.bool)
    cfg = PlannerConfig(num_samples=128, num_elites=16, num_pi_trajs=8, envs_per_group=2)
    runs = {}
    for fast in (False, True):
        planner = BatchedPlanner(m, cfg, eval_mode=False, fast=fast)
        torch.manual_seed(11)
        runs[fast] = (planner.act(obs, task, t0), planner.act(obs, task, ~t0), planner._prev_mean)
        assert planner.uses_fast_path(torch.device("cpu")) == fast
    for a, b in zip(runs[False], runs[True]):
        assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_threaded_planning_equals_the_same_groups_planned_one_after_another(monkeypatch):
    """PlannerConfig.threads: groups planned at once in threads, each from its own generator
    seeded in group order, give exactly what the same groups give planned in sequence (no state
    shared between threads), reproducibly; torch's thread count is restored; threads=1 keeps
    the global draws (the reference actions above)."""
    m = _model()
    E = 5
    obs, task, t0 = torch.randn(E, 24), torch.tensor([0, 4, 16, 6, 29]), torch.ones(E, dtype=torch.bool)
    cfg = PlannerConfig(num_samples=64, num_elites=8, num_pi_trajs=4, iterations=2, threads=2)

    def run(planner):
        torch.manual_seed(5)
        return planner.act(obs, task, t0), planner.act(obs, task, ~t0), planner._prev_mean

    threaded = BatchedPlanner(m, cfg, eval_mode=False)
    assert threaded.threaded(torch.device("cpu")) and threaded.group_size(E, torch.device("cpu")) == 3
    before = torch.get_num_threads()
    got, again = run(threaded), run(threaded)
    assert torch.get_num_threads() == before
    sequential = BatchedPlanner(m, cfg, eval_mode=False)

    def one_after_another(fn, n):  # with one torch thread too: matmul sums split by thread count
        torch.set_num_threads(1)
        try:
            return [fn(i) for i in range(n)]
        finally:
            torch.set_num_threads(before)

    monkeypatch.setattr(sequential, "_in_threads", one_after_another)
    want = run(sequential)
    for g, a, w in zip(got, again, want):
        assert torch.equal(g, w) and torch.equal(g, a)
    assert got[0].abs().max() <= 1 and torch.all(got[0][1, 2:] == 0)  # bounded, masked (task 4: 2 dims)
    one = BatchedPlanner(m, PlannerConfig(num_samples=64, num_elites=8, num_pi_trajs=4, iterations=2), eval_mode=False)
    assert not torch.equal(run(one)[0], got[0])  # threads=1: the global generator's draws
    with pytest.raises(ValueError, match="threads"):
        PlannerConfig(threads=0).validate()


def test_fast_planner_bf16_runs_masked_and_bounded():
    m = _model()
    obs, task, t0 = torch.randn(3, 24), torch.tensor([6, 4, 16]), torch.ones(3, dtype=torch.bool)
    a = BatchedPlanner(m, PlannerConfig(num_samples=64, num_elites=8, num_pi_trajs=4), precision="bf16").act(obs, task, t0)
    assert a.dtype == torch.float32 and a.shape == (3, 6) and a.abs().max() <= 1
    assert torch.all(a[0, 1:] == 0) and torch.all(a[1, 2:] == 0) and torch.all(a[2, 5:] == 0)


def test_fast_path_only_where_it_computes_the_same_heads():
    m = _model("tiny")
    assert fast_path_supported(m)
    m.set_q_dropout_at_inference(True)  # paper protocol: Q dropout in planning -> reference path
    assert not fast_path_supported(m)
    m.set_q_dropout_at_inference(False)
    assert not fast_path_supported(Q.int8_dynamic_model(m))  # int8 matmul layers -> reference path


def test_int8_matmul_model_plans_with_its_layer_norms():
    """TaskBoundModel runs the int8 layers' own forward (LayerNorm, Mish/SimNorm included); its
    first layer stays fp32 (task folded in), so the int8 activation quantization of the model's
    own first layer is the only difference (it used to skip the later layers' LayerNorm and
    activation: no SimNorm on the latent, errors ~0.5)."""
    m = _model("tiny")
    dyn = Q.int8_dynamic_model(m)
    E, S = 2, 5
    task = torch.tensor([0, 4])
    z = torch.softmax(torch.randn(E, S, 32).view(E, S, 4, 8), -1).view(E, S, 32)
    a = torch.rand(E, S, 6) * 2 - 1
    with torch.no_grad():
        heads = TaskBoundModel(dyn, task)
        task_s = task[:, None].expand(E, S)
        nxt = heads.next(z, a)
        assert torch.allclose(nxt.view(E, S, -1, 8).sum(-1), torch.ones(E, S, 4), atol=1e-5)
        assert torch.allclose(nxt, dyn.next(z, a, task_s), atol=0.03)
        assert torch.allclose(heads.reward(z, a), dyn.reward(z, a, task_s), atol=0.1)
