"""Command line for datasets: python -m tdmpc_lib.data convert|collect|info|download ...

    convert  --chunks FILES... --out DIR --trust-pickle [--task-set mt30] [--episode-length 501]
    collect  [--checkpoint CKPT] --policy prior|plan|random --tasks A,B --episodes N --out DIR
             [--seed S --device cpu --precision fp32|bf16 --chunk-file PATH --max-steps T --explore]
    info     DIR
    download --task-set mt30|mt80 [--chunks 0,1] [--cache-dir DIR] [--revision REV]
"""
from __future__ import annotations

import argparse
import json
import sys

from .store import DataError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tdmpc_lib.data", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert public chunk files into a memory-mapped store")
    c.add_argument("--chunks", nargs="+", required=True, help="chunk .pt files (TensorDict pickles)")
    c.add_argument("--out", required=True, help="store folder (created, or appended to)")
    c.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling the chunk files (pickles run code: only for files you trust)")
    c.add_argument("--task-set", choices=("mt30", "mt80"), help="default: inferred from the obs size")
    c.add_argument("--episode-length", type=int, help="rows per episode (default 501 mt30, 101 mt80)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")

    k = sub.add_parser("collect", help="roll out a policy and write a chunk file + store")
    k.add_argument("--checkpoint", help="checkpoint path or hub name (not needed for --policy random)")
    k.add_argument("--policy", choices=("prior", "plan", "random"), required=True)
    k.add_argument("--tasks", required=True, help="'mt30' or comma-separated MT30 task names")
    k.add_argument("--episodes", type=int, required=True, help="episodes per task")
    k.add_argument("--out", required=True, help="store folder (created, or appended to)")
    k.add_argument("--seed", type=int, default=1)
    k.add_argument("--device", default="cpu")
    k.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    k.add_argument("--chunk-file", help="where to write the chunk file (default OUT/chunks/chunk_K.pt)")
    k.add_argument("--max-steps", type=int, help="agent steps per episode (default: the full 500)")
    k.add_argument("--explore", action="store_true", help="add the planner's exploration noise to actions")
    k.add_argument("--quiet", action="store_true", help="no progress bar")

    i = sub.add_parser("info", help="print a store's manifest summary")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true", help="print the whole manifest as JSON")

    d = sub.add_parser("download", help="download public chunk files from the Hugging Face hub")
    d.add_argument("--task-set", choices=("mt30", "mt80"), required=True)
    d.add_argument("--chunks", help="comma-separated chunk indices (default: all)")
    d.add_argument("--cache-dir", help="Hugging Face cache folder (default: the hub's)")
    d.add_argument("--revision")
    return p


def _run(args) -> None:
    if args.command == "convert":
        from .chunks import convert_chunks
        from .store import open_store
        convert_chunks(args.chunks, args.out, trust_pickle=args.trust_pickle, task_set=args.task_set,
                       episode_length=args.episode_length, progress=not args.quiet)
        print(open_store(args.out).summary())
    elif args.command == "collect":
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
    elif args.command == "info":
        from .store import open_store, read_manifest
        if args.json:
            manifest = read_manifest(args.dir)
            if manifest is None:
                raise DataError(f"{args.dir} holds no dataset (no manifest.json)")
            print(json.dumps(manifest, indent=1))
        else:
            print(open_store(args.dir).summary())
    elif args.command == "download":
        from .hub import download_chunks
        chunks = None if not args.chunks else [int(c) for c in args.chunks.split(",") if c.strip()]
        for path in download_chunks(args.task_set, chunks, args.cache_dir, args.revision):
            print(path)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _run(args)
    except (DataError, ValueError) as e:  # CheckpointError is a ValueError too
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
