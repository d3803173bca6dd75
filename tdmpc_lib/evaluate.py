"""Lockstep evaluation of a world model on MT30 tasks (official tdmpc2/evaluate.py; TD-MPC2 paper, Sec. 4).

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

import dataclasses
import functools
import json
import os
import platform
import random
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from tqdm.auto import tqdm

from .choices import EvalPolicy, Precision, Protocol, check_choice, options
from .device import resolve_device
from .files import OutputLock, atomic_write_json, atomic_write_text, check_output_path, write_error
from .planner import BatchedPlanner, PlannerConfig
from .rollout import Step, lockstep, open_envs, reset_all
from .tasks import DMC_EPISODE_LENGTH, get_task_set
from .typed import check_argument
from .world_model import WorldModel

# The choices as tuples (derived from the Literal types of tdmpc_lib.choices)
PROTOCOLS, POLICIES, PRECISIONS = options(Protocol), options(EvalPolicy), options(Precision)


@dataclass
class EvalConfig:
    """What to evaluate and how. `max_batch_envs` bounds how many environments plan in one
    batch (0 = all pairs at once); memory grows with it (num_samples rows per env).
    `env_workers` = N > 0 steps the environments in N worker processes (tdmpc_lib.rollout.
    EnvWorkers) instead of one after the other here; the returns are bit-identical. Worth it
    when the planner runs on an accelerator and hundreds of environments step each agent step
    (MT30 x 10); on a small CPU the workers compete with the planner for the cores."""
    tasks: str = "mt30"  # 'mt30' or comma-separated MT30 task names
    episodes: int = 10  # episodes per task
    seed: int = 1  # seed of the first planning batch (batch b: seed + b) and of the environments
    protocol: Protocol = "clean"  # clean (eval mode) or paper (the published numbers' protocol)
    policy: EvalPolicy = "plan"  # plan (MPPI) or prior (policy only)
    device: str = "cpu"  # cpu, cuda or cuda:N
    precision: Precision = "fp32"  # autocast precision for planning (fp16: CUDA only)
    max_batch_envs: int = 0  # environments per planning batch (0 = all)
    env_workers: int = 0  # step the environments in N worker processes (0 = in this process; same returns)
    planner: PlannerConfig = field(default_factory=PlannerConfig)  # MPPI settings

    def validate(self) -> None:
        """Every rule the settings must meet, before any model loads or environment starts:
        choices, ranges, MT30 task names given once, the planner, the device name."""
        hints = typing.get_type_hints(EvalConfig)
        for name in ("protocol", "policy", "precision"):
            check_choice(name, getattr(self, name), hints[name])
        for name in [f.name for f in dataclasses.fields(self) if hints[f.name] is int]:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be a whole number, got {value!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {self.episodes}")
        if self.max_batch_envs < 0:
            raise ValueError(f"max_batch_envs must be >= 0 (0 = all environments in one batch), got {self.max_batch_envs}")
        if self.env_workers < 0:
            raise ValueError(f"env_workers must be >= 0 (0 = step the environments in this process), got {self.env_workers}")
        get_task_set("mt30").resolve(self.tasks)  # unknown or repeated tasks (environments exist for MT30)
        self.planner.validate("planner")
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


EPISODE_SEGMENTS = 10  # an episode's return is also reported per tenth of its agent steps


def _read_journal(path: Path, header: dict) -> dict[int, dict]:
    """The finished batches recorded in a journal of this same evaluation ({batch index: record})."""
    lines = path.read_text().splitlines()
    try:
        first = json.loads(lines[0]) if lines else None
    except json.JSONDecodeError:
        first = None
    if first != header:
        raise ValueError(f"{path} records another evaluation (different settings or checkpoint); delete it or "
                         f"choose another --output")
    done = {}
    for n, line in enumerate(lines[1:], start=2):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill: that batch is simply redone
            break
        if not (isinstance(rec, dict) and isinstance(rec.get("batch"), int) and isinstance(rec.get("returns"), list)):
            raise ValueError(f"{path} line {n} is not a finished batch of an evaluation; delete the file to start "
                             f"the evaluation again")
        done[rec["batch"]] = rec
    return done


def evaluate(model: WorldModel, cfg: EvalConfig, progress: bool = True, journal: str | Path | None = None) -> dict:
    """Run the evaluation; returns the result dict that the CLI writes as JSON: per task every
    episode's return and its return over each tenth of the episode ('segment_returns').

    Environments plan in batches of `max_batch_envs` (0: one batch); batch b starts from seed
    cfg.seed + b. With a `journal` file every finished batch is appended to it, and a journal of
    the same evaluation left by a killed run is continued: finished batches are not run again
    and the result equals that of an uninterrupted run (timings aside)."""
    from .envs import make_env  # dm_control is imported only when environments are needed

    check_argument("evaluate", "model", model, WorldModel, "a WorldModel (load_checkpoint(path))")
    check_argument("evaluate", "cfg", cfg, EvalConfig, "an EvalConfig")
    cfg.validate()
    device = resolve_device(cfg.device)
    task_set_name = model.cfg.task_set or "mt30"
    tasks = get_task_set(task_set_name).resolve(cfg.tasks)
    ids = dict(zip(tasks, _task_ids(model, tasks)))
    model = model.to(device).eval()
    model.set_q_dropout_at_inference(cfg.protocol == "paper")
    planner_cfg = dataclasses.replace(cfg.planner, mpc=cfg.policy == "plan")
    pairs = [(t, k) for t in tasks for k in range(cfg.episodes)]
    chunk = cfg.max_batch_envs or len(pairs)
    returns: dict[str, list[float]] = {t: [0.0] * cfg.episodes for t in tasks}
    # the return over each tenth of every episode: where along it a policy loses the reward
    segments = {t: [[0.0] * EPISODE_SEGMENTS for _ in range(cfg.episodes)] for t in tasks}
    start, plan_time, agent_steps, plan_calls = time.perf_counter(), 0.0, 0, 0
    info = getattr(model, "checkpoint_info", {}) or {}
    finished: dict[int, dict] = {}
    if journal is not None:
        journal = Path(journal)
        settings = json.loads(json.dumps(dataclasses.asdict(cfg)))
        settings.pop("env_workers")  # results do not depend on it: a resumed run may use other workers
        header = {"journal": "tdmpc-distill-evaluation", "eval_config": settings,
                  "checkpoint_sha256": info.get("sha256"), "tasks": tasks}
        if journal.is_file() and journal.stat().st_size:
            finished = _read_journal(journal, header)
        else:
            atomic_write_text(journal, json.dumps(header) + "\n")
    # Counts agent steps (episodes end together in lockstep, so an episode bar would sit at 0).
    bar = tqdm(total=len(pairs) * DMC_EPISODE_LENGTH, desc="env-steps", unit="step",
               disable=not progress, file=sys.stderr, smoothing=0.05, mininterval=1.0)
    episodes_done = 0
    for b, lo in enumerate(range(0, len(pairs), chunk)):
        batch = pairs[lo:lo + chunk]
        if b in finished:  # done by an earlier, interrupted run of this evaluation
            for task, k, ret in finished[b]["returns"]:
                returns[task][k] = ret
            for task, k, seg in finished[b].get("segments", []):
                segments[task][k] = seg
            bar.update(len(batch) * DMC_EPISODE_LENGTH)
            episodes_done += len(batch)
            continue
        set_seed(cfg.seed + b)
        planner = BatchedPlanner(model, planner_cfg, eval_mode=cfg.protocol == "clean", precision=cfg.precision)
        task_ids = torch.tensor([ids[t] for t, _ in batch], device=device)

        def act(obs: np.ndarray, t: int) -> np.ndarray:
            nonlocal plan_time, plan_calls
            tic = time.perf_counter()
            actions = planner.act(torch.from_numpy(obs), task_ids,
                                  torch.full((len(obs),), t == 0, device=device)).cpu().numpy()
            plan_time += time.perf_counter() - tic
            plan_calls += 1
            return actions

        def on_step(step: Step) -> None:
            nonlocal agent_steps, episodes_done
            agent_steps += int(step.active.sum())
            part = min(step.t * EPISODE_SEGMENTS // DMC_EPISODE_LENGTH, EPISODE_SEGMENTS - 1)
            for (task, k), r in zip(batch, step.rewards):
                segments[task][k][part] += float(r)
            episodes_done += int((step.done & step.active).sum())
            bar.update(int(step.active.sum()))
            bar.set_postfix(episodes=f"{episodes_done}/{len(pairs)}", refresh=False)

        # Built in this process or in workers (picklable constructors, the same seeds either way).
        with open_envs([functools.partial(make_env, t, cfg.seed, episode=k) for t, k in batch],
                       cfg.env_workers) as envs:
            batch_returns = lockstep(envs, act, reset_all(envs, model.cfg.obs_dim), on_step=on_step)
        for (task, k), ret in zip(batch, batch_returns):
            returns[task][k] = float(ret)
        if journal is not None:
            try:
                with open(journal, "a") as f:  # one line per finished batch; a torn last line is redone
                    f.write(json.dumps({"batch": b, "returns": [[t_, k, returns[t_][k]] for t_, k in batch],
                                        "segments": [[t_, k, segments[t_][k]] for t_, k in batch]}) + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                raise write_error(e, journal) from None
    bar.close()
    wall = time.perf_counter() - start
    per_task = {t: {"returns": [round(r, 4) for r in returns[t]], "mean": float(np.mean(returns[t])),
                    "score": float(np.mean(returns[t])) / 10,
                    "segment_returns": [[round(r, 4) for r in ep] for ep in segments[t]]} for t in tasks}
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


@dataclass
class EvaluateCommand:
    """Evaluate a checkpoint on MT30 tasks (lockstep environments, batched MPPI planning).

    Finished planning batches are journaled beside --output, so --resume continues a killed
    evaluation to the same JSON."""
    checkpoint: str  # checkpoint path, bundled or hub name (e.g. mt30-1M)
    config: Annotated[EvalConfig, tyro.conf.arg(name="")] = field(default_factory=EvalConfig)
    output: str | None = None  # write the results JSON here (finished batches are journaled beside it)
    resume: bool = False  # continue the killed evaluation journaled beside --output

    def validate(self) -> Path | None:
        """The settings and the output location, before the model loads; returns the journal."""
        self.config.validate()
        if not self.output:
            if self.resume:
                raise ValueError("--resume needs --output (the journal lies beside it)")
            return None
        check_output_path(self.output)  # before hours of evaluation, not after
        journal = Path(f"{self.output}.partial.jsonl")
        if journal.exists() and not self.resume:
            raise ValueError(f"{journal} holds an interrupted evaluation; pass --resume to continue it, or "
                             f"delete it to start again")
        return journal


def main(argv: list[str] | None = None) -> dict:
    from .cli import interruptible, parse

    args = parse(EvaluateCommand, argv, "python -m tdmpc_lib.evaluate")
    cfg = args.config
    lock = OutputLock(args.output, "evaluation output") if args.output else None
    hint = (f"the finished planning batches are journaled beside {args.output}: rerun the same command with "
            f"--resume to continue" if args.output else "nothing was written (no --output)")
    try:
        with interruptible(hint):
            return _main(args, cfg, lock)
    finally:
        if lock is not None:
            lock.release()


def _main(args: EvaluateCommand, cfg: EvalConfig, lock) -> dict:
    from .checkpoint import CheckpointError, load_checkpoint
    from .cli import fail

    try:
        if lock is not None:  # one evaluation per output (and journal) at a time
            check_output_path(args.output)
            lock.acquire()
        journal = args.validate()
        model = load_checkpoint(args.checkpoint, device=cfg.device)
        result = evaluate(model, cfg, journal=journal)
        print(format_table(result))
        if args.output:
            atomic_write_json(args.output, result, indent=2)
            journal.unlink(missing_ok=True)
            print(f"results written to {args.output}")
    except (CheckpointError, ValueError) as e:
        fail(str(e))
    return result


if __name__ == "__main__":
    main()
