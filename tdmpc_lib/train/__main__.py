"""Train a TD-MPC2 student offline, optionally distilling a frozen teacher.

    python -m tdmpc_lib.train --data DIR --student-size 1 [--teacher CKPT] [--d-coef 0.45]
        [--latent none|linear|linear-frozen|pca] --batch-size 256 --steps N --device cpu|cuda
        --out RUN_DIR [--resume]

Examples:
    # the paper's short run (200K steps, d_coef 0.4), teacher rewards computed once and cached
    python -m tdmpc_lib.train --data data/mt30 --student-size 1 --teacher mt30-317M.pt --d-coef 0.4 \\
        --teacher-cache auto --steps 200000 --device cuda --out runs/d040
    # build the caches alone (every target the terms read; then sweep --d-coef / --seed with --teacher-cache auto)
    python -m tdmpc_lib.train --data data/mt30 --teacher mt30-317M.pt --teacher-cache auto --cache-only

Every field of TrainConfig / DistillConfig is a flag (the teacher's without a prefix: --d-coef);
--set KEY=VALUE sets one too (--set lr=1e-4 --set distill.latent_coef=0.5). With --resume the
run's saved config is used and only the options given override it.
On a CPU shared with other jobs prefer --threads 1 (or OMP_WAIT_POLICY=PASSIVE): spinning
OpenMP threads on oversubscribed cores can make an update 5-10x slower.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import tyro

from ..cli import fail, interruptible, parse
from ..typed import apply_assignments
from .config import TrainConfig

PROG = "python -m tdmpc_lib.train"


@dataclass
class TrainCommand:
    """The command line: a TrainConfig (its fields are the flags) and what to do with it."""
    config: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    cache_only: bool = False  # build the teacher caches the terms read (needs --teacher) and exit
    # any TrainConfig field, or distill.FIELD, applied after the flags
    set: Annotated[tuple[str, ...], tyro.conf.UseAppendAction, tyro.conf.arg(metavar="KEY=VALUE")] = ()


def command(argv: list[str] | None = None) -> TrainCommand:
    """The parsed command line. With --resume on a run that has a saved config, that config is
    the default the flags given here override (so `--out RUN --resume` continues RUN as it was)."""
    cmd = parse(TrainCommand, argv, PROG, description=__doc__)
    saved = Path(cmd.config.out) / "config.json"
    if cmd.config.resume and saved.is_file():
        try:
            base = TrainConfig.from_dict(json.loads(saved.read_text())["train_config"])
        except (ValueError, KeyError, TypeError) as e:
            fail(f"{saved} holds no readable train config ({e}); start a new --out or drop --resume")
        base = dataclasses.replace(base, out=cmd.config.out, resume=True)
        cmd = parse(TrainCommand, argv, PROG, description=__doc__, default=TrainCommand(config=base))
    return cmd


def main(argv: list[str] | None = None) -> dict:
    cmd = command(argv)
    with interruptible("stopped before training began; rerun the same command"):
        return _main(cmd)


def _main(cmd: TrainCommand) -> dict:
    from ..checkpoint import CheckpointError
    from ..data.store import DataError
    from .trainer import build_teacher_cache, train

    try:
        cfg = apply_assignments(cmd.config, cmd.set)
        if cmd.cache_only:
            if not cfg.distill.teacher:
                raise ValueError("--cache-only needs --teacher")
            cfg.validate()
            d = cfg.distill
            kinds = d.target_kinds or ("reward",)  # every table the run's terms read
            caches = build_teacher_cache(cfg.data, d.teacher, d.cache or "auto", d.teacher_device or cfg.device,
                                         d.teacher_dtype, d.cache_precision, d.cache_tolerance, d.cache_batch_size,
                                         progress=cfg.progress, kinds=kinds)
            first = caches[kinds[0]]
            info = {"cache": str(first.path), **first.meta, "kinds": {k: str(c.path) for k, c in caches.items()}}
            print(json.dumps(info, indent=1))
            return info
        summary = train(cfg)
    except (CheckpointError, DataError, ValueError) as e:
        fail(str(e))
    print(json.dumps(summary, indent=1, default=str), file=sys.stdout)
    return summary


if __name__ == "__main__":
    main()
