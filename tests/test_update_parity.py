"""The training update's numbers are pinned: losses and parameters after a few updates equal a
recording made from the straightforward update (per-step latent rollout, one term at a time)
before it was optimised for speed (issue 12, item 2).

The recording (tests/fixtures/update_pin.json) holds, per scenario, every value the update
returns at every step and three checksums of every model/optimizer tensor afterwards (float64
sum, sum of squares, and the dot product with a fixed pseudo-random vector, which notices a
single changed element). Tolerance in fp32: 1e-5 relative (+ 1e-7 absolute for values near 0).
The optimised kernels sum in another order than the recording did, which moves the last bits
of a float32, and Adam's first steps (m / sqrt(v)) amplify that for near-zero gradients: the
SAME code run with 2 BLAS threads instead of 1 already differs from the recording by up to
4e-6 relative. Anything larger is a change of the computation. bf16 autocast rounds matmul
inputs to 8 mantissa bits: there 2 threads instead of 1 move Adam's second moments by 4%,
so the bf16 scenario only catches gross changes (10%).

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

from tdmpc_lib.train import DistillConfig, Distiller, Learner, Teacher, TrainConfig
from tdmpc_lib.world_model import make_world_model

PIN = Path(__file__).resolve().parent / "fixtures" / "update_pin.json"
RTOL = {"fp32": 1e-5, "bf16": 1e-1}
ATOL = {"fp32": 1e-7, "bf16": 1e-3}


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


def randomized(model, seed):
    """Random reward/Q output layers (they start at zero): non-trivial logits from step 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (model._reward[-1].weight, model._Qs.params[-1].weight):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
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
    teacher = Teacher(randomized(make_world_model("tiny", seed=7), 8), "cpu")
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
        model = randomized(make_world_model(size, seed=1), 2)
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


def close(got: float, want: float, precision: str) -> bool:
    return abs(got - want) <= ATOL[precision] + RTOL[precision] * abs(want)


def same_tensor(got: list[float], want: list[float], precision: str) -> bool:
    """Checksums of one tensor agree. Sum and probe dot are sums of n terms that may cancel, so
    their tolerance scales with sqrt(n) * ||x|| (Cauchy-Schwarz), the largest they could move
    when every element moves by the relative tolerance; the sum of squares is compared directly."""
    s, sq, dot, n = want
    scale = RTOL[precision] * (n * sq) ** 0.5 + ATOL[precision]
    return (got[3] == n and close(got[1], sq, precision) and abs(got[0] - s) <= scale
            and abs(got[2] - dot) <= scale)


@pytest.fixture(scope="module")
def pin():
    return json.loads(PIN.read_text())


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_update_equals_the_recorded_straightforward_update(pin, name):
    precision = SCENARIOS[name][3]
    got, want = run_scenario(name), pin[name]
    assert len(got["outputs"]) == len(want["outputs"])
    for step, (g, w) in enumerate(zip(got["outputs"], want["outputs"])):
        assert sorted(g) == sorted(w), f"update {step}: returned keys changed"
        bad = {k: (g[k], w[k]) for k in w if not close(g[k], w[k], precision)}
        assert not bad, f"{name}, update {step}: {bad}"
    assert sorted(got["state"]) == sorted(want["state"])
    bad = {k: (got["state"][k], v) for k, v in want["state"].items()
           if not same_tensor(got["state"][k], v, precision)}
    assert not bad, f"{name}: parameters/optimizer state differ: {dict(list(bad.items())[:5])}"


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_update_parity.py --record")
    PIN.parent.mkdir(exist_ok=True)
    PIN.write_text(json.dumps({name: run_scenario(name) for name in SCENARIOS}, indent=1) + "\n")
    print(f"wrote {PIN}")
