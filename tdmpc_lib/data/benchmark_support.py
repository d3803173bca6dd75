"""Helpers for benchmarks: a large synthetic store, and the peak resident memory of sampling
from it (the claim to check: training on all of MT30, 345.69M rows, fits in 4 GB of RSS).

API:
    store = make_synthetic_store(path, rows=20_000_000, episode_length=501, seed=0, sparse=False)
        -> EpisodeStore; writes a valid MT30-shaped store of ceil(rows / L) episodes (128 B per
        row on disk: 2.6 GB for 20M rows) in blocks with open_memmap, or reuses the one already
        at `path` when it was made with the same arguments. sparse=True: all-zero sparse files.
    measure_sampling_rss(path, batches=2000, batch_size=256, horizon=3, gather='pread', prefetch=4,
                         cold=False, isolated=True)
        -> {'peak_rss_mb', 'rss_before_mb', 'rss_after_mb', 'rss_file_after_mb', 'batches_per_s', ...}
        isolated=True measures in a fresh Python process so the peak is that of a process that
        only imported torch, opened the store and sampled; cold=True first evicts the store's
        files from the page cache (evict_page_cache), as when the dataset exceeds the RAM.
CLI: python -m tdmpc_lib.data.benchmark_support PATH [--rows N] [--batches N]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .store import DataError, SegmentWriter, new_manifest, open_store, read_manifest, write_manifest


def make_synthetic_store(path: str | os.PathLike, rows: int = 20_000_000, episode_length: int = 501,
                         task_set: str = "mt30", seed: int = 0, sparse: bool = False, progress: bool = True):
    """Write (or reuse) a synthetic store of at least `rows` rows; returns it opened.

    sparse=True writes no row data: the arrays are sparse files of zeros (no disk used, made in
    a second), which is enough to check memory use at full scale (e.g. 345.69M rows)."""
    path = Path(path)
    params = {"rows": int(rows), "episode_length": int(episode_length), "task_set": task_set, "seed": int(seed),
              "sparse": bool(sparse)}
    manifest = read_manifest(path)
    if manifest is not None:
        segs = manifest["segments"]
        if len(segs) == 1 and segs[0].get("synthetic") == params:
            return open_store(path)
        if not all("synthetic" in s for s in segs):
            raise DataError(f"{path} holds a real dataset; refusing to overwrite it with synthetic data")
    if path.exists():
        if any(p for p in path.iterdir() if p.name != "manifest.json" and not p.name.startswith("seg_")):
            raise DataError(f"{path} is not empty and not a synthetic store; choose another folder")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    manifest = new_manifest(task_set, episode_length)
    write_manifest(path, manifest)
    n = -(-int(rows) // episode_length)
    writer = SegmentWriter(path, manifest, n, reserve=not sparse)
    rng = np.random.Generator(np.random.PCG64(seed))
    num_tasks, O, A = len(manifest["tasks"]), manifest["obs_dim"], manifest["action_dim"]
    block = max(1, (1 << 20) // episode_length)
    if sparse:
        writer.episode_task[:] = rng.integers(0, num_tasks, n)
    with tqdm(total=0 if sparse else n, desc="synthetic store", unit="ep", disable=not progress) as bar:
        for lo in range(0, 0 if sparse else n, block):
            m = min(block, n - lo)
            obs = rng.standard_normal((m, episode_length, O), dtype=np.float32)
            action = rng.uniform(-1, 1, (m, episode_length, A)).astype(np.float32)
            reward = rng.uniform(0, 2, (m, episode_length)).astype(np.float32)
            writer.write(lo, obs, action, reward, rng.integers(0, num_tasks, m))
            bar.update(m)
    writer.commit({"source": "synthetic", "synthetic": params})
    return open_store(path)


def evict_page_cache(path: str | os.PathLike) -> None:
    """Ask the OS to drop the store's files from its page cache (posix_fadvise DONTNEED; only
    these files, clean pages only), so the next reads come from disk as on a machine whose RAM
    cannot cache the whole dataset."""
    for f in Path(path).glob("seg_*/*.npy"):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _status_mb() -> dict[str, float]:
    """VmRSS, VmHWM (peak), RssAnon, RssFile of this process in MB (Linux /proc)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) / 1024
    except OSError:  # not Linux: the peak from getrusage only
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["VmHWM"] = peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return out


def measure_sampling_rss(path: str | os.PathLike, batches: int = 2000, batch_size: int = 256, horizon: int = 3,
                         seed: int = 0, gather: str = "pread", release_every: int = 1, prefetch: int = 4,
                         cold: bool = False, isolated: bool = True) -> dict:
    """Sample `batches` batches from the store at `path` and report resident memory (MB)."""
    if isolated:
        cmd = [sys.executable, "-m", "tdmpc_lib.data.benchmark_support", str(path), "--measure-only",
               "--batches", str(batches), "--batch-size", str(batch_size), "--horizon", str(horizon),
               "--seed", str(seed), "--gather", gather, "--release-every", str(release_every),
               "--prefetch", str(prefetch)] + (["--cold"] if cold else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"RSS measurement failed: {proc.stderr.strip()[-500:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    from .sampler import SliceSampler

    if cold:
        evict_page_cache(path)
    before = _status_mb()
    store = open_store(path)
    sampler = SliceSampler(store, batch_size, horizon, "cpu", seed, gather=gather, prefetch=prefetch,
                           release_every=release_every)
    tic = time.perf_counter()
    for _ in range(batches):
        sampler.sample()
    wall = time.perf_counter() - tic
    sampler.close()
    after = _status_mb()
    return {"rows": store.num_rows, "batches": batches, "batch_size": batch_size, "horizon": horizon,
            "gather": gather, "release_every": release_every, "prefetch": prefetch, "cold": cold,
            "batches_per_s": batches / max(wall, 1e-9),
            "rss_before_mb": before.get("VmRSS"), "rss_after_mb": after.get("VmRSS"),
            "rss_file_after_mb": after.get("RssFile"), "peak_rss_mb": after.get("VmHWM")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m tdmpc_lib.data.benchmark_support", description=__doc__.split("\n")[0])
    p.add_argument("path")
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--sparse", action="store_true", help="all-zero sparse files (no disk use)")
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--horizon", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gather", choices=("pread", "mmap"), default="pread")
    p.add_argument("--release-every", type=int, default=1, help="mmap gather: release mapped pages every N "
                   "batches (0: never)")
    p.add_argument("--prefetch", type=int, default=4, help="batches read ahead in background threads")
    p.add_argument("--cold", action="store_true", help="evict the store from the page cache first")
    p.add_argument("--measure-only", action="store_true", help="sample from an existing store (in this process)")
    a = p.parse_args(argv)
    if a.measure_only:
        print(json.dumps(measure_sampling_rss(a.path, a.batches, a.batch_size, a.horizon, a.seed, a.gather,
                                              a.release_every, a.prefetch, a.cold, isolated=False)))
        return
    make_synthetic_store(a.path, a.rows, sparse=a.sparse)
    print(json.dumps(measure_sampling_rss(a.path, a.batches, a.batch_size, a.horizon, a.seed, a.gather,
                                          a.release_every, a.prefetch, a.cold)))


if __name__ == "__main__":
    main()
