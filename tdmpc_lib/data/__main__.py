"""Command line for datasets: python -m tdmpc_lib.data convert|collect|info|download ...

    convert  --chunks FILES... --out DIR --trust-pickle [--task-set mt30] [--episode-length 501]
    collect  [--checkpoint CKPT] --policy prior|plan|random --tasks A,B --episodes N --out DIR
             [--seed S --device cpu --precision fp32|bf16 --chunk-file PATH --max-steps T --explore]
    info     DIR
    download --task-set mt30|mt80 [--chunks 0,1] [--cache-dir DIR] [--revision REV]
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated, Union

import tyro

from ..choices import CollectPolicy, Precision, TaskSetName
from .store import DataError


@dataclass
class Convert:
    """Convert public chunk files into a memory-mapped store."""
    chunks: tuple[str, ...]  # chunk .pt files (TensorDict pickles)
    out: str  # store folder (created, or appended to)
    trust_pickle: bool = False  # allow unpickling the chunk files (pickles run code: only files you trust)
    task_set: TaskSetName | None = None  # default: inferred from the obs size
    episode_length: int | None = None  # rows per episode (default 501 mt30, 101 mt80)
    quiet: bool = False  # no progress bar


@dataclass
class Collect:
    """Roll out a policy and write a chunk file and a store segment."""
    policy: CollectPolicy  # random needs no checkpoint
    tasks: str  # 'mt30' or comma-separated MT30 task names
    episodes: int  # episodes per task
    out: str  # store folder (created, or appended to)
    checkpoint: str | None = None  # checkpoint path or hub name (not needed for --policy random)
    seed: int = 1
    device: str = "cpu"
    precision: Precision = "fp32"  # autocast of the planner
    chunk_file: str | None = None  # where to write the chunk file (default OUT/chunks/chunk_K.pt)
    max_steps: int | None = None  # agent steps per episode (default: the full 500)
    explore: bool = False  # add the planner's exploration noise to actions
    quiet: bool = False  # no progress bar


@dataclass
class Info:
    """Print a store's manifest summary."""
    dir: tyro.conf.Positional[str]  # the store folder
    json: bool = False  # print the whole manifest as JSON


@dataclass
class Download:
    """Download public chunk files from the Hugging Face hub."""
    task_set: TaskSetName
    chunks: str | None = None  # comma-separated chunk indices (default: all)
    cache_dir: str | None = None  # Hugging Face cache folder (default: the hub's)
    revision: str | None = None


Command = Union[Annotated[Convert, tyro.conf.subcommand("convert")],
                Annotated[Collect, tyro.conf.subcommand("collect")],
                Annotated[Info, tyro.conf.subcommand("info")],
                Annotated[Download, tyro.conf.subcommand("download")]]


def _run(args) -> None:
    if isinstance(args, Convert):
        from .chunks import convert_chunks
        from .store import open_store
        convert_chunks(args.chunks, args.out, trust_pickle=args.trust_pickle, task_set=args.task_set,
                       episode_length=args.episode_length, progress=not args.quiet)
        print(open_store(args.out).summary())
    elif isinstance(args, Collect):
        from .collect import collect
        model = None
        if args.checkpoint:
            from ..checkpoint import load_checkpoint
            model = load_checkpoint(args.checkpoint, device=args.device)
        result = collect(args.out, args.tasks, args.episodes, args.policy, model, seed=args.seed,
                         device=args.device, precision=args.precision, max_steps=args.max_steps,
                         chunk_file=args.chunk_file, explore=args.explore, progress=not args.quiet)
        for task, rets in result["returns"].items():
            print(f"{task:<26} returns {', '.join(f'{r:.1f}' for r in rets)}")
        print(f"chunk file: {result['chunk_file']}\nstore: {result['store']} (segment {result['segment']})")
    elif isinstance(args, Info):
        from .store import open_store, read_manifest
        if args.json:
            manifest = read_manifest(args.dir)
            if manifest is None:
                raise DataError(f"{args.dir} holds no dataset (no manifest.json)")
            print(json.dumps(manifest, indent=1))
        else:
            print(open_store(args.dir).summary())
    elif isinstance(args, Download):
        from .hub import download_chunks
        chunks = None if not args.chunks else [int(c) for c in args.chunks.split(",") if c.strip()]
        for path in download_chunks(args.task_set, chunks, args.cache_dir, args.revision):
            print(path)


def main(argv: list[str] | None = None) -> int:
    from ..cli import interruptible, parse, report

    args = parse(Command, argv, "python -m tdmpc_lib.data", description=__doc__.split("\n")[0])
    try:
        with interruptible(_resume_hint(args)):
            _run(args)
    except (DataError, ValueError) as e:  # CheckpointError is a ValueError too
        return report(e)
    return 0


def _resume_hint(args) -> str:
    """What an interrupted command left and how to go on (a segment enters a store only whole)."""
    if isinstance(args, Convert):
        return (f"the store {args.out} keeps the chunk files converted before the interrupt; rerun the same "
                f"command to convert the rest")
    if isinstance(args, Collect):
        return f"nothing of this collection was added to {args.out}; rerun the same command"
    return "nothing was written; rerun the same command"


if __name__ == "__main__":
    sys.exit(main())
