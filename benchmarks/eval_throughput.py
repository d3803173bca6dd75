"""Planning throughput of the batched MPPI planner (1M MT30 model).

Environment-steps planned per second at 1, 8, 32 and 64 environments in one batch, for
fp32 and bf16, for the planner as it is (on the CPU: FastHeads, fused LayerNorm+Mish kernels)
and as it was ("before": autocast + TaskBoundModel, BatchedPlanner(fast=False)), with its
environment groups planned in parallel threads on the CPU ("threaded": PlannerConfig.threads
= the torch thread count, one torch thread each), against a
reference-style planner (task embedding concatenated, all Q members, F.mish, one environment
per call, fp32) timed in the same run, and the implied wall time of a full MT30 evaluation
(30 tasks x 10 episodes x 500 steps, all pairs in lockstep at the best batch size).
Every configuration is timed once per round, rounds interleaved; the table shows medians over
rounds and the ratios are medians of per-round ratios (shared machines slow down in bursts).
Every comparison is with a path timed in the same run on the same machine: the reference-style
planner plans one environment per call as the official tdmpc2/tdmpc2.py (TDMPC2.act) does.

    python benchmarks/eval_throughput.py [--checkpoint PATH] [--device cpu|cuda] [--envs 1,8,32,64]
        [--rounds 3] [--threads N] [--plan-threads N] [--quick]

--quick: 1 and 8 environments, 1 s per configuration, 3 rounds, no one-forward comparison.
Last output line: one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import statistics

from tdmpc_lib import fused_cpu, load_checkpoint, make_world_model  # noqa: E402
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
    planner = BatchedPlanner(model, PlannerConfig(envs_per_group=1), eval_mode=True, precision="fp32", fast=False)
    planner.heads_factory = ReferenceStyleHeads
    return planner


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
    p.add_argument("--rounds", type=int, default=3, help="time every configuration this many times, interleaved")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--plan-threads", type=int, help="PlannerConfig.threads of the 'threaded' path (default: the "
                   "torch thread count on the CPU; 1 skips the path)")
    p.add_argument("--no-before", action="store_true", help="skip timing the previous planner (fast=False)")
    p.add_argument("--no-group-comparison", action="store_true",
                   help="skip timing the largest batch as one forward (no environment groups)")
    p.add_argument("--quick", action="store_true", help="--envs 1,8 --min-seconds 1 --no-group-comparison")
    args = p.parse_args()
    if args.quick:
        args.envs, args.min_seconds, args.no_group_comparison = "1,8", 1.0, True
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = (load_checkpoint(args.checkpoint, device=args.device) if args.checkpoint
             else make_world_model(1, device=args.device).eval())
    env_counts = [int(e) for e in args.envs.split(",")]
    precisions = args.precisions.split(",")
    plan_threads = args.plan_threads or (torch.get_num_threads() if args.device == "cpu" else 1)
    # (precision, envs, path) -> a planner factory; each round times a fresh planner
    configs = {}
    for prec in precisions:
        for envs in env_counts:
            configs[(prec, envs, "grouped")] = lambda prec=prec: BatchedPlanner(model, eval_mode=True, precision=prec)
            if not args.no_before:
                configs[(prec, envs, "before")] = lambda prec=prec: BatchedPlanner(
                    model, eval_mode=True, precision=prec, fast=False)
            if plan_threads > 1 and envs > 1:  # groups planned in parallel threads (PlannerConfig.threads)
                configs[(prec, envs, "threaded")] = lambda prec=prec: BatchedPlanner(
                    model, PlannerConfig(threads=plan_threads), eval_mode=True, precision=prec)
    if not args.no_group_comparison:  # the largest batch in one forward: what grouping buys
        configs.update({(prec, env_counts[-1], "one forward"): (lambda prec=prec: BatchedPlanner(
            model, PlannerConfig(envs_per_group=env_counts[-1]), eval_mode=True, precision=prec))
            for prec in precisions})
    configs[("fp32", 1, "reference-style")] = lambda: reference_style_planner(model)
    fast = BatchedPlanner(model).uses_fast_path(torch.device(args.device))
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.rounds} rounds (medians), "
          f"fast path {'on' if fast else 'off'}, fused CPU kernels "
          f"{'on' if fused_cpu.available() else 'off (' + fused_cpu.unavailable_reason() + ')'}", flush=True)
    rates: dict = {key: [] for key in configs}
    for round_ in range(args.rounds):
        for key, make_planner in configs.items():
            rates[key].append(time_planner(make_planner(), key[1], args.device, args.min_seconds))
        print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    med = {key: statistics.median(r) for key, r in rates.items()}
    ref_key = ("fp32", 1, "reference-style")

    def ratio(key, base=ref_key):  # median of per-round ratios (both timed in the same round)
        return statistics.median(a / b for a, b in zip(rates[key], rates[base]))

    print(f"{'precision':<10}{'envs':>6}{'path':>17}{'env-steps/s':>14}{'ms/call':>10}{'x ref-style':>13}"
          f"{'x before':>10}")
    for (prec, envs, path), r in med.items():
        before = (prec, envs, "before")
        vs_before = f"{ratio((prec, envs, path), before):>10.2f}" if path == "grouped" and before in rates else ""
        print(f"{prec:<10}{envs:>6}{path:>17}{r:>14.1f}{1000 * envs / r:>10.0f}{ratio((prec, envs, path)):>13.2f}"
              f"{vs_before}")

    def table(path):
        return {prec: {str(envs): round(med[(prec, envs, path)], 2) for envs in env_counts}
                for prec in precisions if (prec, env_counts[0], path) in med}

    after, before = table("grouped"), table("before")
    threaded = {prec: {str(envs): round(med[(prec, envs, "threaded")], 2) for envs in env_counts
                       if (prec, envs, "threaded") in med} for prec in precisions}
    for prec in precisions:
        for envs in env_counts:
            if (prec, envs, "threaded") in med:
                print(f"{prec} at {envs} envs: {plan_threads} planning threads are "
                      f"{ratio((prec, envs, 'threaded'), (prec, envs, 'grouped')):.2f}x one thread of groups")
    ungrouped = {prec: round(med[(prec, env_counts[-1], "one forward")], 2)
                 for prec in precisions if (prec, env_counts[-1], "one forward") in med}
    for prec, r in ungrouped.items():
        print(f"{prec} at {env_counts[-1]} envs: cache-sized groups are {after[prec][str(env_counts[-1])] / r:.2f}x "
              "one forward over all")
    ref_style = med[ref_key]
    best_key = max((k for k in med if k[2] in ("grouped", "threaded")), key=lambda k: med[k])
    best = med[best_key]
    speedup = {path: {prec: {str(envs): round(ratio((prec, envs, path)), 2) for envs in env_counts}
                      for prec in precisions if (prec, env_counts[0], path) in med}
               for path in ("grouped", "before")}
    speedup["threaded"] = {prec: {envs: round(ratio((prec, int(envs), "threaded")), 2) for envs in by_envs}
                           for prec, by_envs in threaded.items() if by_envs}
    print(f"best ({best_key[0]}, {best_key[1]} envs) / reference-style (task concat, all Q members, F.mish, "
          f"one env, fp32) on this machine: {ratio(best_key):.2f}x" + (
              f" (before: {max(ratio(k) for k in rates if k[2] == 'before'):.2f}x)" if before else ""))
    minutes = FULL_MT30_ENV_STEPS / best / 60
    print(f"best: {best:.1f} env-steps/s; full MT30 evaluation (150,000 env-steps) about {minutes:.0f} min "
          f"(reference-style, one env per call: about {FULL_MT30_ENV_STEPS / ref_style / 3600:.1f} h)")
    print(json.dumps({"plan_steps_per_s": after, "plan_steps_per_s_before": before,
                      "plan_steps_per_s_threaded": threaded, "plan_threads": plan_threads,
                      "threaded_over_grouped": {prec: {envs: round(ratio((prec, int(envs), "threaded"),
                                                                         (prec, int(envs), "grouped")), 2)
                                                       for envs in by_envs} for prec, by_envs in threaded.items()},
                      "after_over_before": {prec: {str(envs): round(ratio((prec, envs, "grouped"), (prec, envs, "before")), 2)
                                                   for envs in env_counts} for prec in before},
                      "reference_style_steps_per_s": round(ref_style, 2),
                      "speedup_vs_reference_style": round(ratio(best_key), 2),
                      "speedup_vs_reference_style_by_config": speedup,
                      f"plan_steps_per_s_one_forward_at_{env_counts[-1]}": ungrouped,
                      "full_mt30_eval_minutes_est": round(minutes, 1),
                      "fast_path": fast, "fused_cpu_kernels": fused_cpu.available(), "device": args.device,
                      "threads": torch.get_num_threads(), "rounds": args.rounds}))


if __name__ == "__main__":
    main()
