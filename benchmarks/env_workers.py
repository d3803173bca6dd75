"""Do environment worker processes help? The evaluator's lockstep loop with the environments
stepped in this process (0 workers) or in N worker processes (tdmpc_lib.rollout.EnvWorkers),
for the policy prior (cheap: physics dominates) and MPPI (the planner dominates).

    python benchmarks/env_workers.py [--tasks mt30] [--episodes 2] [--policy prior,plan]
        [--workers 0,1,2] [--steps 100] [--device cpu] [--num-samples 512 --iterations 6]

Per (policy, workers): seconds to start the workers and build the environments (open_s),
seconds of the loop (loop_s) split into planning (act_s) and environment stepping incl. the
pipes (env_s = loop_s - act_s), and env-steps/s over the loop. The returns of every worker count
are checked to be identical to those of 0 workers. Last output line: one JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import time

import numpy as np
import torch

from tdmpc_lib import load_checkpoint
from tdmpc_lib.evaluate import set_seed
from tdmpc_lib.planner import BatchedPlanner, PlannerConfig
from tdmpc_lib.rollout import lockstep, open_envs, reset_all
from tdmpc_lib.tasks import get_task_set


def run(model, pairs: list[tuple[str, int]], policy: str, workers: int, steps: int, planner_cfg: PlannerConfig,
        device: torch.device) -> tuple[dict, np.ndarray]:
    from tdmpc_lib.envs import make_env

    set_seed(1)
    ids = torch.tensor([get_task_set("mt30").index(t) for t, _ in pairs], device=device)
    planner = BatchedPlanner(model, dataclasses.replace(planner_cfg, mpc=policy == "plan"), eval_mode=True)
    act_s = 0.0

    def act(obs: np.ndarray, t: int) -> np.ndarray:
        nonlocal act_s
        tic = time.perf_counter()
        out = planner.act(torch.from_numpy(obs).to(device), ids, torch.full((len(obs),), t == 0, device=device))
        out = out.cpu().numpy()
        act_s += time.perf_counter() - tic
        return out

    tic = time.perf_counter()
    with open_envs([functools.partial(make_env, t, 1, episode=k) for t, k in pairs], workers) as envs:
        open_s = time.perf_counter() - tic
        tic = time.perf_counter()
        returns = lockstep(envs, act, reset_all(envs, model.cfg.obs_dim), steps=steps)
        loop_s = time.perf_counter() - tic
    return {"policy": policy, "workers": workers, "envs": len(pairs), "steps": steps, "open_s": round(open_s, 2),
            "loop_s": round(loop_s, 2), "act_s": round(act_s, 2), "env_s": round(loop_s - act_s, 2),
            "env_steps_per_s": round(len(pairs) * steps / loop_s, 1)}, returns


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="tdmpc-opt-mt30-1M")
    p.add_argument("--tasks", default="mt30")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--policy", default="prior,plan")
    p.add_argument("--workers", default="0,1,2")
    p.add_argument("--steps", type=int, default=100, help="agent steps per episode timed (of 500)")
    p.add_argument("--plan-tasks", help="tasks for MPPI (default: --tasks); MPPI on a CPU is slow")
    p.add_argument("--num-samples", type=int, default=512)
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model = load_checkpoint(args.checkpoint, device=device).eval()
    planner_cfg = PlannerConfig(num_samples=args.num_samples, iterations=args.iterations)
    rows = []
    for policy in args.policy.split(","):
        tasks = get_task_set("mt30").resolve(args.plan_tasks if policy == "plan" and args.plan_tasks else args.tasks)
        pairs = [(t, k) for t in tasks for k in range(args.episodes)]
        reference = None
        for workers in (int(w) for w in args.workers.split(",")):
            row, returns = run(model, pairs, policy, workers, args.steps, planner_cfg, device)
            if reference is None:
                reference = returns
            row["identical_returns"] = bool(np.array_equal(returns, reference))
            print(row, flush=True)
            rows.append(row)
    out = {"device": str(device), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
           "python": platform.python_version(), "planner": dataclasses.asdict(planner_cfg), "rows": rows}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
