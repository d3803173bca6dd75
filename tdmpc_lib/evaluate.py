"""Lockstep evaluation of a world model on MT30 tasks (reference sections 9, 10, 18).

Every (task, episode) pair gets its own environment, built so that its initial state is the
one the official sequential evaluation would see (`make_env(task, seed, episode=k)`); all
pairs step together and the planner runs once per agent step for all of them.

Protocols:
- `clean`: eval mode, no exploration noise on executed actions, no Q dropout at inference.
- `paper`: what produced the published numbers: exploration noise std[0] * N(0, I) on executed
  actions (evaluate.py never passed eval_mode) and Q dropout kept on in planning (old Q code).

CLI: python -m tdmpc_lib.evaluate --checkpoint PATH --tasks mt30 --episodes 10 --output r.json
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import random
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .device import resolve_device
from .files import atomic_write_json, check_output_path
from .planner import BatchedPlanner, PlannerConfig
from .tasks import DMC_EPISODE_LENGTH, get_task_set
from .world_model import WorldModel

PROTOCOLS = ("clean", "paper")
POLICIES = ("plan", "prior")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class EvalConfig:
    """What to evaluate and how. `max_batch_envs` bounds how many environments plan in one
    batch (0 = all pairs at once); memory grows with it (num_samples rows per env)."""
    tasks: str = "mt30"
    episodes: int = 10
    seed: int = 1
    protocol: str = "clean"
    policy: str = "plan"
    device: str = "cpu"
    precision: str = "fp32"
    max_batch_envs: int = 0
    planner: PlannerConfig = field(default_factory=PlannerConfig)

    def validate(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {self.episodes}")
        if self.max_batch_envs < 0:
            raise ValueError(f"max_batch_envs must be >= 0 (0 = all environments in one batch), got {self.max_batch_envs}")
        resolve_device(self.device)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _task_ids(model: WorldModel, tasks: list[str]) -> list[int]:
    if not model.cfg.multitask:
        if len(tasks) != 1:
            raise ValueError(f"a single-task model can be evaluated on one task only, got {len(tasks)}")
        return [0]
    task_set = get_task_set(model.cfg.task_set)
    return [task_set.index(t) for t in tasks]


def normalized_score(task_means: dict[str, float]) -> float:
    """Mean over tasks of the task score: return / 10 for DMControl, success * 100 for mw-*."""
    scores = [m * 100 if t.startswith("mw-") else m / 10 for t, m in task_means.items()]
    return float(np.mean(scores))


def evaluate(model: WorldModel, cfg: EvalConfig, progress: bool = True) -> dict:
    """Run the evaluation; returns the result dict that the CLI writes as JSON."""
    from .envs import make_env  # dm_control is imported only when environments are needed

    cfg.validate()
    device = resolve_device(cfg.device)
    task_set_name = model.cfg.task_set or "mt30"
    tasks = get_task_set(task_set_name).resolve(cfg.tasks)
    ids = dict(zip(tasks, _task_ids(model, tasks)))
    model = model.to(device).eval()
    model.set_q_dropout_at_inference(cfg.protocol == "paper")
    set_seed(cfg.seed)
    planner_cfg = dataclasses.replace(cfg.planner, mpc=cfg.policy == "plan")
    pairs = [(t, k) for t in tasks for k in range(cfg.episodes)]
    chunk = cfg.max_batch_envs or len(pairs)
    returns: dict[str, list[float]] = {t: [0.0] * cfg.episodes for t in tasks}
    start, plan_time, agent_steps, plan_calls = time.perf_counter(), 0.0, 0, 0
    # Counts agent steps (episodes end together in lockstep, so an episode bar would sit at 0).
    bar = tqdm(total=len(pairs) * DMC_EPISODE_LENGTH, desc="env-steps", unit="step",
               disable=not progress, file=sys.stderr, smoothing=0.05, mininterval=1.0)
    episodes_done = 0
    for lo in range(0, len(pairs), chunk):
        batch = pairs[lo:lo + chunk]
        envs = [make_env(t, cfg.seed, episode=k) for t, k in batch]
        planner = BatchedPlanner(model, planner_cfg, eval_mode=cfg.protocol == "clean", precision=cfg.precision)
        task_ids = torch.tensor([ids[t] for t, _ in batch], device=device)
        obs = np.zeros((len(batch), model.cfg.obs_dim), dtype=np.float32)
        for i, env in enumerate(envs):
            o = env.reset()
            obs[i, :o.shape[0]] = o
        done = np.zeros(len(batch), dtype=bool)
        t = 0
        while not done.all():
            tic = time.perf_counter()
            actions = planner.act(torch.from_numpy(obs), task_ids,
                                  torch.full((len(batch),), t == 0, device=device)).cpu().numpy()
            plan_time += time.perf_counter() - tic
            plan_calls += 1
            bar.update(int((~done).sum()))
            for i, env in enumerate(envs):
                if done[i]:
                    continue
                o, r, d, _ = env.step(actions[i, :env.action_dim])
                obs[i] = 0.0
                obs[i, :o.shape[0]] = o
                returns[batch[i][0]][batch[i][1]] += r
                agent_steps += 1
                if d:
                    done[i] = True
                    episodes_done += 1
            bar.set_postfix(episodes=f"{episodes_done}/{len(pairs)}", refresh=False)
            t += 1
    bar.close()
    wall = time.perf_counter() - start
    per_task = {t: {"returns": [round(r, 4) for r in returns[t]], "mean": float(np.mean(returns[t])),
                    "score": float(np.mean(returns[t])) / 10} for t in tasks}
    info = getattr(model, "checkpoint_info", {}) or {}
    return {
        "normalized_score": normalized_score({t: v["mean"] for t, v in per_task.items()}),
        "tasks": per_task,
        "protocol": cfg.protocol, "policy": cfg.policy, "seed": cfg.seed, "episodes": cfg.episodes,
        "checkpoint": {k: info.get(k) for k in ("path", "sha256", "layout", "stored_dtypes", "warnings")},
        "precision": cfg.precision, "device": str(device),
        "timing": {"wall_s": wall, "plan_s": plan_time, "agent_steps": agent_steps,
                   "env_steps_planned_per_s": agent_steps / max(plan_time, 1e-9), "plan_calls": plan_calls},
        "eval_config": dataclasses.asdict(cfg), "model_config": model.cfg.to_dict(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }


def format_table(result: dict) -> str:
    lines = [f"{'task':<26}{'episodes':>9}{'mean return':>13}{'score':>8}  returns"]
    for task, v in result["tasks"].items():
        rets = ", ".join(f"{r:.1f}" for r in v["returns"])
        lines.append(f"{task:<26}{len(v['returns']):>9}{v['mean']:>13.1f}{v['score']:>8.2f}  {rets}")
    t = result["timing"]
    lines.append(f"normalized score: {result['normalized_score']:.2f}  (protocol {result['protocol']}, policy "
                 f"{result['policy']}, seed {result['seed']}, {result['precision']} on {result['device']}; "
                 f"{t['wall_s']:.0f} s, {t['env_steps_planned_per_s']:.1f} env-steps planned/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from .checkpoint import CheckpointError, load_checkpoint

    p = argparse.ArgumentParser(prog="python -m tdmpc_lib.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint path or hub name (e.g. mt30-1M)")
    p.add_argument("--tasks", default="mt30", help="'mt30' or comma-separated task names")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--protocol", choices=PROTOCOLS, default="clean")
    p.add_argument("--policy", choices=POLICIES, default="plan", help="plan (MPPI) or prior (policy only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast precision for planning")
    p.add_argument("--max-batch-envs", type=int, default=0, help="environments per planning batch (0 = all)")
    p.add_argument("--output", help="write the results JSON here")
    args = p.parse_args(argv)
    cfg = EvalConfig(tasks=args.tasks, episodes=args.episodes, seed=args.seed, protocol=args.protocol,
                     policy=args.policy, device=args.device, precision=args.precision,
                     max_batch_envs=args.max_batch_envs)
    try:
        cfg.validate()
        get_task_set("mt30").resolve(cfg.tasks)  # unknown or repeated tasks fail before the model loads
        if args.output:
            check_output_path(args.output)  # before hours of evaluation, not after
        model = load_checkpoint(args.checkpoint, device=args.device)
        result = evaluate(model, cfg)
    except (CheckpointError, ValueError) as e:
        p.exit(2, f"error: {e}\n")
    print(format_table(result))
    if args.output:
        atomic_write_json(args.output, result, indent=2)
        print(f"results written to {args.output}")
    return result


if __name__ == "__main__":
    main()
