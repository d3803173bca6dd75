"""The training update's numbers are pinned: losses and parameters after a few updates equal a
recording made from the straightforward update (per-step latent rollout through the
WorldModel's own calls, one term at a time) before it was optimised for speed, and the
optimised forward is the same function as the WorldModel's in float64.

The recording (tests/fixtures/update_pin.json, made by commit 87ec8e9's update) holds, per
scenario, every value the update returns at every step and checksums of every model/optimizer
tensor afterwards (float64 sum, sum of squares, and the dot product with a fixed pseudo-random
vector, which notices a single changed element).

Tolerances (fp32), all relative to max(|value|, 1):
- 1e-6 for what the first update computes before its first optimizer step (world-model losses,
  TD target, distillation terms, gradient norm). The optimised code sums floats in another
  order (split first layers, fused kernels), which moves the last bits of a float32; measured
  here: <= 1e-7.
- 5e-5 for everything after an optimizer step (the policy terms, later updates, parameters)
  and 2e-4 for Adam's moments. Adam's first steps move every parameter by ~lr * g / |g|, so a
  gradient that is ~0 by cancellation (relative rounding error ~1) moves by a fraction of lr
  either way: up to 5e-5 on single weights of the 1M model; the policy step sees those Q
  weights. Measured: <= 1.4e-5 (1M), <= 2e-7 (tiny); moments (~g^2, g^4 in their sum of
  squares) <= 8e-5. A changed coefficient, input, mask or term moves values by >= 1e-4.
- bf16 autocast rounds matmul inputs to 8 mantissa bits, so any reordering moves results by
  ~1e-2: the bf16 scenario only catches gross changes (5e-2).

Regenerate only for an intended change of the update's semantics:
    python tests/test_update_parity.py --record
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tdmpc_lib.train import DistillConfig, Distiller, Learner, Teacher, TrainConfig
from tdmpc_lib.world_model import make_world_model

PIN = Path(__file__).resolve().parent / "fixtures" / "update_pin.json"
# Output-layer weights of the pinned students: decoded rewards and Q values of tens, as in
# training (std 0.3 gives Q ~ -1500, where symexp turns last-bit logit differences into 1e-5).
OUTPUT_STD = 0.05
# (before the first optimizer step, after it, Adam moments) per precision; see the docstring.
TOL = {"fp32": (1e-6, 5e-5, 2e-4), "bf16": (5e-2, 5e-2, 5e-2)}
FIRST_STEP_KEYS = ("consistency_loss", "reward_loss", "value_loss", "total_loss", "grad_norm", "td_target",
                   "distill_reward_loss", "distill_latent_loss", "d_coef")


class TableCache:
    """A teacher-target cache held in memory: one teacher reward per dataset row."""

    def __init__(self, values: torch.Tensor):
        self.table = values

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        return self.table[rows].unsqueeze(-1)


def make_batch(model_cfg, batch_size: int, horizon: int, seed: int, num_rows: int = 10_000):
    """A synthetic batch from its own generator: obs (H+1,B,O), action (H,B,A) masked to each
    task's action dims, reward (H,B,1), task (B,), rows (H+1,B)."""
    g = torch.Generator().manual_seed(seed)
    H, B = horizon, batch_size
    task = torch.randint(0, model_cfg.num_tasks, (B,), generator=g)
    dims = torch.tensor(model_cfg.action_dims)[task]
    mask = (torch.arange(model_cfg.action_dim)[None] < dims[:, None]).float()
    action = (torch.rand(H, B, model_cfg.action_dim, generator=g) * 2 - 1) * mask
    obs = torch.randn(H + 1, B, model_cfg.obs_dim, generator=g)
    reward = torch.rand(H, B, 1, generator=g) * 2
    start = torch.randint(0, num_rows - H - 1, (B,), generator=g)
    rows = start[None] + torch.arange(H + 1)[:, None]
    return SimpleNamespace(obs=obs, action=action, reward=reward, task=task, rows=rows)


def randomized(model, seed, std=0.3):
    """Random reward/Q output layers (they start at zero): non-trivial logits from step 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (model._reward[-1].weight, model._Qs.params[-1].weight):
            p.copy_(torch.randn(p.shape, generator=g) * std)
        model._target_Qs.load_state_dict(model._Qs.state_dict())
    return model


def make_distiller(kind: str, student_latent: int, num_rows: int):
    """None, or the Distiller of one distillation scenario (tiny random teacher)."""
    if kind == "none":
        return None, DistillConfig()
    if kind == "cached":
        g = torch.Generator().manual_seed(11)
        cfg = DistillConfig(teacher="cached", cache="in-memory", d_coef=0.45, schedule="decrease")
        return Distiller(cfg, None, student_latent, cache=TableCache(torch.rand(num_rows, generator=g) * 2)), cfg
    teacher = Teacher(randomized(make_world_model("tiny", seed=7), 8, OUTPUT_STD), "cpu")
    cfg = DistillConfig(teacher="random tiny", d_coef=0.45, all_steps=True, latent="linear")
    return Distiller(cfg, teacher, student_latent, seed=3), cfg


SCENARIOS = {
    # name: (student size, batch, updates, precision, distillation)
    "tiny_fp32": ("tiny", 32, 4, "fp32", "none"),
    "tiny_cached_distill": ("tiny", 32, 3, "fp32", "cached"),
    "tiny_online_reward_latent_all_steps": ("tiny", 32, 3, "fp32", "online"),
    "tiny_bf16": ("tiny", 32, 3, "bf16", "none"),
    "1M_fp32": (1, 64, 2, "fp32", "none"),
}


def checksums(t: torch.Tensor) -> list[float]:
    """[sum, sum of squares, dot with a fixed N(0,1) vector, numel] in float64."""
    x = t.detach().double().reshape(-1)
    probe = torch.randn(x.numel(), generator=torch.Generator().manual_seed(x.numel()), dtype=torch.float64)
    return [float(x.sum()), float((x * x).sum()), float((x * probe).sum()), x.numel()]


def run_scenario(name: str) -> dict:
    size, batch_size, updates, precision, distill = SCENARIOS[name]
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the BLAS reduction order of the recording
    try:
        model = randomized(make_world_model(size, seed=1), 2, OUTPUT_STD)
        distiller, dcfg = make_distiller(distill, model.cfg.latent_dim, 10_000)
        cfg = TrainConfig(data="x", batch_size=batch_size, precision=precision, steps=10, distill=dcfg)
        learner = Learner(model, cfg, distiller)
        torch.manual_seed(5)
        outs = []
        for step in range(updates):
            out = learner.update(make_batch(model.cfg, batch_size, cfg.horizon, seed=100 + step), step)
            outs.append({k: float(v) for k, v in sorted(out.items())})
        state = {f"model.{k}": checksums(v) for k, v in model.state_dict().items() if v.is_floating_point()}
        for opt_name, opt in (("optim", learner.optim), ("pi_optim", learner.pi_optim)):
            for i, s in enumerate(opt.state_dict()["state"].values()):
                for k in ("exp_avg", "exp_avg_sq"):
                    state[f"{opt_name}.{i}.{k}"] = checksums(s[k])
        if distiller is not None and distiller.projection is not None:
            for k, v in distiller.projection.state_dict().items():
                state[f"projection.{k}"] = checksums(v)
        state["scale"] = checksums(learner.scale.value)
        return {"outputs": outs, "state": state}
    finally:
        torch.set_num_threads(before)


def close(got: float, want: float, tol: float) -> bool:
    return abs(got - want) <= tol * max(abs(want), 1.0)


def same_tensor(got: list[float], want: list[float], tol: float) -> bool:
    """Checksums of one tensor agree. Sum and probe dot are sums of n terms that may cancel, so
    their tolerance scales with sqrt(n) * ||x|| (Cauchy-Schwarz), the largest they could move
    when every element moves by the relative tolerance; the sum of squares is compared directly."""
    s, sq, dot, n = want
    scale = tol * max((n * sq) ** 0.5, 1.0)
    return got[3] == n and close(got[1], sq, tol) and abs(got[0] - s) <= scale and abs(got[2] - dot) <= scale


@pytest.fixture(scope="module")
def pin():
    return json.loads(PIN.read_text())


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_update_equals_the_recorded_straightforward_update(pin, name):
    first, after, moments = TOL[SCENARIOS[name][3]]
    got, want = run_scenario(name), pin[name]
    assert len(got["outputs"]) == len(want["outputs"])
    for step, (g, w) in enumerate(zip(got["outputs"], want["outputs"])):
        assert sorted(g) == sorted(w), f"update {step}: returned keys changed"
        bad = {k: (g[k], w[k]) for k in w
               if not close(g[k], w[k], first if step == 0 and k in FIRST_STEP_KEYS else after)}
        assert not bad, f"{name}, update {step}: {bad}"
    assert sorted(got["state"]) == sorted(want["state"])
    bad = {k: (got["state"][k], v) for k, v in want["state"].items()
           if not same_tensor(got["state"][k], v, moments if ".exp_avg" in k else after)}
    assert not bad, f"{name}: parameters/optimizer state differ: {dict(list(bad.items())[:5])}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_update_parity.py --record")
    PIN.parent.mkdir(exist_ok=True)
    PIN.write_text(json.dumps({name: run_scenario(name) for name in SCENARIOS}, indent=1) + "\n")
    print(f"wrote {PIN}")


# ------------------------------------------------------------------------------ same function
def _reference_model_losses(model, obs, action, reward, task, next_z, td_target, rho):
    """TDMPC2._update's model losses through the WorldModel's own calls (concatenated inputs, one step at a time);
    the losses in fp32 from there on, as the update computes them."""
    from tdmpc_lib import math as tmath
    cfg, H = model.cfg, action.shape[0]
    z = model.encode(obs[0], task)
    zs = [z]
    for t in range(H):
        z = model.next(z, action[t], task)
        zs.append(z)
    zs = torch.stack(zs)
    cons = sum(rho ** t * ((zs[t + 1].float() - next_z[t].float()) ** 2).mean() for t in range(H)) / H
    reward_logits = model.reward(zs[:-1], action, task)
    q = model.Q(zs[:-1], action, task, return_type="all")  # one dropout draw for all members
    rew = sum(rho ** t * tmath.soft_ce(reward_logits[t].float(), reward[t], cfg.num_bins, cfg.vmin, cfg.vmax).mean()
              for t in range(H)) / H
    val = sum(rho ** t * tmath.soft_ce(q[i, t].float(), td_target[t], cfg.num_bins, cfg.vmin, cfg.vmax).mean()
              for t in range(H) for i in range(cfg.num_q)) / (H * cfg.num_q)
    return {"consistency": cons, "reward": rew, "value": val}, zs


@pytest.mark.parametrize("multitask", [True, False])
def test_training_forward_is_the_world_model_function_in_float64(multitask):
    """The update's split-first-layer forward (losses.td_targets / model_losses / policy_values)
    computes what WorldModel.encode/next/reward/pi/Q compute, with the same random draws, in
    float64, so that a last-bit difference of summation order cannot hide a real one: the
    latents agree to 1e-9 relative; what the update rounds to fp32 on purpose (losses, decoded
    Q values) to 1e-6. A wrong input column, bias or dropout mask differs by >= 1e-3."""
    from tdmpc_lib.train.losses import model_losses, policy_values, td_targets
    overrides = {} if multitask else {"task_dim": 0, "num_tasks": 0, "action_dims": (), "discounts": ()}
    model = randomized(make_world_model("tiny", seed=3, **overrides), 4).double()
    b = make_batch(model.cfg if multitask else SimpleNamespace(num_tasks=1, action_dims=(model.cfg.action_dim,),
                                                               action_dim=model.cfg.action_dim,
                                                               obs_dim=model.cfg.obs_dim), 24, 3, seed=9)
    obs, action, reward = b.obs.double(), b.action.double(), b.reward.double()
    task = b.task if multitask else torch.zeros_like(b.task)

    def both(fn_fast, fn_ref, seed=0):
        torch.manual_seed(seed)
        fast = fn_fast()
        torch.manual_seed(seed)
        return fast, fn_ref()

    model.eval()
    with torch.no_grad():
        next_z = model.encode(obs[1:], task)
        y_fast, y_ref = both(lambda: td_targets(model, next_z, reward, task),
                             lambda: reward + model.discount(task, "cpu") * model.Q(
                                 next_z, model.pi(next_z, task)[0], task, "min", target=True))
    assert torch.allclose(y_fast, y_ref, rtol=1e-6, atol=1e-9)  # decode rounds to fp32

    model.train()  # Q dropout on: the same mask must reach the same member
    params = [p for p in model.parameters() if p.requires_grad]
    (t_fast, zs_fast, _), (t_ref, zs_ref) = both(
        lambda: model_losses(model, obs, action, reward, task, next_z, y_ref, 0.5),
        lambda: _reference_model_losses(model, obs, action, reward, task, next_z, y_ref, 0.5))
    assert torch.allclose(zs_fast, zs_ref, rtol=1e-9, atol=1e-12)
    for k in t_ref:
        assert torch.allclose(t_fast[k], t_ref[k], rtol=1e-6), k
    g_fast = torch.autograd.grad(sum(t_fast.values()), params, allow_unused=True)
    g_ref = torch.autograd.grad(sum(t_ref.values()), params, allow_unused=True)
    for p, gf, gr in zip(params, g_fast, g_ref):
        assert (gf is None) == (gr is None)
        if gr is not None:
            assert torch.allclose(gf, gr, rtol=1e-5, atol=1e-9)

    zs = zs_ref.detach()
    pi_params = list(model._pi.parameters())
    if multitask:
        model._task_emb.weight.requires_grad_(False)  # as the update does
    def reference_policy_values():
        a, info = model.pi(zs, task)
        return model.Q(zs, a, task, "avg", detach=True), info

    for seed in range(6):  # both member orders of the random pair (dropout masks follow the member)
        (q_fast, info_fast), (q_ref, info_ref) = both(lambda: policy_values(model, zs, task),
                                                      reference_policy_values, seed)
        assert torch.allclose(q_fast, q_ref, rtol=1e-6, atol=1e-9)
        for k in info_ref:
            assert torch.allclose(info_fast[k], info_ref[k], rtol=1e-9, atol=1e-12), k
        g_fast = torch.autograd.grad(q_fast.sum(), pi_params)
        g_ref = torch.autograd.grad(q_ref.sum(), pi_params)
        for gf, gr in zip(g_fast, g_ref):
            assert torch.allclose(gf, gr, rtol=1e-5, atol=1e-9)
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated behind our back


# ------------------------------------------------------------------------------ opt-in compiled kernels
@pytest.mark.parametrize("affine", [(64,), (2, 1, 64)])
def test_fused_layer_norm_mish_equals_the_eager_layers_and_their_gradient(affine):
    """What TrainConfig.compile compiles (evaluated eagerly here: compiling takes seconds)
    equals the eager LayerNorm + Mish to float rounding, values and gradients, on inputs whose
    normalised values reach Mish's whole range (-100 .. 100)."""
    from tdmpc_lib.train.losses import _fused_layer_norm_mish, layer_norm_mish
    g = torch.Generator().manual_seed(0)
    h = (torch.randn(2, 300, 64, generator=g) * torch.rand(2, 300, 1, generator=g) * 5).requires_grad_()
    w = (torch.randn(affine, generator=g) * 4).requires_grad_()
    b = (torch.randn(affine, generator=g) * 4).requires_grad_()
    ref = layer_norm_mish(h, w, b)
    got = _fused_layer_norm_mish(h, w, b)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)
    grads_ref = torch.autograd.grad(ref.pow(2).sum(), (h, w, b))
    grads_got = torch.autograd.grad(got.pow(2).sum(), (h, w, b))
    for gg, gr in zip(grads_got, grads_ref):
        # relative to the largest element: LayerNorm's backward subtracts means, so small
        # elements are differences of large ones and carry their rounding
        assert (gg - gr).abs().max() <= 1e-5 * gr.abs().max()
    x = torch.tensor([[-1e30, -100.0, 0.0, 100.0, 1e30]])
    assert torch.isfinite(_fused_layer_norm_mish(x, torch.ones(5), torch.zeros(5))).all()


def test_training_mish_equals_torch_mish_and_its_gradient():
    """fused_cpu.mish (the eager training forward's Mish on the CPU): F.mish's values and
    gradient to float rounding over the whole range, inside no_grad too; other dtypes and
    layouts go to F.mish itself."""
    from tdmpc_lib import fused_cpu
    if not fused_cpu.available():
        pytest.skip(f"fused kernel: {fused_cpu.unavailable_reason()}")
    g = torch.Generator().manual_seed(3)
    x = torch.cat([torch.randn(3, 1000, generator=g).view(-1) * 8,
                   torch.tensor([-1e30, -100.0, -20.0, -1e-8, 0.0, 1e-8, 19.99, 20.01, 100.0, 1e30])])
    x = x[:3008].view(8, 376).requires_grad_()  # whole vectors and a remainder per call
    grad_out = torch.randn(x.shape, generator=g)
    got, ref = fused_cpu.mish(x), F.mish(x)
    assert got.grad_fn is not None and type(got.grad_fn).__name__ == "_MishBackward"
    assert torch.allclose(got, ref, rtol=2e-6, atol=1e-7)
    (dg,), (dr,) = torch.autograd.grad(got, x, grad_out), torch.autograd.grad(ref, x, grad_out)
    assert torch.allclose(dg, dr, rtol=2e-6, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(fused_cpu.mish(x), ref, rtol=2e-6, atol=1e-7)
    for other in (x.double(), x.t()):  # float64, non-contiguous: torch's own Mish
        assert torch.equal(fused_cpu.mish(other), F.mish(other))


def test_compile_falls_back_to_the_eager_layers_when_the_compiler_fails(monkeypatch):
    from tdmpc_lib.train import update
    from tdmpc_lib.train.losses import layer_norm_mish

    def broken():
        raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(update, "compiled_layer_norm_mish", broken)
    with pytest.warns(UserWarning, match="runs eagerly"):
        learner = Learner(make_world_model("tiny", seed=1), TrainConfig(data="x", compile=True))
    assert learner.norm_mish is layer_norm_mish and learner.compile_s == 0.0
