"""Planning throughput of the batched MPPI planner (1M MT30 model).

Environment-steps planned per second at 1, 8, 32 and 64 environments in one batch, for
fp32 and bf16 autocast, and the implied wall time of a full MT30 evaluation
(30 tasks x 10 episodes x 500 steps, all pairs in lockstep at the best batch size).
Reference point (tdmpc2-reference.md section 17): the reference code plans one environment
at a time at about 0.12 s per step on a 2-core CPU (8.3 env-steps/s; 5.5 h for MT30).

    python benchmarks/eval_throughput.py [--checkpoint PATH] [--device cpu|cuda] [--envs 1,8,32,64]

Last output line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tdmpc_lib import load_checkpoint, make_world_model  # noqa: E402
from tdmpc_lib.planner import BatchedPlanner  # noqa: E402

REFERENCE_S_PER_STEP = 0.12  # reference code, one env, 2 CPU threads (section 17)
FULL_MT30_ENV_STEPS = 30 * 10 * 500


def time_planner(model, envs: int, precision: str, device: str, min_seconds: float) -> float:
    """Env-steps planned per second for `envs` environments planning together."""
    planner = BatchedPlanner(model, eval_mode=True, precision=precision)
    obs = torch.randn(envs, model.cfg.obs_dim, device=device)
    task = torch.arange(envs, device=device) % model.cfg.num_tasks
    first = torch.ones(envs, dtype=torch.bool, device=device)
    planner.act(obs, task, first)  # warm-up (allocations, autocast caches)
    steps, start = 0, time.perf_counter()
    while True:
        planner.act(obs, task, ~first)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds and steps >= 2:
            return envs * steps / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="default: a randomly initialised 1M MT30 model")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--envs", default="1,8,32,64")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--min-seconds", type=float, default=3.0, help="time each configuration at least this long")
    args = p.parse_args()
    torch.manual_seed(0)
    model = (load_checkpoint(args.checkpoint, device=args.device) if args.checkpoint
             else make_world_model(1, device=args.device).eval())
    env_counts = [int(e) for e in args.envs.split(",")]
    rates: dict[str, dict[str, float]] = {}
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'precision':<10}{'envs':>6}{'env-steps/s':>14}{'ms/step':>10}{'x reference':>13}")
    for precision in args.precisions.split(","):
        rates[precision] = {}
        for envs in env_counts:
            r = time_planner(model, envs, precision, args.device, args.min_seconds)
            rates[precision][str(envs)] = round(r, 2)
            print(f"{precision:<10}{envs:>6}{r:>14.1f}{1000 * envs / r:>10.0f}{r * REFERENCE_S_PER_STEP:>13.1f}",
                  flush=True)
    best = max(r for per in rates.values() for r in per.values())
    minutes = FULL_MT30_ENV_STEPS / best / 60
    print(f"best: {best:.1f} env-steps/s = {best * REFERENCE_S_PER_STEP:.1f}x the reference's "
          f"{1 / REFERENCE_S_PER_STEP:.1f}; full MT30 evaluation (150,000 env-steps) about {minutes:.0f} min "
          f"(reference about {FULL_MT30_ENV_STEPS * REFERENCE_S_PER_STEP / 3600:.1f} h)")
    print(json.dumps({"plan_steps_per_s": rates, "full_mt30_eval_minutes_est": round(minutes, 1),
                      "speedup_vs_reference": round(best * REFERENCE_S_PER_STEP, 2), "device": args.device,
                      "reference_s_per_step": REFERENCE_S_PER_STEP}))


if __name__ == "__main__":
    main()
