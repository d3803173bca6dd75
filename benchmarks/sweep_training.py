"""How should the members of a sweep share the CPU? The study's local runner trains one member per
worker process, `workers` at a time, each with cores / workers torch threads (2 workers x 1 thread
on a 2-core machine). This benchmark trains the same members three ways, in one run:

    sequential-Nt   one member after another, each with all N cores as torch threads
    sequential-1t   one member after another, one thread each (what a pool worker does, alone)
    pool-Wx1t       W members at a time in W processes of one thread (the study's runner)

Every member is a fresh `python -m tdmpc_lib.train` process (the study runs each member in its
own kernel, so start-up and import count) on one synthetic store the size of the mini study's
data (96 episodes of 501 rows, MT30 shapes), with the mini profile's student settings (tiny
preset, batch 64, lr 1e-3); members differ by seed. The rounds interleave the paths.

It also checks that a member does not depend on how it was scheduled: its final weights from the
pool equal those of its sequential one-thread run exactly, and those of the all-core run up to
the float rounding of a different thread count (the figure printed).

    python benchmarks/sweep_training.py [--members 4] [--steps 400] [--rounds 2] [--quick]

Last output line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tdmpc_lib import load_checkpoint
from tdmpc_lib.data.benchmark_support import make_synthetic_store

MINI_ROWS = 96 * 501  # the mini study's 96 collected episodes
STUDENT = ["--student-size", "tiny", "--batch-size", "64", "--lr", "1e-3"]


def train_cmd(data: Path, out: Path, seed: int, steps: int, threads: int) -> list[str]:
    return [sys.executable, "-m", "tdmpc_lib.train", "--data", str(data), "--out", str(out), *STUDENT,
            "--steps", str(steps), "--seed", str(seed), "--threads", str(threads), "--device", "cpu",
            "--no-progress", "--log-freq", str(steps), "--checkpoint-freq", str(steps), "--keep-checkpoints", "1"]


def run_path(data: Path, root: Path, seeds: list[int], steps: int, threads: int, at_once: int) -> float:
    """Train every seed, `at_once` processes at a time with `threads` threads each; wall seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    pending, running = list(seeds), []
    tic = time.perf_counter()
    while pending or running:
        while pending and len(running) < at_once:
            seed = pending.pop(0)
            cmd = train_cmd(data, root / f"seed{seed}", seed, steps, threads)
            root.mkdir(parents=True, exist_ok=True)
            with open(root / f"seed{seed}.log", "wb") as log:  # a file, not a pipe nobody reads while it runs
                running.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), seed))
        done = [(proc, seed) for proc, seed in running if proc.poll() is not None]
        if not done:
            time.sleep(0.05)
        for proc, seed in done:
            running.remove((proc, seed))
            if proc.returncode:
                tail = (root / f"seed{seed}.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"member seed {seed} failed (exit code {proc.returncode}): {tail}")
    return time.perf_counter() - tic


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "model.pt").state_dict()


def max_abs_diff(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=4, help="sweep members (seeds 1..N)")
    ap.add_argument("--steps", type=int, default=400, help="updates per member")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (medians over them)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to share (workers of the pool)")
    ap.add_argument("--quick", action="store_true", help="4 members x 200 updates, 1 round")
    args = ap.parse_args()
    if args.quick:
        args.members, args.steps, args.rounds = 4, 200, 1
    seeds = list(range(1, args.members + 1))
    cores = max(1, args.cores)
    paths = {f"sequential-{cores}t": (cores, 1), "sequential-1t": (1, 1), f"pool-{cores}x1t": (1, cores)}
    print(f"{args.members} tiny members x {args.steps} updates (batch 64) on {cores} cores, torch {torch.__version__}, "
          f"{args.rounds} round(s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="sweep_training_") as tmp:
        tmp = Path(tmp)
        make_synthetic_store(tmp / "data", rows=MINI_ROWS, episode_length=501, progress=False)
        walls: dict[str, list[float]] = {p: [] for p in paths}
        for r in range(args.rounds):
            for name, (threads, at_once) in paths.items():
                walls[name].append(run_path(tmp / "data", tmp / f"r{r}" / name, seeds, args.steps, threads, at_once))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
        last = tmp / f"r{args.rounds - 1}"
        pool, seq1, seqn = f"pool-{cores}x1t", "sequential-1t", f"sequential-{cores}t"
        diff_same_threads = max(max_abs_diff(last / pool / f"seed{s}", last / seq1 / f"seed{s}") for s in seeds)
        diff_all_cores = max(max_abs_diff(last / pool / f"seed{s}", last / seqn / f"seed{s}") for s in seeds)

    wall = {p: statistics.median(v) for p, v in walls.items()}
    base = wall[seqn]
    print(f"\n{'path':<16} {'wall s':>8} {'s/member':>9} {'x ' + seqn:>16}")
    for p, w in wall.items():
        print(f"{p:<16} {w:8.1f} {w / args.members:9.1f} {base / w:15.2f}x")
    print(f"(median over {args.rounds} round(s); each member a fresh `python -m tdmpc_lib.train` process, start-up "
          "included)")
    print(f"a member's weights, pool vs its sequential one-thread run: max |diff| {diff_same_threads:.3g}; "
          f"pool vs its {cores}-thread run: {diff_all_cores:.3g}")
    print(json.dumps({"members": args.members, "steps": args.steps, "rounds": args.rounds, "cores": cores,
                      "wall_s": {p: round(w, 2) for p, w in wall.items()},
                      "speedup_vs_sequential": {p: round(base / w, 3) for p, w in wall.items()},
                      "max_abs_diff_same_threads": diff_same_threads, "max_abs_diff_vs_all_cores": diff_all_cores,
                      "load_average": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__}))


if __name__ == "__main__":
    main()
