"""Training throughput: ms per update at batch 256 for the 1M student
(a) alone, (b) with an online frozen teacher of each preset (5, 19, 48, 317; random weights),
(c) with cached teacher targets (the teacher-target cache of a >= 20M-row dataset),
and the peak resident memory of a training process sampling from that memory-mapped dataset.

    python benchmarks/train_throughput.py [--rows 20000000] [--threads 2] [--precision fp32|bf16]

Every path trains on real batches sampled from the same memory-mapped store; the timed part
is the update (sampling is reported on its own: its wall time is dominated by disk waits when
the store is not in the page cache, which would swamp the comparison). Paths are measured in
interleaved rounds (student, cached, teachers, student, ...) so a noisy shared CPU affects
them alike; the reported figure is the median update time over all rounds. The RSS figure
comes from a separate process that only opens the store, builds the student, the cache reader
and the learner, and trains (VmHWM, Linux).
Reference (section 17, this CPU): ~100 ms per 1M update, +140 ms per step for the 317M
teacher forward. Targets: 1M update <= 33 ms; cached within 10% of the plain update; RSS < 4 GB.
The last output line is one JSON object (update_ms: the fastest update of each path, in ms).
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Before torch loads OpenMP: sleeping (not spinning) workers. On a CPU shared with other jobs,
# spinning threads on oversubscribed cores make an update 5-10x slower; idle, it costs ~nothing.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from tdmpc_lib.data.benchmark_support import _status_mb, make_synthetic_store  # noqa: E402
from tdmpc_lib.data.sampler import SliceSampler  # noqa: E402
from tdmpc_lib.data.store import open_store  # noqa: E402
from tdmpc_lib.train import DistillConfig, Distiller, Learner, Teacher, TeacherTargetCache, TrainConfig  # noqa: E402
from tdmpc_lib.world_model import make_world_model  # noqa: E402

REFERENCE_MS = {"student": 100.0, "teacher_forward_317": 140.0}


def build_cache(store, data_dir: Path, teacher_size: str, log) -> TeacherTargetCache:
    """A complete teacher-target cache for the store, computed by a cheap random teacher (what
    the cached path reads does not depend on the teacher's size)."""
    model = make_world_model(teacher_size, store.task_set, seed=123)
    with torch.no_grad():  # non-trivial rewards: random output layer
        model._reward[-1].weight.normal_(0, 0.05)
    teacher = Teacher(model, "cpu", sha256=f"random-{teacher_size}-seed123", path=f"random {teacher_size}")
    path = data_dir / "teacher_cache" / f"bench_random_{teacher_size}.npy"
    tic = time.perf_counter()
    cache = TeacherTargetCache.build(teacher, store, path, batch_size=8192, precision="auto", progress=False)
    log(f"teacher cache: {path} ({store.num_rows} rows, precision {cache.meta['precision']}, "
        f"built in {cache.meta.get('build_s', 0):.0f} s this or an earlier run; opened in {time.perf_counter() - tic:.1f} s)")
    return cache


class Path_:
    """One measured configuration: a learner, its sampler and its step times."""

    def __init__(self, name, learner, sampler):
        self.name, self.learner, self.sampler, self.step = name, learner, sampler, 0
        self.times, self.cpu_times = [], []

    def run(self, steps: int, record: bool) -> None:
        for _ in range(steps):
            batch = self.sampler.sample()  # not timed: random reads of a cold memmap wait on the disk
            tic, cpu = time.perf_counter(), time.process_time()
            self.learner.update(batch, self.step)
            self.step += 1
            if record:
                self.times.append(time.perf_counter() - tic)
                self.cpu_times.append(time.process_time() - cpu)


def matmul_floor(path: Path_, batch) -> dict:
    """Matmul FLOPs of one update (FlopCounterMode) and this CPU's GEMM rate at the update's
    typical shape: the time the matmuls alone need, whatever the implementation."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        path.learner.update(batch, 0)
    out = {"gflop_per_update": counter.get_total_flops() / 1e9}
    for name, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(1024, 384, dtype=dt), torch.randn(384, 384, dtype=dt)
        for _ in range(5):
            a @ b
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(20):
                a @ b
            times.append((time.perf_counter() - t0) / 20)
        out[f"gemm_gflops_{name}"] = 2 * 1024 * 384 * 384 / min(times) / 1e9
        out[f"matmul_floor_ms_{name}"] = 1000 * out["gflop_per_update"] / out[f"gemm_gflops_{name}"]
    return out


def make_path(name, store, cfg: TrainConfig, distiller=None, seed=0) -> Path_:
    model = make_world_model(1, store.task_set, seed=seed)
    return Path_(name, Learner(model, cfg, distiller), SliceSampler(store, cfg.batch_size, cfg.horizon, "cpu", seed))


def rss_child(args) -> None:
    """Training process for the RSS measurement: cached distillation from the big store."""
    torch.set_num_threads(args.threads)
    before = _status_mb()
    store = open_store(args.data)
    cache = TeacherTargetCache(args.cache_path)
    cfg = TrainConfig(data=str(args.data), batch_size=args.batch_size, precision=args.precision,
                      distill=DistillConfig(teacher="cached", cache=str(args.cache_path)))
    distiller = Distiller(cfg.distill, None, 128, cache)
    path = make_path("rss", store, cfg, distiller)
    tic = time.perf_counter()
    path.run(args.rss_steps, record=False)
    after = _status_mb()
    print(json.dumps({"steps": args.rss_steps, "wall_s": time.perf_counter() - tic, "rss_before_mb": before.get("VmRSS"),
                      "rss_after_mb": after.get("VmRSS"), "rss_file_mb": after.get("RssFile"),
                      "peak_rss_mb": after.get("VmHWM")}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/tdmpc_train_bench_20M"), help="synthetic store folder")
    p.add_argument("--rows", type=int, default=20_000_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="student autocast")
    p.add_argument("--teacher-dtype", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--teacher-autocast", action="store_true", help="bf16 matmuls for the fp32 teachers")
    p.add_argument("--no-bf16", dest="also_bf16", action="store_false",
                   help="skip the extra student/cached paths with bf16 autocast")
    p.add_argument("--teachers", default="5,19,48,317")
    p.add_argument("--bf16-teachers", default="317", help="also measure these teachers with bf16 weights")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="timed steps per path per round")
    p.add_argument("--big-steps", type=int, default=3, help="timed steps per round for the 48M/317M teachers")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rss-steps", type=int, default=150)
    p.add_argument("--cache-teacher", default="tiny", help="preset of the random teacher that fills the cache")
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache-path", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        return rss_child(args)
    torch.set_num_threads(args.threads)
    lines = []

    def log(msg=""):
        print(msg, flush=True)
        lines.append(msg)

    log(f"train_throughput: torch {torch.__version__}, {args.threads} threads (OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY')}), cpu {torch.backends.cpu.get_cpu_capability()}, "
        f"load average {os.getloadavg()[0]:.1f} at start, student precision {args.precision}")
    tic = time.perf_counter()
    store = make_synthetic_store(args.data, rows=args.rows, progress=False)
    log(f"dataset: {store.num_rows:,} rows ({store.num_episodes:,} episodes) memory-mapped from {args.data} "
        f"(ready in {time.perf_counter() - tic:.0f} s)")
    cache = build_cache(store, args.data, args.cache_teacher, log)

    base = TrainConfig(data=str(args.data), batch_size=args.batch_size, precision=args.precision)
    paths = [make_path("student", store, base)]
    dcfg = DistillConfig(teacher="cached", d_coef=0.45, cache=str(cache.path))
    paths.append(make_path("cached", store, TrainConfig(**{**base.__dict__, "distill": dcfg}),
                           Distiller(dcfg, None, 128, cache)))
    if args.also_bf16 and args.precision != "bf16":
        bf = TrainConfig(**{**base.__dict__, "precision": "bf16"})
        paths.append(make_path("student_bf16", store, bf))
        paths.append(make_path("cached_bf16", store, TrainConfig(**{**bf.__dict__, "distill": dcfg}),
                               Distiller(dcfg, None, 128, cache)))
    teacher_fwd = {}
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.teacher_dtype]
    bf16_sizes = {int(s) for s in args.bf16_teachers.split(",") if s}
    for size in [int(s) for s in args.teachers.split(",") if s]:
        tic = time.perf_counter()
        model = make_world_model(size, store.task_set, seed=size)
        with torch.no_grad():  # non-trivial rewards from the random teacher
            model._reward[-1].weight.normal_(0, 0.02)
        variants = [("", dtype)] + ([("_bf16", torch.bfloat16)] if size in bf16_sizes and dtype != torch.bfloat16 else [])
        reference = None
        for suffix, dt in variants:
            teacher = Teacher(copy.deepcopy(model) if len(variants) > 1 else model, "cpu", dtype=dt,
                              autocast=args.teacher_autocast, sha256=f"random-{size}")
            d = DistillConfig(teacher=f"random {size}M", d_coef=0.45)
            path = make_path(f"teacher_{size}{suffix}", store, TrainConfig(**{**base.__dict__, "distill": d}),
                             Distiller(d, teacher, 128))
            path.big = size >= 48
            paths.append(path)
            # the teacher forward alone (encode + reward, no grad), on one sampled batch
            b = SliceSampler(store, args.batch_size, 3, "cpu", seed=1).sample()
            r = teacher.predict(b.obs[:1], b.action[:1], b.task)["reward"]
            ts = []
            for _ in range(3 if size >= 48 else 10):
                t0 = time.perf_counter()
                teacher.predict(b.obs[:1], b.action[:1], b.task)
                ts.append(time.perf_counter() - t0)
            teacher_fwd[f"{size}{suffix}"] = 1000 * statistics.median(ts)
            err = "" if reference is None else f", max |reward - fp32 reward| {float((r - reference).abs().max()):.4f}"
            reference = r if reference is None else reference
            log(f"teacher {size}M{suffix}: {teacher.total_params:,} params ({sum(p.numel() for p in teacher.model.parameters()):,} "
                f"kept: encoder, dynamics, reward; {str(dt)[6:]}), forward {teacher_fwd[f'{size}{suffix}']:.1f} ms{err}")
        del model
        gc.collect()
        log(f"  built in {time.perf_counter() - tic:.0f} s")

    for path in paths:
        path.run(args.warmup, record=False)
    floor = matmul_floor(paths[0], paths[0].sampler.sample())
    for r in range(args.rounds):
        for path in paths:
            path.run(args.big_steps if getattr(path, "big", False) else args.steps, record=True)
    # The primary figure is the fastest observed update of each path (timeit's convention): on a
    # CPU shared with other jobs the median mostly measures how busy the neighbours were.
    ms = {path.name: 1000 * min(path.times) for path in paths}
    medians = {path.name: 1000 * statistics.median(path.times) for path in paths}
    cpu_ms = {path.name: 1000 * statistics.median(path.cpu_times) for path in paths}

    # sampling alone, and the RSS of a separate training process on the big store
    s = SliceSampler(store, args.batch_size, 3, "cpu", seed=9)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(200):
        s.sample()
    sample_ms = 1000 * (time.perf_counter() - t0) / 200
    sample_cpu_ms = 1000 * (time.process_time() - c0) / 200
    cmd = [sys.executable, __file__, "--rss-child", "--data", str(args.data), "--cache-path", str(cache.path),
           "--threads", str(args.threads), "--precision", args.precision, "--rss-steps", str(args.rss_steps),
           "--batch-size", str(args.batch_size)]
    child = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"RSS child failed: {child.stderr[-1000:]}")
    rss = json.loads(child.stdout.strip().splitlines()[-1])
    peak_gb = rss["peak_rss_mb"] / 1024

    log("")
    log(f"{'path (batch ' + str(args.batch_size) + ', 1M student)':<32}{'update ms':>10}{'updates/s':>11}"
        f"{'vs student':>12}{'median ms':>11}{'cpu ms':>9}{'cpu vs st.':>12}{'teacher fwd ms':>16}")
    for path in paths:
        key = path.name[len("teacher_"):] if path.name.startswith("teacher_") else None
        n = path.name
        log(f"{n:<32}{ms[n]:>10.1f}{1000 / ms[n]:>11.2f}{ms[n] / ms['student']:>11.2f}x{medians[n]:>11.1f}"
            f"{cpu_ms[n]:>9.1f}{cpu_ms[n] / cpu_ms['student']:>11.2f}x{(f'{teacher_fwd[key]:.1f}' if key else '-'):>16}")
    log(f"(update ms: fastest of {args.rounds} interleaved rounds, wall time of learner.update, sampling excluded; "
        f"median ms: median wall time; cpu ms: median process CPU time per update, both threads)")
    log(f"sampling a batch from the memory-mapped store: {sample_ms:.2f} ms wall, {sample_cpu_ms:.2f} ms CPU "
        f"(the difference is waiting for disk pages not in the page cache)")
    log(f"peak RSS of a training process (cached distillation, {rss['steps']} updates on {store.num_rows:,} rows): "
        f"{peak_gb:.2f} GB (file-backed at the end {rss['rss_file_mb']:.0f} MB)")
    log("")
    target = REFERENCE_MS["student"] / 3
    log(f"target 1M update <= {target:.1f} ms (3x the reference ~100 ms): {ms['student']:.1f} ms -> "
        f"{'MET' if ms['student'] <= target else 'NOT MET'}")
    if "student_bf16" in ms:
        log(f"  with bf16 autocast: {ms['student_bf16']:.1f} ms -> {'MET' if ms['student_bf16'] <= target else 'NOT MET'}")
    log(f"  why: one update is {floor['gflop_per_update']:.2f} GFLOP of matmuls; this CPU multiplies (1024x384)@(384x384) at "
        f"{floor['gemm_gflops_fp32']:.0f} GFLOP/s fp32, {floor['gemm_gflops_bf16']:.0f} bf16 ({args.threads} threads), so the "
        f"matmuls alone take >= {floor['matmul_floor_ms_fp32']:.0f} ms fp32 / {floor['matmul_floor_ms_bf16']:.0f} ms bf16, "
        f"before Mish/LayerNorm/softmax/dropout")
    ratio, cpu_ratio = ms["cached"] / ms["student"], cpu_ms["cached"] / cpu_ms["student"]
    log(f"target cached distillation within 10% of the plain update: {100 * (ratio - 1):+.1f}% "
        f"(CPU time {100 * (cpu_ratio - 1):+.1f}%) -> {'MET' if ratio <= 1.10 else 'NOT MET'}")
    log(f"target RSS < 4 GB: {peak_gb:.2f} GB -> {'MET' if peak_gb < 4 else 'NOT MET'}")
    for key in ("317", "317_bf16"):
        if key in teacher_fwd:
            log(f"317M teacher ({key}) forward {teacher_fwd[key]:.0f} ms per step of 256 rows (reference ~140 ms); "
                f"caching all {store.num_rows:,} rows with it: ~{store.num_rows / 256 * teacher_fwd[key] / 1000 / 3600:.1f} h "
                f"on this CPU (minutes on a GPU)")
    log(f"load average at end {os.getloadavg()[0]:.1f} (other processes share these cores)")
    main_keys = ["student"] + [f"teacher_{k}" for k in teacher_fwd if "_" not in k] + ["cached"]
    result = {"update_ms": {k: round(ms[k], 2) for k in main_keys},
              "peak_rss_gb": round(peak_gb, 3), "dataset_rows": int(store.num_rows),
              "update_ms_median": {k: round(v, 2) for k, v in medians.items()},
              "update_cpu_ms": {k: round(v, 2) for k, v in cpu_ms.items()},
              "extra_update_ms": {k: round(v, 2) for k, v in ms.items() if k not in main_keys},
              "teacher_forward_ms": {str(k): round(v, 2) for k, v in teacher_fwd.items()},
              "matmul_floor": {k: round(v, 2) for k, v in floor.items()},
              "sample_ms": round(sample_ms, 3), "sample_cpu_ms": round(sample_cpu_ms, 3), "threads": args.threads, "precision": args.precision,
              "teacher_dtype": args.teacher_dtype, "batch_size": args.batch_size}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
