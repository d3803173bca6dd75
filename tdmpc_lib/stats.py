"""Aggregate scores with confidence intervals, so that arms (teacher, students, quantized
models) are compared by more than a single mean.

A study arm is evaluated on a set of tasks with a few seeds and episodes; each (seed, episode)
pair is one "run". Following Agarwal et al. 2021 ("Deep RL at the Edge of the Statistical
Precipice", the rliable library) the returns become a (num_runs, num_tasks) matrix of task
scores (MT30 convention: a DMControl return in [0, 1000] is a score in [0, 100]), summarized
by the interquartile mean (IQM, robust to outlier runs) and the mean, each with a stratified
bootstrap confidence interval (runs are resampled within each task). Metrics that need no
planning, measured once per seed (e.g. reward-prediction error), get a plain percentile
bootstrap over seeds from `seed_ci`.

rliable draws its resamples from numpy's global RNG (its `random_state` argument is not used
for the draws), so `aggregate` seeds that RNG and restores the caller's state afterwards.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats
from rliable import library as rly
from rliable import metrics

SCORE_SCALE = 10.0  # return / 10 = score: DMControl returns in [0, 1000], scores in [0, 100]


def score_matrix(returns: dict[str, list[float] | np.ndarray], tasks: list[str]) -> np.ndarray:
    """Task scores of shape (num_runs, num_tasks), column j from `returns[tasks[j]]` (one
    episode return per run, shape (num_runs,), the same runs for every task) divided by 10."""
    missing = [t for t in tasks if t not in returns]
    if missing:
        raise ValueError(f"No returns for task(s) {', '.join(missing)}.")
    lengths = {t: len(returns[t]) for t in tasks}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"Tasks have different numbers of runs ({lengths}); every task needs the same runs.")
    columns = [np.asarray(returns[t], dtype=np.float64) for t in tasks]
    return np.stack(columns, axis=1) / SCORE_SCALE


def _iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    """(num_runs, num_tasks) scores -> array [IQM, mean], shape (2,)."""
    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])


def aggregate(score_matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0,
              confidence: float = 0.95) -> dict[str, dict]:
    """IQM and mean of each arm's (num_runs, num_tasks) score matrix, with stratified
    bootstrap confidence intervals (`reps` resamples, coverage `confidence`).

    Returns {arm: {"iqm", "iqm_ci": [lo, hi], "mean", "mean_ci": [lo, hi], "runs", "tasks"}}
    with plain Python numbers. Deterministic for a given `seed`; numpy's global RNG state is
    the same after the call as before it. An arm with one run gets a zero-width CI."""
    out: dict[str, dict] = {}
    saved = np.random.get_state()
    try:
        for arm, scores in score_matrices.items():
            scores = np.asarray(scores, dtype=np.float64)
            if scores.ndim != 2 or scores.size == 0:
                raise ValueError(f"Arm {arm!r} needs a non-empty (runs, tasks) matrix, got shape {scores.shape}.")
            np.random.seed(seed)  # reseeded per arm: an arm's CI does not depend on the other arms
            point, ci = rly.get_interval_estimates({arm: scores}, _iqm_and_mean, reps=reps,
                                                   confidence_interval_size=confidence)
            (iqm, mean), ((iqm_lo, mean_lo), (iqm_hi, mean_hi)) = point[arm], ci[arm]
            out[arm] = {"iqm": float(iqm), "iqm_ci": [float(iqm_lo), float(iqm_hi)],
                        "mean": float(mean), "mean_ci": [float(mean_lo), float(mean_hi)],
                        "runs": int(scores.shape[0]), "tasks": int(scores.shape[1])}
    finally:
        np.random.set_state(saved)
    return out


def format_aggregate(agg: dict) -> str:
    """`aggregate`'s result as a fixed-width text table, one line per arm."""
    width = max([len("arm")] + [len(a) for a in agg])
    header = f"{'arm':<{width}}  {'IQM [95% CI]':<22}  {'mean [95% CI]':<22}  runs x tasks"
    lines = [header, "-" * len(header)]
    for arm, r in agg.items():
        iqm = f"{r['iqm']:6.2f} [{r['iqm_ci'][0]:6.2f}, {r['iqm_ci'][1]:6.2f}]"
        mean = f"{r['mean']:6.2f} [{r['mean_ci'][0]:6.2f}, {r['mean_ci'][1]:6.2f}]"
        lines.append(f"{arm:<{width}}  {iqm:<22}  {mean:<22}  {r['runs']} x {r['tasks']}")
    return "\n".join(lines)


def per_task_table(returns_by_arm: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """Mean episode return per task (rows, in first-seen order) and arm (columns), plus a last
    row "normalized score": the mean over tasks of mean return / 10 (NaN-skipping, so an arm
    not run on some task is averaged over the tasks it has)."""
    tasks: list[str] = []
    for by_task in returns_by_arm.values():
        tasks += [t for t in by_task if t not in tasks]
    df = pd.DataFrame({arm: [float(np.mean(by_task[t])) if t in by_task and len(by_task[t]) else np.nan
                             for t in tasks]
                       for arm, by_task in returns_by_arm.items()}, index=pd.Index(tasks, name="task"))
    df.loc["normalized score"] = df.mean(axis=0) / SCORE_SCALE
    return df


def seed_ci(values: list[float] | np.ndarray, reps: int = 2000, seed: int = 0,
            confidence: float = 0.95) -> dict:
    """Mean of a per-seed metric, shape (num_seeds,), with a percentile-bootstrap CI
    (scipy.stats.bootstrap, `reps` resamples, a Generator seeded by `seed`).

    Returns {"mean", "ci": [lo, hi], "n"}; one value or all values equal give CI [mean, mean]."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("seed_ci needs at least one value.")
    mean = float(x.mean())
    if x.size == 1 or np.ptp(x) == 0:  # scipy refuses n=1; degenerate data has no spread
        return {"mean": mean, "ci": [mean, mean], "n": int(x.size)}
    res = scipy.stats.bootstrap((x,), np.mean, n_resamples=reps, confidence_level=confidence,
                                method="percentile", rng=np.random.default_rng(seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo = hi = mean
    return {"mean": mean, "ci": [lo, hi], "n": int(x.size)}
