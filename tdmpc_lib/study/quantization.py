"""Notebook 04's measurements: one row per storage format of one model.

Rows: fp32 (our save_checkpoint), then the requested formats: fp16 / bf16 / int8 (our
`tdmpc_lib.quantize` files: casts, and symmetric per-channel int8) and paper-int8 /
paper-mixed (the TD-MPC-Opt release formats rebuilt from the same model with
`tdmpc_lib.export`: per-tensor qint8 with scale 1.0, for contrast).

Each row: file bytes and ratio to fp32, max / mean absolute output error of every head
against fp32 on a fixed batch, the median latency of one agent step (planner or policy prior,
as the evaluation acts) and every episode's return of the same evaluation as fp32.
"""
from __future__ import annotations

import os
import statistics
import time
import warnings
from pathlib import Path

import torch

HEADS = ("encoder", "dynamics", "reward", "Q", "pi")


def _load(fmt: str, path: Path):
    """-> (model, planner precision, error-batch dtype, how it computes, load warnings)."""
    from ..checkpoint import load_checkpoint
    from ..quantize import to_precision

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_checkpoint(path)
    notes = sorted({str(w.message).split("\n")[0] for w in caught if "TypedStorage" not in str(w.message)})
    if fmt == "bf16":
        return to_precision(model, "bf16"), "bf16", torch.bfloat16, "bf16 weights, bf16 compute", notes
    compute = {"fp32": "fp32", "fp16": "dequantized to fp32 on load", "int8": "dequantized to fp32 on load"}
    return model, "fp32", None, compute.get(fmt, "dequantized to fp32 on load"), notes


def _write(model, fmt: str, path: Path) -> int:
    from ..checkpoint import save_checkpoint
    from ..export import write_paper_checkpoint
    from ..quantize import save_quantized

    if fmt == "fp32":
        save_checkpoint(model, path)
        return os.path.getsize(path)
    if fmt.startswith("paper-"):
        return write_paper_checkpoint(model, path, fmt.split("-", 1)[1])
    return save_quantized(model, path, fmt)


def _latency_ms(model, precision: str, planner_cfg, envs: int, repeats: int, seed: int = 0) -> float:
    from ..planner import BatchedPlanner

    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(envs, model.cfg.obs_dim, generator=g)
    task = torch.arange(envs) % max(model.cfg.num_tasks, 1)
    planner = BatchedPlanner(model, planner_cfg, precision=precision)
    times = []
    for r in range(repeats + 1):
        tic = time.perf_counter()
        planner.act(obs, task, torch.full((envs,), r == 0))
        if r:  # the first call warms up
            times.append(1e3 * (time.perf_counter() - tic))
    return statistics.median(times)


def quantization_table(checkpoint: str, workdir: str | Path, *, profile, fp32_eval: str | Path | None = None,
                       log=print) -> list[dict]:
    """Write every format of `checkpoint` (profile.quant.formats) into `workdir` and measure it
    (see the module doc; batch size and timing from profile.quant, on profile.device).
    Every format is evaluated with the study's evaluation (`pipeline.evaluate_checkpoint`: the
    profile's tasks, episodes, protocol, policy and MPPI settings; every episode's return kept);
    the fp32 row evaluates `checkpoint` itself, reusing `fp32_eval` (e.g. the training run's
    final evaluation) when it holds the same evaluation."""
    import dataclasses

    from ..checkpoint import load_checkpoint
    from ..quantize import fixed_batch, output_errors
    from .pipeline import eval_config, evaluate_checkpoint

    q, device = profile.quant, profile.device
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ref = load_checkpoint(checkpoint)
    batch = fixed_batch(ref, q.error_batch, seed=0)
    planner_cfg = dataclasses.replace(profile.eval.planner, mpc=profile.eval.policy == "plan")
    rows = []
    fp32_bytes = None
    for fmt in ("fp32",) + tuple(f for f in q.formats if f != "fp32"):
        path = workdir / f"{fmt}.pt"
        nbytes = _write(ref, fmt, path)
        fp32_bytes = fp32_bytes or nbytes
        model, precision, dtype, compute, notes = _load(fmt, path)
        errors = output_errors(ref, model, batch, dtype)
        model = model.to(device)
        latency = _latency_ms(model, precision, planner_cfg, q.latency_envs, q.latency_repeats)
        if fmt == "fp32":  # the model as trained: the same evaluation as the run's own
            result = evaluate_checkpoint(profile, checkpoint, fp32_eval or workdir / "fp32_eval.json")
        else:
            cfg = dataclasses.replace(eval_config(profile), precision=precision)
            result = evaluate_checkpoint(profile, str(path), workdir / f"{fmt}_eval.json", cfg=cfg, model=model)
        row = {"format": fmt, "file": str(path), "file_bytes": nbytes, "size_ratio": nbytes / fp32_bytes,
               "compute": compute, "planner_precision": precision, "latency_ms": latency,
               "latency_envs": q.latency_envs, "normalized_score": result["normalized_score"],
               "task_scores": {t: v["score"] for t, v in result["tasks"].items()},
               "returns": {t: v["returns"] for t, v in result["tasks"].items()}, "notes": notes,
               **{f"err_{h}_max": errors[h]["max"] for h in HEADS},
               **{f"err_{h}_mean": errors[h]["mean"] for h in HEADS}}
        rows.append(row)
        log(f"{fmt:<12} {nbytes:>11,} bytes ({100 * row['size_ratio']:5.1f}% of fp32)  reward err max "
            f"{errors['reward']['max']:.2e}  step {latency:7.2f} ms  score {row['normalized_score']:.2f}")
    return rows


def write_table(rows: list[dict], csv_path: str | Path) -> None:
    """The table as CSV (one row per format; per-task scores left out: they are in the JSON)."""
    import csv

    cols = [k for k in rows[0] if k not in ("task_scores", "returns", "notes")]
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
