"""Post-training quantization benchmark for one checkpoint: one table with, per precision,
file bytes and ratio to our fp32 file, max/mean output error of encoder, dynamics, reward,
Q and policy mean against fp32 on a fixed batch, MPPI planning-step latency (1 and 8
environments, measured in this run, interleaved) and the normalized score of the evaluator's
batched path (protocol 'clean') on a task subset.

Rows: fp32 (our save_checkpoint, online + target Qs), fp16, bf16, int8 (per-channel,
dequantized on load), int8-dyn (same file, CPU int8 matmuls), paper-int8 / paper-mixed (the
TD-MPC-Opt release formats rebuilt from this model: scale-1.0 per-tensor qint8).

  python benchmarks/quantization.py --checkpoint PATH --tasks a,b --episodes N [--device cpu]

The last output line is one JSON object with every figure.
"""
from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # before dm_control is imported

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch


from tdmpc_lib.checkpoint import CheckpointError, file_sha256, load_checkpoint, save_checkpoint  # noqa: E402
from tdmpc_lib.evaluate import EvalConfig, evaluate  # noqa: E402
from tdmpc_lib.export import write_paper_checkpoint  # noqa: E402
from tdmpc_lib.planner import BatchedPlanner  # noqa: E402
from tdmpc_lib.quantize import (fixed_batch, int8_dynamic_available, int8_dynamic_model,  # noqa: E402
                                output_errors, save_quantized, to_precision)
from tdmpc_lib.tasks import get_task_set  # noqa: E402

ROWS = ("fp32", "fp16", "int8", "bf16", "int8-dyn", "paper-int8", "paper-mixed")
HEADS = ("encoder", "dynamics", "reward", "Q", "pi")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_files(ref, workdir: Path) -> dict[str, Path]:
    files = {"fp32": workdir / "fp32.pt"}
    save_checkpoint(ref, files["fp32"])
    for fmt in ("fp16", "bf16", "int8"):
        files[fmt] = workdir / f"{fmt}.pt"
        save_quantized(ref, files[fmt], fmt)
    files["int8-dyn"] = files["int8"]
    for kind in ("int8", "mixed"):
        files[f"paper-{kind}"] = workdir / f"paper-{kind}.pt"
        write_paper_checkpoint(ref, files[f"paper-{kind}"], kind)
    return files


def prepare(row: str, path: Path, device: torch.device):
    """-> (model on device, planner precision, input dtype for the error batch, compute label, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_checkpoint(path)
    notes = [str(w.message) for w in caught if "destroyed" in str(w.message)]
    cuda = device.type == "cuda"
    if row == "bf16":
        return to_precision(model, "bf16").to(device), "bf16", torch.bfloat16, "bf16 weights + bf16 autocast", notes
    if row == "fp16" and cuda:
        return to_precision(model, "fp16").to(device), "fp16", torch.float16, "fp16 weights + fp16 autocast", notes
    if row == "int8-dyn":
        return int8_dynamic_model(model), "fp32", None, "int8 matmuls (x86/fbgemm), Q ens. + 1st layers fp32", notes
    label = {"fp16": "fp32 (dequantized; no fp16 on CPU)", "int8": "fp32 (dequantized on load)"}.get(row, "fp32")
    return model.to(device), "fp32", None, label, notes


def latencies(models: dict, tasks: list[int], env_counts: list[int], repeats: int, device: torch.device) -> dict:
    """Median wall and process-CPU ms of one BatchedPlanner.act per row and env count. Rows are
    interleaved per repeat so that load from other processes hits every row alike; CPU time
    is the figure least disturbed by a shared machine."""
    out = {row: {"wall": {}, "cpu": {}} for row in models}
    for E in env_counts:
        g = torch.Generator().manual_seed(E)
        obs = torch.randn(E, models["fp32"][0].cfg.obs_dim, generator=g)
        task = torch.tensor([tasks[i % len(tasks)] for i in range(E)])
        planners = {row: BatchedPlanner(m, precision=p) for row, (m, p) in models.items()}
        times = {row: [] for row in models}
        cpu = {row: [] for row in models}
        for r in range(repeats + 1):
            for row, planner in planners.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                tic, ctic = time.perf_counter(), time.process_time()
                planner.act(obs, task, torch.full((E,), r == 0))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if r > 0:  # the first call warms up
                    times[row].append(1e3 * (time.perf_counter() - tic))
                    cpu[row].append(1e3 * (time.process_time() - ctic))
        for row in models:
            out[row]["wall"][E], out[row]["cpu"][E] = statistics.median(times[row]), statistics.median(cpu[row])
    return out


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].float().cpu(), sb[k].float().cpu()) for k in sa)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--tasks", default="reacher-easy,reacher-hard,cartpole-balance,pendulum-swingup,finger-turn-easy")
    p.add_argument("--episodes", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)} (fp32 is always in)")
    p.add_argument("--eval-rows", default=None, help="rows to evaluate (default: all rows); 'none' skips scores")
    p.add_argument("--short-rows", default="", help="rows evaluated on --short-tasks x --short-episodes "
                   "instead (e.g. paper-int8,paper-mixed when time is short)")
    p.add_argument("--short-tasks", default=None, help="task subset for --short-rows (default --tasks)")
    p.add_argument("--short-episodes", type=int, default=None, help="episodes for --short-rows (default --episodes)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice; 1 is "
                   "much faster on a CPU shared with other jobs)")
    p.add_argument("--latency-envs", default="1,8")
    p.add_argument("--latency-repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=256, help="fixed batch for output errors")
    p.add_argument("--no-reuse", action="store_true",
                   help="evaluate a row even when its weights and compute equal fp32's (default: reuse the result)")
    p.add_argument("--workdir", default=None, help="keep the quantized files and partial_results.json here "
                   "(default: a temp folder)")
    p.add_argument("--resume", default=None, help="a partial_results.json of an interrupted run of the same "
                   "checkpoint and seed: rows it evaluated on the same tasks/episodes are not evaluated again")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.exit(2, "error: --device cuda was requested but no CUDA GPU is available\n")
    rows = ["fp32"] + [r for r in args.rows.split(",") if r and r != "fp32"]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        p.exit(2, f"error: unknown rows {bad}; valid rows are {', '.join(ROWS)}\n")
    if "int8-dyn" in rows and (device.type != "cpu" or not int8_dynamic_available()):
        rows.remove("int8-dyn")  # int8 matmuls are a CPU path
    eval_rows = rows if args.eval_rows is None else [r for r in args.eval_rows.split(",") if r in rows]
    try:
        ref = load_checkpoint(args.checkpoint)
        task_set = get_task_set(ref.cfg.task_set or "mt30")
        tasks = task_set.resolve(args.tasks)
        short_tasks = task_set.resolve(args.short_tasks) if args.short_tasks else tasks
    except (CheckpointError, ValueError) as e:
        p.exit(2, f"error: {e}\n")
    sha = file_sha256(args.checkpoint)
    run_key = {"checkpoint_sha256": sha, "seed": args.seed, "protocol": "clean"}
    resumed = {}
    if args.resume:
        try:
            saved = json.loads(Path(args.resume).read_text())
        except (OSError, json.JSONDecodeError) as e:
            p.exit(2, f"error: --resume {args.resume} is not a readable partial_results.json ({e}); "
                      "pass the file an interrupted run wrote to its --workdir\n")
        saved_key = {k: saved.get(k) for k in run_key}
        if saved_key != run_key or "results" not in saved:
            p.exit(2, f"error: --resume {args.resume} is from another checkpoint or seed ({saved_key}); "
                      "rerun without --resume\n")
        resumed = saved["results"]
    short_episodes = args.short_episodes or args.episodes
    short_rows = [r for r in args.short_rows.split(",") if r]
    tmp = tempfile.TemporaryDirectory() if args.workdir is None else None
    workdir = Path(args.workdir or tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)

    log(f"writing files to {workdir}")
    files = write_files(ref, workdir)
    fp32_bytes = os.path.getsize(files["fp32"])
    ref_dev = ref.to(device)
    batch = fixed_batch(ref, args.batch, seed=0)
    prepared, results = {}, {}
    for row in rows:
        model, precision, dtype, label, notes = prepare(row, files[row], device)
        prepared[row] = (model, precision)
        nbytes = os.path.getsize(files[row])
        results[row] = {"row": row, "file_bytes": nbytes, "ratio_to_fp32": nbytes / fp32_bytes, "compute": label,
                        "planner_precision": precision, "errors": output_errors(ref_dev, model, batch, dtype),
                        "warnings": notes}
    log("measuring planning latency")
    task_ids = [task_set.index(t) for t in tasks]
    env_counts = [int(e) for e in args.latency_envs.split(",") if e]
    lat = latencies(prepared, task_ids, env_counts, args.latency_repeats, device)
    for row in rows:
        results[row]["plan_ms"] = lat[row]
        results[row]["plan_ratio_to_fp32"] = {kind: {E: lat[row][kind][E] / lat["fp32"][kind][E] for E in env_counts}
                                              for kind in ("wall", "cpu")}

    for row in eval_rows:
        short = row in short_rows
        row_tasks, episodes = (short_tasks, short_episodes) if short else (tasks, args.episodes)
        model, precision = prepared[row]
        reuse = (not args.no_reuse and row != "fp32" and precision == "fp32" and row != "int8-dyn"
                 and row_tasks == tasks and episodes == args.episodes and "score" in results["fp32"]
                 and same_weights(model, ref))
        old = resumed.get(row, {})
        if "eval" in old and old["eval_tasks"] == row_tasks and old["eval_episodes"] == episodes:
            res = dict(old["eval"], resumed_from=str(args.resume))
            log(f"{row}: score taken from {args.resume} (same checkpoint, seed, tasks and episodes)")
        elif reuse:
            res = dict(results["fp32"]["eval"], reused_from="fp32 (bit-identical weights, same fp32 compute)")
            log(f"{row}: weights bit-identical to fp32 and same compute -> fp32 result reused")
        else:
            log(f"{row}: evaluating {len(row_tasks)} tasks x {episodes} episodes")
            cfg = EvalConfig(tasks=",".join(row_tasks), episodes=episodes, seed=args.seed, protocol="clean",
                             device=str(device), precision=precision)
            r = evaluate(model, cfg, progress=False)
            res = {"normalized_score": r["normalized_score"], "wall_s": r["timing"]["wall_s"],
                   "tasks": {t: {"mean": v["mean"], "returns": v["returns"]} for t, v in r["tasks"].items()}}
            log(f"{row}: score {res['normalized_score']:.2f} in {res['wall_s']:.0f} s")
        rets = [x for v in res["tasks"].values() for x in v["returns"]]
        res["mean_return"] = sum(rets) / len(rets)
        results[row]["eval"], results[row]["score"] = res, res["normalized_score"]
        results[row]["eval_tasks"], results[row]["eval_episodes"] = row_tasks, episodes
        ref_eval = results["fp32"].get("eval")
        if ref_eval and all(t in ref_eval["tasks"] for t in row_tasks) and episodes <= results["fp32"]["eval_episodes"]:
            # fp32 mean return over the same (task, episode) pairs: same seeds, same initial states
            ref_rets = [x for t in row_tasks for x in ref_eval["tasks"][t]["returns"][:episodes]]
            ref_mean = sum(ref_rets) / len(ref_rets)
            results[row]["return_ratio_to_fp32"] = res["mean_return"] / ref_mean if ref_mean else None
        (workdir / "partial_results.json").write_text(json.dumps(dict(run_key, results=results), default=str,
                                                                 indent=1))

    print_table(results, rows, env_counts, fp32_bytes, tasks, args)
    if tmp is not None:
        tmp.cleanup()
    summary = {"checkpoint": str(args.checkpoint), "sha256": sha, "device": str(device),
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "fp32_reference": "our save_checkpoint of the fp32 model (online + target Qs)",
               "fp32_bytes": fp32_bytes, "tasks": tasks, "episodes": args.episodes, "seed": args.seed,
               "protocol": "clean", "error_batch": {"size": args.batch, "seed": 0, "inputs": "obs~N(0,1) on task dims, 0 padding"},
               "short_rows": short_rows, "short_tasks": short_tasks, "short_episodes": short_episodes,
               "rows": [results[r] for r in rows]}
    print(json.dumps(summary, default=str))
    return summary


def print_table(results, rows, env_counts, fp32_bytes, tasks, args) -> None:
    print(f"checkpoint {args.checkpoint}; fp32 reference = our save_checkpoint incl. target Qs, {fp32_bytes} bytes")
    print(f"output errors: |x - x_fp32| max/mean on a fixed batch of {args.batch} (obs ~ N(0,1) on each task's "
          f"dims, zero padding); heads fed the fp32 latent; reward, Q (all members) decoded to real units; "
          f"pi = tanh(mean) action")
    print("plan: median of one BatchedPlanner.act (512 samples, 6 iterations), rows interleaved; "
          "(x cpu) = process CPU time relative to fp32")
    print(f"score: evaluator's batched path, clean protocol, seed {args.seed}, tasks {','.join(tasks)}, "
          f"{args.episodes} episodes each; torch threads {torch.get_num_threads()}")
    if args.short_rows:
        print(f"  rows {args.short_rows}: {args.short_episodes or args.episodes} episode(s) of "
              f"{args.short_tasks or 'the same tasks'}; their %fp32 ret compares with fp32 on the same "
              f"(task, episode) pairs")
    lat_hdr = "".join(f"{f'plan {E}env wall/cpu ms (x cpu)':>31}" for E in env_counts)
    err_hdr = "".join(f"{h + ' max/mean':>20}" for h in HEADS)
    print(f"{'row':<12}{'file bytes':>11}{'%fp32':>8}{err_hdr}{lat_hdr}{'score':>7}{'mean ret':>10}{'%fp32 ret':>10}"
          f"  compute")
    for row in rows:
        r = results[row]
        errs = "".join(f"{r['errors'][h]['max']:>10.2e}/{r['errors'][h]['mean']:<9.1e}" for h in HEADS)
        lats = "".join(f"{r['plan_ms']['wall'][E]:>16.0f}/{r['plan_ms']['cpu'][E]:<6.0f}"
                       f"({r['plan_ratio_to_fp32']['cpu'][E]:4.2f}) " for E in env_counts)
        score = f"{r['score']:>7.2f}{r['eval']['mean_return']:>10.1f}" if "score" in r else f"{'-':>7}{'-':>10}"
        ratio = f"{100 * r['return_ratio_to_fp32']:>9.1f}%" if r.get("return_ratio_to_fp32") else f"{'-':>10}"
        print(f"{row:<12}{r['file_bytes']:>11}{100 * r['ratio_to_fp32']:>7.2f}%{errs}{lats}{score}{ratio}  "
              f"{r['compute']}")
    print("per-task mean returns:")
    for row in rows:
        if "eval" in results[row]:
            per = ", ".join(f"{t} {v['mean']:.1f}" for t, v in results[row]["eval"]["tasks"].items())
            ev = results[row]["eval"]
            extra = "".join(f"  [{k.replace('_', ' ')} {ev[k]}]" for k in ("reused_from", "resumed_from") if k in ev)
            print(f"  {row:<12}{per}{extra}")
    for row in rows:
        for note in results[row]["warnings"]:
            print(f"  note ({row}): {note}")


if __name__ == "__main__":
    main()
