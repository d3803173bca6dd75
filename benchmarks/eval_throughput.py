"""Planning throughput of the batched MPPI planner (1M MT30 model).

Environment-steps planned per second at 1, 8, 32 and 64 environments in one batch, for
fp32 and bf16 autocast, and the implied wall time of a full MT30 evaluation
(30 tasks x 10 episodes x 500 steps, all pairs in lockstep at the best batch size).
Reference point (tdmpc2-reference.md section 17): the reference code plans one environment
at a time at about 0.12 s per step on a 2-core CPU (8.3 env-steps/s; 5.5 h for MT30).

    python benchmarks/eval_throughput.py [--checkpoint PATH] [--device cpu|cuda] [--envs 1,8,32,64] [--rounds 2]

Last output line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from tdmpc_lib import load_checkpoint, make_world_model  # noqa: E402
from tdmpc_lib.planner import BatchedPlanner, PlannerConfig  # noqa: E402


class ReferenceStyleHeads:
    """How the reference code plans, built from this library's model: the task embedding
    concatenated onto every one of the samples at every call, all Q members evaluated and two
    picked, torch's Mish (the model's own forward); one environment per planning call, fp32.
    A same-machine baseline for the speedup (the reference code itself is not run here)."""

    def __init__(self, model, task):
        self.m, self.task = model, task

    def _task(self, z):
        return self.task[:, None].expand(z.shape[:2])

    def next(self, z, a):
        return self.m.next(z, a, self._task(z))

    def reward(self, z, a):
        return self.m.reward(z, a, self._task(z))

    def pi(self, z, task):
        return self.m.pi(z, task)

    def q_avg(self, z, a):
        q = self.m.decode(self.m.Q(z, a, self._task(z), return_type="all"))  # (N_q, E, S, 1)
        members = torch.randperm(q.shape[0], device=z.device)[:2]
        return q[members].mean(0)


def reference_style_planner(model) -> BatchedPlanner:
    """ReferenceStyleHeads planning one environment per call, fp32."""
    planner = BatchedPlanner(model, PlannerConfig(envs_per_group=1), eval_mode=True, precision="fp32")
    planner.heads_factory = ReferenceStyleHeads
    return planner


REFERENCE_S_PER_STEP = 0.12  # reference code, one env, 2 CPU threads (section 17)
FULL_MT30_ENV_STEPS = 30 * 10 * 500


def time_planner(planner: BatchedPlanner, envs: int, device: str, min_seconds: float) -> float:
    """Env-steps planned per second for `envs` environments planning together."""
    model = planner.model
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
    p.add_argument("--rounds", type=int, default=2,
                   help="time every configuration this many times, interleaved, and keep the best "
                        "(shared machines slow down in bursts)")
    p.add_argument("--no-group-comparison", action="store_true",
                   help="skip timing the largest batch as one forward (no environment groups)")
    args = p.parse_args()
    torch.manual_seed(0)
    model = (load_checkpoint(args.checkpoint, device=args.device) if args.checkpoint
             else make_world_model(1, device=args.device).eval())
    env_counts = [int(e) for e in args.envs.split(",")]
    precisions = args.precisions.split(",")
    # (precision, envs, path) -> a planner factory; each round times a fresh planner
    configs = {(prec, envs, "grouped"): (lambda prec=prec: BatchedPlanner(model, eval_mode=True, precision=prec))
               for prec in precisions for envs in env_counts}
    if not args.no_group_comparison:  # the largest batch in one forward: what grouping buys
        configs.update({(prec, env_counts[-1], "one forward"): (lambda prec=prec: BatchedPlanner(
            model, PlannerConfig(envs_per_group=env_counts[-1]), eval_mode=True, precision=prec))
            for prec in precisions})
    configs[("fp32", 1, "reference-style")] = lambda: reference_style_planner(model)
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, best of {args.rounds} rounds", flush=True)
    best_rate: dict = {}
    for round_ in range(args.rounds):
        for key, make_planner in configs.items():
            rate = time_planner(make_planner(), key[1], args.device, args.min_seconds)
            best_rate[key] = max(best_rate.get(key, 0.0), rate)
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)

    print(f"{'precision':<10}{'envs':>6}{'path':>17}{'env-steps/s':>14}{'ms/call':>10}{'x reference':>13}")
    for (prec, envs, path), r in best_rate.items():
        print(f"{prec:<10}{envs:>6}{path:>17}{r:>14.1f}{1000 * envs / r:>10.0f}{r * REFERENCE_S_PER_STEP:>13.1f}")
    rates = {prec: {str(envs): round(best_rate[(prec, envs, "grouped")], 2) for envs in env_counts}
             for prec in precisions}
    ungrouped = {prec: round(best_rate[(prec, env_counts[-1], "one forward")], 2)
                 for prec in precisions if (prec, env_counts[-1], "one forward") in best_rate}
    for prec, r in ungrouped.items():
        print(f"{prec} at {env_counts[-1]} envs: cache-sized groups are {rates[prec][str(env_counts[-1])] / r:.2f}x "
              "one forward over all")
    ref_style = best_rate[("fp32", 1, "reference-style")]
    best = max(r for per in rates.values() for r in per.values())
    print(f"best / reference-style (task concat, all Q members, F.mish, one env, fp32) on this machine: "
          f"{best / ref_style:.2f}x")
    minutes = FULL_MT30_ENV_STEPS / best / 60
    print(f"best: {best:.1f} env-steps/s = {best * REFERENCE_S_PER_STEP:.1f}x the reference's "
          f"{1 / REFERENCE_S_PER_STEP:.1f}; full MT30 evaluation (150,000 env-steps) about {minutes:.0f} min "
          f"(reference about {FULL_MT30_ENV_STEPS * REFERENCE_S_PER_STEP / 3600:.1f} h)")
    print(json.dumps({"plan_steps_per_s": rates, "full_mt30_eval_minutes_est": round(minutes, 1),
                      f"plan_steps_per_s_one_forward_at_{env_counts[-1]}": ungrouped,
                      "speedup_vs_reference": round(best * REFERENCE_S_PER_STEP, 2),
                      "reference_style_steps_per_s": round(ref_style, 2),
                      "speedup_vs_reference_style": round(best / ref_style, 2), "device": args.device,
                      "rounds": args.rounds, "reference_s_per_step": REFERENCE_S_PER_STEP}))


if __name__ == "__main__":
    main()
