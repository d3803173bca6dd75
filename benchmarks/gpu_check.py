"""GPU readiness of the paper's setting, in one run (scripts/gpu_check.sh calls it): prints a
table and, as its last line, one JSON object.

    python benchmarks/gpu_check.py [--device cuda] [--episodes 10] [--env-workers N] [--quick]

1. parity:   the bundled 1M MT30 checkpoint's heads (encoder, dynamics, reward, Q, policy mean)
             on the device against the same model on the CPU, on a fixed batch of 256 (max abs
             difference; fp32 on both, TF32 matmuls off).
2. mt30:     that checkpoint on all 30 MT30 tasks x `episodes` with TD-MPC2's full MPPI (clean
             protocol; bf16 autocast on CUDA), every (task, episode) planning in one batch:
             wall seconds, env-steps/s, normalized score. The 300 environments step in
             --env-workers processes (default on CUDA: one per CPU core but one, at most 16;
             on the CPU: 0, in-process), so their physics does not leave the GPU waiting.
3. update:   median ms of one training update at batch 256 of the 1M student, alone and with a
             317M-shaped teacher (random weights) distilling online.

--quick (what the tests run on a CPU): 2 tasks x 1 episode with a 16-sample planner, 3 timed
updates, no 317M teacher. Timings on a shared machine are noisy; the JSON records the device.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import torch


from tdmpc_lib import load_checkpoint, make_world_model  # noqa: E402
from tdmpc_lib.device import resolve_device  # noqa: E402
from tdmpc_lib.evaluate import EvalConfig, evaluate  # noqa: E402
from tdmpc_lib.planner import PlannerConfig  # noqa: E402
from tdmpc_lib.quantize import fixed_batch, output_errors  # noqa: E402

TEACHER = "tdmpc-opt-mt30-1M"


def parity(device: torch.device) -> dict:
    cpu = load_checkpoint(TEACHER)
    dev = load_checkpoint(TEACHER, device=device)
    errors = output_errors(cpu, dev, fixed_batch(cpu, 256, seed=0))
    return {head: e["max"] for head, e in errors.items()}


def default_env_workers(device: torch.device) -> int:
    """Workers for the environments: on a GPU one per core but the planner's, at most 16 (300
    environments in 16 slices); on the CPU none, as the workers would take the planner's cores."""
    return min(16, max(0, (os.cpu_count() or 1) - 1)) if device.type == "cuda" else 0


def mt30(device: torch.device, episodes: int, quick: bool, env_workers: int = 0) -> dict:
    model = load_checkpoint(TEACHER, device=device)
    cfg = EvalConfig(tasks="cartpole-balance,reacher-easy" if quick else "mt30", episodes=episodes, seed=1,
                     device=str(device), precision="bf16" if device.type == "cuda" else "fp32",
                     env_workers=env_workers,
                     planner=PlannerConfig(num_samples=16, num_elites=4, num_pi_trajs=4, iterations=1) if quick
                     else PlannerConfig())
    tic = time.perf_counter()
    result = evaluate(model, cfg, progress=not quick)
    return {"tasks": len(result["tasks"]), "episodes": episodes, "wall_s": round(time.perf_counter() - tic, 1),
            "env_steps_per_s": round(result["timing"]["env_steps_planned_per_s"], 1),
            "normalized_score": round(result["normalized_score"], 2), "planner": dataclasses.asdict(cfg.planner),
            "env_workers": env_workers, "plan_s": round(result["timing"]["plan_s"], 1)}


def update_ms(device: torch.device, teacher_size: int | None, steps: int, compile: bool = False) -> float:
    """Median ms of a 1M-student update at batch 256 on synthetic MT30-shaped batches
    (compile: TrainConfig.compile, the torch.compile'd fused LayerNorm + Mish; its build time is
    spent in the warm-up updates)."""
    import tempfile

    from tdmpc_lib.data.benchmark_support import make_synthetic_store
    from tdmpc_lib.data.sampler import SliceSampler
    from tdmpc_lib.train import DistillConfig, Distiller, Learner, Teacher, TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        store = make_synthetic_store(Path(tmp) / "s", rows=20_000, episode_length=501, progress=False)
        dcfg = DistillConfig(teacher="random" if teacher_size else None, d_coef=0.45)
        cfg = TrainConfig(data=str(Path(tmp) / "s"), batch_size=256, device=str(device), distill=dcfg, compile=compile)
        distiller = None
        if teacher_size is not None:
            teacher = Teacher(make_world_model(teacher_size, "mt30", seed=1), device, sha256="random", path="random")
            distiller = Distiller(dcfg, teacher, 128, None, seed=0, device=device)
        learner = Learner(make_world_model(1, "mt30", seed=0, device=device), cfg, distiller)
        sampler = SliceSampler(store, 256, cfg.horizon, device, seed=0)
        times = []
        for i in range(steps + 2):
            batch = sampler.sample()
            if device.type == "cuda":
                torch.cuda.synchronize()
            tic = time.perf_counter()
            learner.update(batch, i)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:  # two warm-up updates
                times.append(1e3 * (time.perf_counter() - tic))
        return round(statistics.median(times), 2)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--quick", action="store_true", help="a CPU-sized run of every check")
    p.add_argument("--env-workers", type=int, help="processes stepping the environments of the MT30 evaluation "
                   "(default: one per CPU core but one, at most 16, on CUDA; 0 on the CPU)")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    env_workers = default_env_workers(device) if args.env_workers is None else args.env_workers
    torch.backends.cuda.matmul.allow_tf32 = False  # parity in plain fp32
    out = {"device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
           "torch": torch.__version__, "quick": args.quick}
    out["parity_max_abs"] = parity(device)
    print("parity (max |device - cpu|): " + ", ".join(f"{k} {v:.2e}" for k, v in out["parity_max_abs"].items()))
    out["mt30"] = mt30(device, 1 if args.quick else args.episodes, args.quick, env_workers)
    m = out["mt30"]
    print(f"MT30 evaluation: {m['tasks']} tasks x {m['episodes']} episodes in {m['wall_s']} s "
          f"({m['env_steps_per_s']} env-steps/s planned, {m['plan_s']} s planning, {env_workers} env workers), "
          f"normalized score {m['normalized_score']}")
    steps = 3 if args.quick else 20
    out["update_ms"] = {"student_1M": update_ms(device, None, steps)}
    if not args.quick:
        out["update_ms"]["student_1M_compiled"] = update_ms(device, None, steps, compile=True)
        out["update_ms"]["student_1M_with_317M_teacher"] = update_ms(device, 317, steps)
    print("update ms (batch 256, median): " + ", ".join(f"{k} {v}" for k, v in out["update_ms"].items()))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
