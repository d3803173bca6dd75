"""Training throughput: ms per update at batch 256 for the 1M student
(a) alone, beside the official TD-MPC2 update computed the official way on the same machine,
(b) with an online frozen teacher of each preset (5, 19, 48, 317; random weights),
(c) with cached teacher targets (the teacher-target cache of a >= 20M-row dataset),
and the peak resident memory of a training process sampling from that memory-mapped dataset.

    python benchmarks/train_throughput.py [--rows 20000000] [--threads 2] [--precision fp32|bf16]
    python benchmarks/train_throughput.py --quick     # ~2 minutes: 200K rows, no teachers

Every path trains on real batches sampled from the same memory-mapped store; the timed part
is the update (sampling is reported on its own: its wall time is dominated by disk waits when
the store is not in the page cache, which would swamp the comparison). Paths are measured in
interleaved rounds (student, reference, cached, teachers, student, ...) so a noisy shared CPU
affects them alike. The headline figure is the MEDIAN update time over all rounds; the
fastest update and the median process CPU time are reported beside it.
"reference" is benchmarks/official_update.py: the official TDMPC2._update re-stated the
official way (sequential rollout, per-step losses, concatenated inputs, all Q members, per-
tensor Adam), timed in the same rounds, so "vs reference" is a same-machine ratio.
The RSS figure comes from a separate process that only opens the store, builds the student,
the cache reader and the learner, and trains (VmHWM, Linux).

Standalone figures (after the harness): the official training loop's hot path, measured the
official loop's way, each in a fresh process: one learner, 5 warm-up and 20 timed updates,
student and reference alternating process by process. Three variants say where the harness's
extra time comes from:
  fixed        one fixed batch, updated again and again (the official loop's benchmark);
  sampled      a new batch sampled from the store before every update (sampling not timed);
  interleaved  the fixed batch, with another 1M learner's update between two timed updates
               (the harness interleaves its paths: caches and the allocator see other models);
  fixed-passive  fixed, with OMP_WAIT_POLICY=PASSIVE as the harness runs (the others keep the
               caller's policy, unset: OpenMP's default, as a training run has it).
Targets: 1M update median <= 100 ms fp32 on a 2-core CPU and below the reference; cached
within 10% of the plain update; RSS < 4 GB.
The last output line is one JSON object (update_ms: median ms of each path; standalone_ms:
median ms of each standalone variant).
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

# Before torch loads OpenMP: sleeping (not spinning) workers for the interleaved harness. On a
# CPU shared with other jobs, spinning threads on oversubscribed cores make an update 5-10x
# slower. The standalone children run with the caller's policy (OpenMP's default: spin a while
# before sleeping), as `python -m tdmpc_lib.train` does, and once with PASSIVE to show its cost.
USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
if "--standalone-child" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from tdmpc_lib.data.benchmark_support import _status_mb, make_synthetic_store  # noqa: E402
from tdmpc_lib.data.sampler import SliceSampler  # noqa: E402
from tdmpc_lib.data.store import open_store  # noqa: E402
from tdmpc_lib.train import DistillConfig, Distiller, Learner, Teacher, TeacherTargetCache, TrainConfig  # noqa: E402
from tdmpc_lib.world_model import make_world_model  # noqa: E402

from official_update import OfficialStyleUpdate  # noqa: E402  (beside this script: python puts its folder on the path)

TARGET_MEDIAN_MS = 100.0  # the 1M update at batch 256, fp32, on a 2-core CPU
QUICK = {"rows": 200_000, "teachers": "", "bf16_teachers": "", "rounds": 5, "steps": 4, "warmup": 2, "rss_steps": 20,
         "standalone_rounds": 2}
STANDALONE_MODES = ("fixed", "sampled", "interleaved", "fixed-passive")
STANDALONE_WARMUP, STANDALONE_TIMED = 5, 20


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


def make_path(name, store, cfg: TrainConfig, distiller=None, seed=0, learner=Learner) -> Path_:
    """`learner`: tdmpc_lib's Learner or the official-way OfficialStyleUpdate (no distillation)."""
    model = make_world_model(1, store.task_set, seed=seed)
    learner = learner(model, cfg, distiller) if distiller is not None else learner(model, cfg)
    return Path_(name, learner, SliceSampler(store, cfg.batch_size, cfg.horizon, "cpu", seed))


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


def standalone_child(args) -> None:
    """One fresh process, one learner (args.standalone_child: 'student' or 'reference'), the
    variant args.standalone_mode; prints {"times_ms": [...]} of the timed updates."""
    torch.set_num_threads(args.threads)
    store = open_store(args.data)
    cfg = TrainConfig(data=str(args.data), batch_size=args.batch_size, precision=args.precision)
    learner = Learner if args.standalone_child == "student" else OfficialStyleUpdate
    path = make_path(args.standalone_child, store, cfg, learner=learner)
    other = make_path("other", store, cfg, seed=1) if args.standalone_mode == "interleaved" else None
    fixed = path.sampler.sample()
    times = []
    for i in range(STANDALONE_WARMUP + STANDALONE_TIMED):
        batch = path.sampler.sample() if args.standalone_mode == "sampled" else fixed
        if other is not None:
            other.learner.update(fixed, i)
        tic = time.perf_counter()
        path.learner.update(batch, i)
        if i >= STANDALONE_WARMUP:
            times.append(1000 * (time.perf_counter() - tic))
    print(json.dumps({"times_ms": times}))


def standalone(args) -> dict[str, float]:
    """Median ms per update of each (learner, variant) over args.standalone_rounds fresh
    processes per pair, student and reference alternating."""
    times: dict[str, list[float]] = {}
    for _ in range(args.standalone_rounds):
        for mode in STANDALONE_MODES:
            for who in ("student", "reference"):
                cmd = [sys.executable, __file__, "--standalone-child", who, "--standalone-mode", mode,
                       "--data", str(args.data), "--threads", str(args.threads), "--precision", args.precision,
                       "--batch-size", str(args.batch_size)]
                env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                policy = "PASSIVE" if mode == "fixed-passive" else USER_OMP_WAIT_POLICY
                if policy is not None:
                    env["OMP_WAIT_POLICY"] = policy
                child = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
                if child.returncode != 0:
                    raise RuntimeError(f"standalone child failed: {child.stderr[-1000:]}")
                times.setdefault(f"{who}_{mode}", []).extend(json.loads(child.stdout.strip().splitlines()[-1])["times_ms"])
    return {k: statistics.median(v) for k, v in times.items()}


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
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="skip the student path with TrainConfig.compile (its kernels take seconds to build)")
    p.add_argument("--quick", action="store_true",
                   help=f"a short check: {QUICK['rows']:,} rows, no teachers, {QUICK['rounds']} rounds of {QUICK['steps']} steps")
    p.add_argument("--standalone-rounds", type=int, default=3,
                   help="fresh processes per standalone (learner, variant) pair (0: skip)")
    p.add_argument("--standalone-child", choices=("student", "reference"), help=argparse.SUPPRESS)
    p.add_argument("--standalone-mode", choices=STANDALONE_MODES, default="fixed", help=argparse.SUPPRESS)
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--cache-path", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:  # its settings, except where given explicitly
        for k, v in QUICK.items():
            if getattr(args, k) == p.get_default(k):
                setattr(args, k, v)
        if args.data == p.get_default("data"):
            args.data = Path("/tmp/tdmpc_train_bench_quick")
    if args.rss_child:
        return rss_child(args)
    if args.standalone_child:
        return standalone_child(args)
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
    paths = [make_path("student", store, base), make_path("reference", store, base, learner=OfficialStyleUpdate)]
    compile_s = None
    if args.compile:
        tic = time.perf_counter()
        compiled = make_path("student_compiled", store, TrainConfig(**{**base.__dict__, "compile": True}))
        compiled.run(1, record=False)  # the graph variants not built up front compile in the first update
        compile_s = time.perf_counter() - tic
        paths.append(compiled)
        log(f"student_compiled: TrainConfig.compile (fused LayerNorm + Mish kernels): learner and first update "
            f"{compile_s:.1f} s ({compiled.learner.compile_s:.1f} s of it building kernels up front)")
    dcfg = DistillConfig(teacher="cached", d_coef=0.45, cache=str(cache.path))
    paths.append(make_path("cached", store, TrainConfig(**{**base.__dict__, "distill": dcfg}),
                           Distiller(dcfg, None, 128, cache)))
    if args.also_bf16 and args.precision != "bf16":
        bf = TrainConfig(**{**base.__dict__, "precision": "bf16"})
        paths.append(make_path("student_bf16", store, bf))
        paths.append(make_path("reference_bf16", store, bf, learner=OfficialStyleUpdate))
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
    # The headline is the median update of each path; rounds interleave the paths, so a busy
    # neighbour slows all of them alike and the ratios stay meaningful. The fastest update and
    # the median CPU time (both threads) are reported beside it.
    medians = {path.name: 1000 * statistics.median(path.times) for path in paths}
    fastest = {path.name: 1000 * min(path.times) for path in paths}
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
    alone = standalone(args) if args.standalone_rounds > 0 else {}

    def ref_of(name):  # the reference-style path measured at the same precision
        return "reference_bf16" if name.endswith("_bf16") and "reference_bf16" in medians else "reference"

    log("")
    log(f"{'path (batch ' + str(args.batch_size) + ', 1M student)':<30}{'median ms':>10}{'updates/s':>10}"
        f"{'vs reference':>13}{'vs student':>11}{'fastest ms':>11}{'cpu ms':>8}{'teacher fwd ms':>15}")
    for path in paths:
        n = path.name
        key = n[len("teacher_"):] if n.startswith("teacher_") else None
        vs_ref = f"{medians[n] / medians[ref_of(n)]:.2f}x"
        log(f"{n:<30}{medians[n]:>10.1f}{1000 / medians[n]:>10.2f}{vs_ref:>13}{medians[n] / medians['student']:>10.2f}x"
            f"{fastest[n]:>11.1f}{cpu_ms[n]:>8.1f}{(f'{teacher_fwd[key]:.1f}' if key else '-'):>15}")
    steps = sorted({len(path.times) for path in paths})
    log(f"(median / fastest of {'/'.join(map(str, steps))} timed updates per path in {args.rounds} interleaved rounds, "
        f"wall time of one update, sampling excluded; cpu ms: median process CPU time per update, all threads; "
        f"reference: the official TDMPC2._update computed the official way, benchmarks/official_update.py)")
    if alone:
        log("")
        log(f"{'standalone (fresh process, 1M)':<30}{'student ms':>11}{'reference ms':>13}{'student/ref':>12}"
            f"{'harness/standalone (student, ref)':>36}")
        for mode in STANDALONE_MODES:
            st, rf = alone[f"student_{mode}"], alone[f"reference_{mode}"]
            log(f"{mode:<30}{st:>11.1f}{rf:>13.1f}{st / rf:>11.2f}x{medians['student'] / st:>17.2f}x{medians['reference'] / rf:>8.2f}x")
        log(f"(median of {STANDALONE_TIMED} timed updates after {STANDALONE_WARMUP} warm-up ones, in each of "
            f"{args.standalone_rounds} fresh processes per row and learner; OMP_WAIT_POLICY "
            f"{USER_OMP_WAIT_POLICY or 'unset'} except fixed-passive; harness: the interleaved medians above, "
            f"PASSIVE)")
    log(f"sampling a batch from the memory-mapped store: {sample_ms:.2f} ms wall, {sample_cpu_ms:.2f} ms CPU "
        f"(the difference is waiting for disk pages not in the page cache)")
    log(f"peak RSS of a training process (cached distillation, {rss['steps']} updates on {store.num_rows:,} rows): "
        f"{peak_gb:.2f} GB (file-backed at the end {rss['rss_file_mb']:.0f} MB)")
    log("")
    # the target is the official loop's hot path: standalone, fixed batch (the harness without it)
    where = "standalone, fixed batch" if alone else "harness"
    student, ref = ((alone["student_fixed"], alone["reference_fixed"]) if alone
                    else (medians["student"], medians["reference"]))
    met = student <= TARGET_MEDIAN_MS and student < ref
    log(f"target 1M update median <= {TARGET_MEDIAN_MS:.0f} ms ({args.precision}, {where}) and below the reference: "
        f"{student:.1f} ms vs reference {ref:.1f} ms ({student / ref:.2f}x) -> {'MET' if met else 'NOT MET'}")
    student, ref = medians["student"], medians["reference"]
    if "student_compiled" in medians:
        log(f"  with TrainConfig.compile (fused LayerNorm + Mish, {compile_s:.0f} s to build): {medians['student_compiled']:.1f} ms "
            f"({medians['student_compiled'] / ref:.2f}x the reference)")
    if "student_bf16" in medians:
        log(f"  with bf16 autocast: {medians['student_bf16']:.1f} ms vs reference {medians['reference_bf16']:.1f} ms "
            f"({medians['student_bf16'] / medians['reference_bf16']:.2f}x)")
    log(f"  floor: one update is {floor['gflop_per_update']:.2f} GFLOP of matmuls; this CPU multiplies (1024x384)@(384x384) at "
        f"{floor['gemm_gflops_fp32']:.0f} GFLOP/s fp32, {floor['gemm_gflops_bf16']:.0f} bf16 ({args.threads} threads), so the "
        f"matmuls alone take >= {floor['matmul_floor_ms_fp32']:.0f} ms fp32 / {floor['matmul_floor_ms_bf16']:.0f} ms bf16, "
        f"before Mish/LayerNorm/softmax/dropout")
    ratio, cpu_ratio = medians["cached"] / student, cpu_ms["cached"] / cpu_ms["student"]
    log(f"target cached distillation within 10% of the plain update: {100 * (ratio - 1):+.1f}% "
        f"(CPU time {100 * (cpu_ratio - 1):+.1f}%) -> {'MET' if ratio <= 1.10 else 'NOT MET'}")
    log(f"target RSS < 4 GB: {peak_gb:.2f} GB -> {'MET' if peak_gb < 4 else 'NOT MET'}")
    for key in ("317", "317_bf16"):
        if key in teacher_fwd:
            log(f"317M teacher ({key}) forward {teacher_fwd[key]:.0f} ms per step of 256 rows; "
                f"caching all {store.num_rows:,} rows with it: "
                f"~{store.num_rows / 256 * teacher_fwd[key] / 1000 / 3600:.1f} h on this CPU (minutes on a GPU)")
    log(f"load average at end {os.getloadavg()[0]:.1f} (other processes share these cores)")
    result = {"update_ms": {k: round(v, 2) for k, v in medians.items()},
              "vs_reference": {k: round(v / medians[ref_of(k)], 3) for k, v in medians.items()},
              "update_ms_fastest": {k: round(v, 2) for k, v in fastest.items()},
              "update_cpu_ms": {k: round(v, 2) for k, v in cpu_ms.items()},
              "timed_updates": {path.name: len(path.times) for path in paths},
              "standalone_ms": {k: round(v, 2) for k, v in alone.items()},
              "target_median_ms": TARGET_MEDIAN_MS, "target_met": met, "target_measured": where,
              "compile_s": compile_s,
              "peak_rss_gb": round(peak_gb, 3), "dataset_rows": int(store.num_rows),
              "teacher_forward_ms": {str(k): round(v, 2) for k, v in teacher_fwd.items()},
              "matmul_floor": {k: round(v, 2) for k, v in floor.items()},
              "sample_ms": round(sample_ms, 3), "sample_cpu_ms": round(sample_cpu_ms, 3), "threads": args.threads,
              "precision": args.precision, "teacher_dtype": args.teacher_dtype, "batch_size": args.batch_size,
              "load_average": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
