"""Command line: train a TD-MPC2 student offline, optionally distilling a frozen teacher.

    python -m tdmpc_lib.train --data DIR --student-size 1 [--teacher CKPT] [--d-coef 0.45]
        [--latent none|linear|linear-frozen|pca] --batch-size 256 --steps N --device cpu|cuda
        --out RUN_DIR [--resume]

Examples:
    # the paper's short run (200K steps, d_coef 0.4), teacher rewards computed once and cached
    python -m tdmpc_lib.train --data data/mt30 --student-size 1 --teacher mt30-317M.pt --d-coef 0.4 \
        --teacher-cache auto --steps 200000 --device cuda --out runs/d040
    # build the cache alone (then launch a sweep over --d-coef / --seed with --teacher-cache auto)
    python -m tdmpc_lib.train --data data/mt30 --teacher mt30-317M.pt --teacher-cache auto --cache-only
Any other field: --set lr=1e-4 --set distill.latent_coef=0.5 (TrainConfig / DistillConfig names).
On a CPU shared with other jobs prefer --threads 1 (or OMP_WAIT_POLICY=PASSIVE): spinning
OpenMP threads on oversubscribed cores can make an update 5-10x slower.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .config import CACHE_PRECISIONS, EVAL_PROTOCOLS, LATENT_MODES, PRECISIONS, SCHEDULES, TEACHER_DTYPES
from .config import DistillConfig, TrainConfig


def _parse_value(text: str, current):
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if text.lower() in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tdmpc_lib.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    d, dd = TrainConfig(), DistillConfig()
    p.add_argument("--data", required=True, help="dataset folder (a store made by tdmpc_lib.data)")
    p.add_argument("--out", default=d.out, help="run folder (checkpoints, metrics, config)")
    p.add_argument("--student-size", default="1", help="student preset: 1, 5, 19, 48, 317 or tiny")
    p.add_argument("--init", help="start the student from this checkpoint instead of a fresh init")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device)
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision, help="bf16: autocast forward passes")
    p.add_argument("--compile", action="store_true", help="torch.compile the loss functions")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint; its saved config is used, "
                        "overridden only by options given here (e.g. a larger --steps)")
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", help="frozen teacher checkpoint (any size preset); omit for plain TD-MPC2")
    g.add_argument("--d-coef", type=float, default=dd.d_coef, help="reward-distillation coefficient")
    g.add_argument("--schedule", choices=SCHEDULES, default=dd.schedule)
    g.add_argument("--all-steps", action="store_true", help="distil every horizon step, not only t=0")
    g.add_argument("--latent", choices=LATENT_MODES, default=dd.latent, help="next-latent distillation ablation")
    g.add_argument("--latent-coef", type=float, default=dd.latent_coef)
    g.add_argument("--pca-samples", type=int, default=dd.pca_samples)
    g.add_argument("--teacher-device", help="teacher device (default: --device)")
    g.add_argument("--teacher-dtype", choices=TEACHER_DTYPES, default=dd.teacher_dtype)
    g.add_argument("--teacher-autocast", action="store_true", help="bf16 matmuls for an fp32 teacher")
    g.add_argument("--teacher-cache", help="'auto' (beside the data) or a .npy path: cached teacher rewards")
    g.add_argument("--cache-precision", choices=CACHE_PRECISIONS, default=dd.cache_precision)
    g.add_argument("--cache-only", action="store_true", help="build the teacher cache and exit")
    g = p.add_argument_group("evaluation, logging, checkpoints")
    g.add_argument("--eval-freq", type=int, default=d.eval_freq, help="evaluate every N updates (0: never)")
    g.add_argument("--eval-final", action="store_true", help="evaluate at the end of the run")
    g.add_argument("--eval-tasks", default=d.eval_tasks)
    g.add_argument("--eval-episodes", type=int, default=d.eval_episodes)
    g.add_argument("--eval-protocol", choices=EVAL_PROTOCOLS, default=d.eval_protocol)
    g.add_argument("--eval-policy", choices=("plan", "prior"), default=d.eval_policy,
                   help="plan (MPPI) or prior (policy only, fast)")
    g.add_argument("--checkpoint-freq", type=int, default=d.checkpoint_freq)
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints)
    g.add_argument("--log-freq", type=int, default=d.log_freq)
    g.add_argument("--no-progress", action="store_true")
    g.add_argument("--wandb-project", help="also log to Weights & Biases (optional)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any TrainConfig field, or distill.FIELD")
    return p


# argparse dest -> config field ('distill.' for DistillConfig) where the names differ
_FIELD_OF = {"teacher": "distill.teacher", "teacher_device": "distill.teacher_device",
             "teacher_dtype": "distill.teacher_dtype", "teacher_autocast": "distill.teacher_autocast",
             "d_coef": "distill.d_coef", "schedule": "distill.schedule", "all_steps": "distill.all_steps",
             "latent": "distill.latent", "latent_coef": "distill.latent_coef", "pca_samples": "distill.pca_samples",
             "teacher_cache": "distill.cache", "cache_precision": "distill.cache_precision",
             "no_progress": "progress"}


def explicit_options(argv: list[str] | None) -> set[str]:
    """The argparse dests the user actually passed (defaults suppressed)."""
    p = build_parser()
    for action in p._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(p.parse_args(argv)))


def resumed_config(args: argparse.Namespace, explicit: set[str]) -> TrainConfig | None:
    """With --resume on an existing run: its saved config, overridden only by the options given
    on this command line (so `--data D --out RUN --resume` is enough to continue a run)."""
    from pathlib import Path

    saved = Path(args.out) / "config.json"
    if not (args.resume and saved.is_file()):
        return None
    cfg = TrainConfig.from_dict(json.loads(saved.read_text())["train_config"])
    given = config_from_args(args)
    for dest in explicit - {"set", "cache_only", "resume"}:
        path = _FIELD_OF.get(dest, dest)
        src, dst = (given.distill, cfg.distill) if path.startswith("distill.") else (given, cfg)
        name = path.split(".")[-1]
        setattr(dst, name, getattr(src, name))
    cfg.resume = True
    _apply_sets(cfg, args.set)
    return cfg


def _apply_sets(cfg: TrainConfig, items: list[str]) -> None:
    for item in items:
        key, sep, text = item.partition("=")
        target = cfg
        if key.startswith("distill."):
            target, key = cfg.distill, key[len("distill."):]
        if not sep or key not in {f.name for f in dataclasses.fields(target)}:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE with KEY a config field")
        setattr(target, key, _parse_value(text, getattr(target, key)))


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    distill = DistillConfig(teacher=args.teacher, teacher_device=args.teacher_device,
                            teacher_dtype=args.teacher_dtype, teacher_autocast=args.teacher_autocast,
                            d_coef=args.d_coef, schedule=args.schedule, all_steps=args.all_steps,
                            latent=args.latent, latent_coef=args.latent_coef, pca_samples=args.pca_samples,
                            cache=args.teacher_cache, cache_precision=args.cache_precision)
    size = int(args.student_size) if str(args.student_size).isdigit() else args.student_size
    cfg = TrainConfig(data=args.data, out=args.out, student_size=size, init=args.init,
                      batch_size=args.batch_size, steps=args.steps, seed=args.seed, device=args.device,
                      precision=args.precision, compile=args.compile, threads=args.threads, resume=args.resume,
                      eval_freq=args.eval_freq, eval_final=args.eval_final, eval_tasks=args.eval_tasks,
                      eval_episodes=args.eval_episodes, eval_protocol=args.eval_protocol,
                      eval_policy=args.eval_policy,
                      checkpoint_freq=args.checkpoint_freq, keep_checkpoints=args.keep_checkpoints,
                      log_freq=args.log_freq, progress=not args.no_progress, wandb_project=args.wandb_project,
                      distill=distill)
    _apply_sets(cfg, args.set)
    return cfg


def main(argv: list[str] | None = None) -> dict:
    from ..checkpoint import CheckpointError
    from ..data.store import DataError
    from .trainer import build_teacher_cache, train

    p = build_parser()
    args = p.parse_args(argv)
    try:
        cfg = resumed_config(args, explicit_options(argv)) or config_from_args(args)
        if args.cache_only:
            if not cfg.distill.teacher:
                raise ValueError("--cache-only needs --teacher")
            cache = build_teacher_cache(cfg.data, cfg.distill.teacher, cfg.distill.cache or "auto",
                                        cfg.distill.teacher_device or cfg.device, cfg.distill.teacher_dtype,
                                        cfg.distill.cache_precision, cfg.distill.cache_tolerance,
                                        cfg.distill.cache_batch_size, progress=cfg.progress)
            print(json.dumps({"cache": str(cache.path), **cache.meta}, indent=1))
            return cache.meta
        summary = train(cfg)
    except (CheckpointError, DataError, ValueError) as e:
        p.exit(2, f"error: {e}\n")
    print(json.dumps(summary, indent=1, default=str), file=sys.stdout)
    return summary


if __name__ == "__main__":
    main()
