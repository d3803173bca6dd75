"""The study's figures (seaborn), each drawn from a `results.Study` (files only) with the
paper's numbers beside ours. Every figure names its profile in the title and, unless the
profile is the paper's setting, says in a footnote that its numbers come from a small CPU
profile and are not comparable with the paper's.

    figs = draw_all(load_study("runs/mini"), profile, "figures")   # {name: path}
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from . import paper
from .profiles import Profile
from .results import (LATENT_ORDER, PRIOR_ONLY, Study, arm_label, loss_columns, read_metrics,
                      transfer_label)

OURS, PAPER, SCRATCH = "#1f77b4", "#7f7f7f", "#d62728"


def theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)


def _done(fig, profile: Profile, title: str, out_dir, name: str, extra: str | None = None):
    """Title the figure with its profile, add a footnote with the profile's caveat (what the
    numbers can show) and an optional line above it, lay it out and save it as <out_dir>/<name>.png
    (out_dir None: not saved). Returns (fig, path or None)."""
    fig.suptitle(f"{title}\n{profile.label()}", fontsize=11)
    note = profile.caveat if profile.paper_setting else (
        "Ours: numbers from a small CPU profile, not the paper's setting. " + profile.caveat)
    lines = [extra] * bool(extra) + textwrap.wrap(note, 190)
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=6.5, color="dimgray", va="bottom")
    fig.tight_layout(rect=(0, (len(lines) * 6.5 * 1.3 + 6) / 72 / fig.get_figheight(), 1, 0.95))
    return fig, _save(fig, out_dir, name)


def _save(fig, out_dir, name: str) -> Path | None:
    if out_dir is None:
        return None
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _plain_axes(*axes) -> None:
    """No '1e-6 + 15.78' offsets on the y axis; updates on the x axis as 200K / 1M."""
    from matplotlib.ticker import ScalarFormatter
    for ax in axes:
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_scientific(False)
        ax.yaxis.set_major_formatter(fmt)


def _updates_axis(*axes) -> None:
    from matplotlib.ticker import FuncFormatter

    def f(x, _):
        return f"{x / 1e6:g}M" if abs(x) >= 1e6 else f"{x / 1e3:g}K" if abs(x) >= 1e3 else f"{x:g}"
    for ax in axes:
        ax.xaxis.set_major_formatter(FuncFormatter(f))


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this study yet", ha="center", va="center", transform=ax.transAxes,
            color="dimgray")
    ax.set_xticks([])
    ax.set_yticks([])


def _paper_bars(ax, values: dict, names: list[str], title: str) -> None:
    """The paper's scores as labelled bars."""
    ax.bar(names, list(values.values()), color=PAPER)
    ax.bar_label(ax.containers[0], fmt="%.2f", fontsize=8)
    ax.set(ylabel="MT30 normalized score")
    ax.set_title(title, fontsize=8)


def _ours_title(profile: Profile, extra: str = "") -> str:
    return f"ours ({profile.name}{', ' + extra if extra else ''})"


def _default_runs(study: Study) -> pd.DataFrame:
    r = study.runs
    if not len(r):
        return r
    return r[(r["latent"] == "none") & r["default_teacher"].astype(bool)]


TEACHER, FLOOR = "#2ca02c", "#8c564b"


def _ci_panel(ax, agg: dict, arms: list[str], names: list[str] | None = None, teacher: str = "teacher") -> bool:
    """IQM (filled circle) and mean (open square) of each arm (x labels: `names`, one per arm)
    with 95% stratified-bootstrap CIs; the arm `teacher` (ceiling) and the random policy (floor)
    as lines with CI bands. False when none of `arms` has results."""
    names = [n for a, n in zip(arms, names or arms) if a in agg]
    arms = [a for a in arms if a in agg]
    if not arms:
        return False
    for name, color in ((teacher, TEACHER), ("random", FLOOR)):
        if name in agg:
            g = agg[name]
            what = f"{name} (ceiling)" if name == teacher else "random policy (floor)"
            ax.axhline(g["iqm"], color=color, lw=1.2, ls="--", label=f"{what}: IQM {g['iqm']:.1f}")
            ax.axhspan(*g["iqm_ci"], color=color, alpha=0.12, lw=0)
    for i, a in enumerate(arms):
        g = agg[a]
        for dx, key, marker, face, label in ((-0.12, "iqm", "o", OURS, "IQM"), (0.12, "mean", "s", "white", "mean")):
            lo, hi = g[f"{key}_ci"]
            ax.errorbar(i + dx, g[key], yerr=[[g[key] - lo], [hi - g[key]]], fmt=marker, color=OURS, mfc=face,
                        capsize=3, ms=6, label=f"{label} [95% CI]" if i == 0 else None)
        ax.text(i, g["iqm_ci"][1], f"{g['iqm']:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(arms)), names)
    ax.set_xlim(-0.6, len(arms) - 0.4)
    ax.set_ylabel("normalized score (return / 10)")
    ax.legend(fontsize=7, loc="best")
    return True


def _arm_palette(arms: list[str]) -> dict:
    """The teacher (the reference) in green, scratch (the baseline) in grey, the other arms in the
    colour-blind palette without its green and grey."""
    cb = sns.color_palette("colorblind", 10)
    rest = iter([c for i, c in enumerate(cb) if i not in (2, 7)] * 2)
    return {a: {"teacher": TEACHER, "scratch": "#9e9e9e"}.get(a) or next(rest) for a in arms}


def _runs_note(agg: dict, arms: list[str]) -> str:
    a = next((x for x in arms if x in agg), None)
    return f"{agg[a]['runs']} runs (seeds x episodes) x {agg[a]['tasks']} tasks per arm" if a else ""


# ---------------------------------------------------------------------------- figures
def score_vs_dcoef(study: Study, profile: Profile, out_dir=None):
    """Score against d_coef (the sweep's length): IQM and mean with 95% CIs over seeds x
    episodes, the teacher and the random floor as references; the paper's Table 1 beside."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.4))
    agg = study.aggregate(profile)
    arms = ["scratch" if d == 0 else f"d_coef {d:g}" for d in sorted(profile.sweep.d_coefs)]
    if _ci_panel(ax, agg, arms):
        ax.set_xlabel("reward-distillation coefficient (d_coef 0 = from scratch, no teacher)")
        ax.set_title(_ours_title(profile, f"{profile.train.steps:,} updates, batch {profile.train.batch_size}, "
                                          f"{len(profile.sweep.seeds)} seed(s); {_runs_note(agg, arms)}"), fontsize=8)
    else:
        _empty(ax, "d_coef runs")
    d = pd.DataFrame({"d_coef": list(paper.TABLE1_DCOEF), "score": list(paper.TABLE1_DCOEF.values())})
    axp.plot(d["d_coef"], d["score"], "o-", color=PAPER)
    axp.axhline(paper.TABLE1_DCOEF[0.0], color=SCRATCH, ls="--", lw=1, label="no distillation")
    for x, y in zip(d["d_coef"], d["score"]):
        axp.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    axp.set_title(f"paper, Table 1 (317M teacher, batch 256, {paper.TABLE1_STEPS // 1000}K updates; "
                  f"one run each, no CI)", fontsize=8)
    _plain_axes(ax, axp)
    axp.set(xlabel="d_coef", ylabel="MT30 normalized score")
    axp.legend(fontsize=8)
    return _done(fig, profile, "Score against the distillation coefficient", out_dir, "score_vs_dcoef")


def score_vs_steps(study: Study, profile: Profile, out_dir=None):
    """Distilled (curve d_coef) vs from scratch against updates, from the runs' eval.csv."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.2))
    c = study.curves
    length = profile.sweep.curve_steps or profile.train.steps
    d_curve = profile.sweep.curve_d_coef
    if len(c):
        c = c[(c["steps_total"] == length) & (c["label"].isin([f"d_coef {d_curve:g}", "scratch"]))]
        c = c[c["run_dir"].isin(_default_runs(study)["run_dir"]) | (c["label"] == "scratch")]
    if len(c):
        sns.lineplot(data=c, x="step", y="normalized_score", hue="label", marker="o", ax=ax, errorbar="sd",
                     palette={f"d_coef {d_curve:g}": OURS, "scratch": SCRATCH})
        ax.set(xlabel="updates", ylabel="normalized score")
        ax.set_title(_ours_title(profile, f"batch {profile.train.batch_size}"), fontsize=9)
        ax.legend(title=None, fontsize=8)
    else:
        _empty(ax, "evaluation curves")
    axp.plot(paper.CURVE_STEPS, paper.CURVE_DISTILLED, "o-", color=PAPER, label="distilled (d_coef 0.45)")
    axp.plot(paper.CURVE_STEPS, paper.CURVE_SCRATCH, "s--", color=SCRATCH, alpha=0.7, label="from scratch")
    axp.set(xlabel="updates", ylabel="MT30 normalized score")
    axp.set_title("paper (317M teacher, batch 256; read off its figure, +-0.3)", fontsize=9)
    axp.legend(fontsize=8)
    _plain_axes(ax, axp)
    _updates_axis(ax, axp)
    return _done(fig, profile, "Score against training updates: distilled vs from scratch", out_dir, "score_vs_steps")


def teacher_size(study: Study, profile: Profile, out_dir=None):
    """Student score per teacher (same d_coef, seed, steps), the teachers' own scores beside."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.2))
    r = study.runs
    rows = []
    if len(r):
        r = r[(r["latent"] == "none") & (r["d_coef"] == profile.train.distill.d_coef) & (r["steps"] == profile.train.steps)
              & (r["seed"] == profile.sweep.seeds[0])].drop_duplicates("run_dir")
        t = study.teachers.drop_duplicates("spec").set_index("spec") if len(study.teachers) else pd.DataFrame()
        for _, row in r.iterrows():
            spec = row["teacher_spec"]
            known = len(t) and spec in t.index
            params = row["teacher_params"]
            if (params is None or pd.isna(params)) and known:
                params = t.loc[spec, "params"]
            params = None if params is None or pd.isna(params) else float(params)
            tscore = t.loc[spec, "normalized_score"] if known else np.nan
            name = f"{row['teacher']}\n({params / 1e6:.2f}M params)" if params else str(row["teacher"])
            rows.append({"teacher": name, "who": "student distilled from it", "score": row["normalized_score"],
                         "params": params or 0})
            rows.append({"teacher": name, "who": "the teacher itself", "score": tscore, "params": params or 0})
    df = pd.DataFrame(rows)
    if len(df) and df["score"].notna().any():
        df = df.sort_values("params")
        sns.barplot(data=df, x="teacher", y="score", hue="who", ax=ax, palette=[OURS, "#aec7e8"])
        ax.set(xlabel="", ylabel="normalized score", ylim=(0, 1.3 * max(1e-6, float(df["score"].max()))))
        ax.set_title(_ours_title(profile, f"d_coef {profile.train.distill.d_coef:g}, {profile.train.steps:,} updates"), fontsize=9)
        ax.legend(fontsize=8, title=None, ncol=2, loc="upper center")
    else:
        _empty(ax, "teacher comparison runs")
    _paper_bars(axp, paper.TEACHER_SIZE, list(paper.TEACHER_SIZE), "paper (1M student, d_coef 0.4, 200K updates)")
    axp.set(xlabel="teacher size", ylabel="student's MT30 normalized score")
    return _done(fig, profile, "Teacher size: the distilled student's score per teacher", out_dir, "teacher_size")


LATENT_NAMES = {"none": "reward only", "linear-frozen": "+ latent,\nfrozen linear",
                "linear": "+ latent,\ntrained linear", "pca": "+ latent,\nPCA"}


def latent_ablation(study: Study, profile: Profile, out_dir=None):
    """Reward-only vs reward + next-state latent (frozen / trained linear projection, PCA):
    IQM and mean with 95% CIs, teacher and floor as references; the paper's rows beside."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.4))
    agg = study.aggregate(profile)
    base = f"d_coef {profile.train.distill.d_coef:g}" if profile.train.distill.d_coef else "scratch"
    arms = [base if m == "none" else f"{base} + latent {m}" for m in LATENT_ORDER]
    if _ci_panel(ax, agg, arms, [LATENT_NAMES[m] for m in LATENT_ORDER]):
        pca = study.runs[study.runs["latent"] == "pca"]["pca_explained_variance"].dropna() if len(study.runs) else []
        extra = f"; PCA keeps {100 * float(np.mean(pca)):.0f}% of the variance" if len(pca) else ""
        ax.set_title(_ours_title(profile, f"d_coef {profile.train.distill.d_coef:g}, {profile.train.steps:,} updates, "
                                          f"{len(profile.sweep.seeds)} seed(s){extra}"), fontsize=8)
    else:
        _empty(ax, "latent ablation runs")
    _paper_bars(axp, paper.TABLE1_LATENT, [LATENT_NAMES[k] for k in paper.TABLE1_LATENT],
                "paper, Table 1 (latent rows confounded: TD-MPC2 loss gradients were zeroed)")
    return _done(fig, profile, "Latent distillation ablation", out_dir, "latent_ablation")


def quantization(study: Study, profile: Profile, out_dir=None):
    """Size, output error and latency per format (means over the distilled students' seeds), and
    the MPPI score with 95% CIs (fp32 = the students as trained); paper-int8 for contrast."""
    q = study.quant
    fig, axes = plt.subplots(1, 4, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
    if not len(q):
        for a in axes:
            _empty(a, "quantization table")
    else:
        formats = list(dict.fromkeys(q["format"]))
        means = q.groupby("format", sort=False)[["size_ratio", "err_reward_max", "latency_ms"]].mean().loc[formats]
        pal = dict(zip(formats, sns.color_palette("deep", len(formats))))
        panels = (("size_ratio", "file size (fraction of fp32)", False),
                  ("err_reward_max", "max |reward error| vs fp32", True),
                  ("latency_ms", f"one agent step (ms, {int(q['latency_envs'].iloc[0])} env)", False))
        for a, (col, title, log) in zip(axes, panels):
            vals = means[col].astype(float)
            if log:
                vals = vals.clip(lower=1e-9)
            sns.barplot(x=formats, y=vals.values, hue=formats, palette=pal, ax=a, legend=False)
            if log:
                a.set_yscale("log")
            a.set_title(title, fontsize=9)
            a.tick_params(axis="x", rotation=30, labelsize=8)
        axes[0].axhline(paper.FP16_BYTES / paper.FP32_BYTES_APPROX, color=PAPER, ls=":", lw=1,
                        label="paper's fp16 file / fp32")
        axes[0].legend(fontsize=7)
        agg = dict(study.aggregate(profile))
        default = f"d_coef {profile.train.distill.d_coef:g}"
        if default in agg:
            agg["fp32"] = agg[default]  # the fp32 row is the distilled students as trained
        if not _ci_panel(axes[3], agg, formats):
            _empty(axes[3], "quantized evaluations")
        axes[3].tick_params(axis="x", rotation=30, labelsize=8)
        axes[3].set_title(f"MPPI score ({_runs_note(agg, formats)})", fontsize=8)
    return _done(fig, profile, "Post-training quantization of the distilled student", out_dir, "quantization",
                 extra=paper.QUANT_NOTE)


def reward_error(study: Study, profile: Profile, out_dir=None):
    """The mechanism, without planning: each student's reward-prediction error on the held-out
    episodes against the true reward and against the teacher's reward head (mean over seeds,
    95% bootstrap CI across seeds)."""
    from .. import stats

    r = study.sweep_runs(profile)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    if len(r) and r["reward_mse_true"].notna().any():
        r = r.assign(arm=[arm_label(row) for _, row in r.iterrows()])
        r = r.assign(mode=[LATENT_ORDER.index(m) if m in LATENT_ORDER else len(LATENT_ORDER) for m in r["latent"]])
        order = list(dict.fromkeys(r.sort_values(["mode", "d_coef"])["arm"]))
        for ax, col, title in ((axes[0], "reward_mse_true", "vs the true reward"),
                               (axes[1], "reward_mse_teacher", "vs the teacher's reward head")):
            for i, arm in enumerate(order):
                vals = r.loc[r["arm"] == arm, col].dropna().astype(float).values
                if not len(vals):
                    continue
                ci = stats.seed_ci(vals)
                ax.errorbar(i, ci["mean"], yerr=[[ci["mean"] - ci["ci"][0]], [ci["ci"][1] - ci["mean"]]], fmt="o",
                            color=SCRATCH if arm == "scratch" else OURS, capsize=3)
                ax.plot([i] * len(vals), vals, ".", color="gray", alpha=0.6)
            ax.set_xticks(range(len(order)), [o.replace(" + ", "\n+ ") for o in order], fontsize=7, rotation=20)
            ax.set_title(f"held-out reward MSE {title}", fontsize=9)
            ax.set(ylabel="mean squared error (reward units)", ylim=(0, None))
        t = study.teachers
        teacher_err = t["teacher_reward_mse_true"].dropna() if len(t) and "teacher_reward_mse_true" in t else []
        if len(teacher_err):
            axes[0].axhline(float(teacher_err.iloc[0]), color=TEACHER, ls="--", lw=1, label="the teacher's own error")
            axes[0].legend(fontsize=7)
    else:
        for ax in axes:
            _empty(ax, "held-out reward errors")
    return _done(fig, profile, "What distillation transfers: the reward head on held-out episodes", out_dir,
                 "reward_error", extra="dots: one training seed each; markers: mean over seeds with a 95% bootstrap CI")


def task_heatmap(study: Study, profile: Profile, out_dir=None):
    """Per-task score (mean return / 10) of every arm: teacher, floor, students, quantized."""
    arms = study.arms(profile)
    fig, ax = plt.subplots(figsize=(11, 0.8 + 0.42 * max(4, len(arms))))
    if arms:
        table = pd.DataFrame({a: {t: float(np.mean(v)) / 10 for t, v in rets.items()} for a, rets in arms.items()}).T
        runs = {a: len(next(iter(rets.values()))) for a, rets in arms.items()}
        table.index = [f"{a} ({runs[a]} runs)" for a in table.index]
        sns.heatmap(table, annot=table.shape[1] <= 12, fmt=".1f", cmap="viridis", ax=ax, vmin=0, vmax=100,
                    cbar_kws={"label": "task score (mean return / 10)"}, annot_kws={"fontsize": 7})
        ax.set(xlabel="", ylabel="")
        ax.tick_params(axis="x", rotation=20, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
    else:
        _empty(ax, "per-task scores")
    return _done(fig, profile, f"Per-task scores (policy {profile.eval.policy}, protocol {profile.eval.protocol}; "
                               f"a run is one (training seed, episode) pair)", out_dir, "task_heatmap")


def training_curves(metrics_csv: str | Path, title: str = "", out: str | Path | None = None):
    """Each loss term of one run against updates (one panel per term)."""
    m = read_metrics(metrics_csv)
    cols = loss_columns(m) if len(m) else []
    n = max(1, len(cols))
    ncol = min(4, n)
    nrow = -(-n // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.5 * nrow), squeeze=False)
    for a, col in zip(axes.flat, cols):
        sns.lineplot(x=m["step"], y=m[col], ax=a, color=OURS)
        a.set_title(col, fontsize=9)
        a.set(xlabel="update", ylabel="")
    for a in list(axes.flat)[len(cols):]:
        a.axis("off")
    if not cols:
        _empty(axes.flat[0], "metrics")
    fig.suptitle(title or "training losses", fontsize=11)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=110)
    return fig


def transfer(study: Study, profile: Profile, out_dir=None):
    """Every transfer arm beside scratch and the paper's reward distillation: IQM and mean with
    95% CIs, the teacher and the random floor as references, planning with MPPI (left) and
    acting with the policy prior alone (middle, when the study plans); the diagnostics' Q/return
    of each arm, mean over tasks and seeds (right)."""
    fig, (ax, axq, axd) = plt.subplots(1, 3, figsize=(17, 4.6), gridspec_kw={"width_ratios": [3, 3, 2]})
    agg = study.aggregate(profile)
    arms = ["scratch", *[f"d_coef {d:g}" for d in sorted(profile.sweep.d_coefs) if d > 0],
            *[transfer_label(a, profile.train.distill.d_coef) for a in profile.sweep.arms]]
    names = [a.replace(" distill", "\ndistill").replace("+", "+\n") for a in arms]
    for panel, suffix, what in ((ax, "", f"policy {profile.eval.policy}"), (axq, PRIOR_ONLY, "policy prior alone")):
        shown = [a + suffix for a in arms]
        if _ci_panel(panel, agg, shown, names, teacher="teacher" + suffix):
            panel.set_title(_ours_title(profile, f"{what}, {profile.train.steps:,} updates, "
                                                 f"{len(profile.sweep.seeds)} seed(s); {_runs_note(agg, shown)}"),
                            fontsize=8)
        else:
            _empty(panel, f"transfer-arm runs ({what})")
    rows = _diagnostic_rows(study, profile)
    d = pd.DataFrame(rows)
    if len(d) and d["q_over_return"].notna().any():
        per_run = d.groupby(["arm", "run_dir"])["q_over_return"].mean().reset_index()
        order = [a for a in arms if a in set(per_run["arm"])]
        sns.pointplot(data=per_run, x="arm", y="q_over_return", order=order, errorbar=("ci", 95), color=OURS,
                      linestyle="none", capsize=0.15, ax=axd)
        axd.axhline(1.0, color="black", ls="--", lw=1)
        axd.set_xticks(range(len(order)), [a.replace(" distill", "\ndistill").replace("+", "+\n") for a in order],
                       fontsize=7)
        axd.set(xlabel="", ylabel="held-out Q / Monte-Carlo return")
        axd.set_title("value calibration (mean over tasks; 95% CI over seeds)", fontsize=8)
    else:
        _empty(axd, "diagnostics")
    _plain_axes(ax, axq, axd)
    return _done(fig, profile, "Knowledge transfer: reward (the paper), value and policy distillation", out_dir,
                 "transfer")


def _diagnostic_rows(study: Study, profile: Profile) -> list[dict]:
    """One row per (student run of the sweep's length with the default teacher, task) with the
    held-out diagnostics, the arm's label and the run folder; first the teacher's own rows."""
    rows = []

    def add(arm: str, run_dir: str, diag) -> None:  # diag: a diagnostics.json (None before it exists)
        for task, v in ((diag if isinstance(diag, dict) else {}).get("per_task") or {}).items():
            rows.append({"arm": arm, "task": task, "run_dir": run_dir, **{k: v.get(k) for k, _ in DIAGNOSTIC_PANELS}})

    teacher = study.own_teacher(profile)
    if teacher is not None:
        add("teacher", "teacher", teacher.get("diagnostics"))
    r = study.sweep_runs(profile)
    if not len(r) or "diagnostics" not in r:
        return rows
    for _, run in r[r["latent"] == "none"].iterrows():
        add(arm_label(run), run["run_dir"], run["diagnostics"])
    return rows


def diagnostics(study: Study, profile: Profile, out_dir=None):
    """The held-out diagnostics of every arm (diagnostics_figure), per task."""
    fig = diagnostics_figure(_diagnostic_rows(study, profile), f"Student diagnostics on held-out episodes\n"
                             f"{profile.label()}")
    return fig, _save(fig, out_dir, "diagnostics")


def episode_profile(study: Study, profile: Profile, out_dir=None):
    """Reward per agent step over each tenth of the evaluation episodes, one panel per task: the
    teacher and every student arm (Study.episode_profile), mean over seeds x episodes with 95%
    bootstrap bands. A student that loses its return late (a pole that falls after a while)
    looks different here from one that never earns it."""
    df = study.episode_profile(profile)
    tasks = list(dict.fromkeys(df["task"])) or ["(none)"]
    arms = list(dict.fromkeys(df["arm"]))
    cols = min(4, len(tasks))
    rows = -(-len(tasks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(11.0, 3.6 * cols + 1), 3.0 * rows + 1.4), squeeze=False)
    palette = _arm_palette(arms)
    for ax, task in zip(axes.flat, tasks):
        d = df[df["task"] == task]
        if not len(d):
            _empty(ax, "evaluation with per-tenth returns")
            continue
        sns.lineplot(data=d, x="step", y="reward", hue="arm", hue_order=arms, palette=palette,
                     errorbar=("ci", 95), n_boot=1000, seed=0, marker="o", ms=4, ax=ax)
        ax.set(title=task, xlabel="agent step (start of each tenth)", ylabel="mean reward per agent step")
        if ax is not axes.flat[0] and ax.get_legend() is not None:
            ax.get_legend().remove()
        elif ax.get_legend() is not None:
            ax.legend(fontsize=7, title=None)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    episodes = df.drop_duplicates(["arm", "file", "episode"]).groupby("arm", sort=False).size()
    extra = "episodes per arm and task (seeds x episodes): " + ", ".join(
        f"{a} {n}" for a, n in episodes.items()) if len(episodes) else None
    how = "MPPI" if profile.eval.policy == "plan" else "policy prior"
    return _done(fig, profile, f"Where along the episode the return is earned or lost ({how} evaluation)", out_dir,
                 "episode_profile", extra)


# Every figure, in the order 05 shows them.
DRAW = {f.__name__: f for f in (score_vs_dcoef, transfer, diagnostics, episode_profile, reward_error, latent_ablation,
                                quantization, task_heatmap, score_vs_steps, teacher_size)}
FIGURES = tuple(DRAW)


def figures_for(profile: Profile) -> tuple[str, ...]:
    """The figures a profile has results for: the score-against-updates figure only with curve
    runs longer than the sweep, the teacher-size figure only with teachers to compare."""
    skip = set()
    if profile.sweep.curve_steps in (0, profile.train.steps):
        skip.add("score_vs_steps")
    if not [t for t in profile.teacher.compare if t != profile.teacher.checkpoint]:
        skip.add("teacher_size")
    if not profile.sweep.arms:
        skip.add("transfer")
    return tuple(f for f in FIGURES if f not in skip)


DIAGNOSTIC_PANELS = (("q_over_return", "mean Q / mean Monte-Carlo return (1 = calibrated; no bar: the task's "
                                      "held-out returns are 0)"),
                     ("q_rank_vs_teacher", "Spearman correlation with the teacher's Q over 128 random actions "
                                          "(1 = ranks MPPI's candidates as the teacher does)"),
                     ("g_rank_vs_teacher", "the same for the planning value of 16 random action sequences (rewards "
                                          "along the model's own rollout, then Q: what MPPI compares)"),
                     ("q_action_std", "std of Q across random actions (0 = ignores the action)"),
                     ("prior_saturated", "fraction of prior mean dims with |tanh mu| > 0.95"),
                     ("prior_adv_teacher", "the teacher's advantage of the prior's mean action, in stds of its Q over "
                                          "random actions (0 = a random action)"),
                     ("plan_adv_teacher", "the teacher's advantage of the action the student's MPPI takes (same "
                                         "units: below the prior's = the planner discards the prior)"),
                     ("own_q_over_return", "on its own episodes: mean Q / mean Monte-Carlo return it then earns "
                                           "(above 1 = it thinks better of the states it drifts into than they are)"),
                     ("own_q_over_teacher", "on its own episodes: mean Q / the teacher's mean Q of the same "
                                            "states and actions"),
                     ("own_reward_bias", "on its own episodes: mean predicted - true reward per agent step "
                                         "(above 0 = its planner steers to reward it imagines)"))


# Ratios that can lie far above 1: drawn on a symmetric-log axis.
RATIO_PANELS = ("own_q_over_return", "own_q_over_teacher")
RATIO_TICKS = (0, 0.25, 0.5, 0.75, 1, 2, 5, 10, 20, 50, 100, 200, 500)


def diagnostics_figure(rows: list[dict], title: str, out: str | Path | None = None):
    """The student diagnostics (tdmpc_lib.diagnostics) of several arms, one panel per measure:
    bars per task, one colour per arm, error bars = the std over the arm's seeds (one row of
    `rows` per (arm, task, seed): {'arm', 'task', 'q_over_return', 'q_action_std',
    'prior_saturated'})."""
    theme()
    df = pd.DataFrame(rows)
    tasks = list(dict.fromkeys(df["task"])) if len(df) else []
    arms = list(dict.fromkeys(df["arm"])) if len(df) else []
    palette = _arm_palette(arms)
    fig, axes = plt.subplots(len(DIAGNOSTIC_PANELS), 1, sharex=True,
                             figsize=(max(7.0, 0.5 * len(tasks) * max(1, len(arms)) + 2), 3.1 * len(DIAGNOSTIC_PANELS)))
    for ax, (col, label) in zip(axes, DIAGNOSTIC_PANELS):
        d = df.dropna(subset=[col]) if col in df else df.iloc[0:0]
        if not len(d):
            _empty(ax, col)
            continue
        sns.barplot(data=d, x="task", y=col, hue="arm", order=tasks, hue_order=arms, palette=palette,
                    errorbar="sd", capsize=0.1, ax=ax)
        if col in ("q_over_return", "q_rank_vs_teacher", "g_rank_vs_teacher", *RATIO_PANELS):
            ax.axhline(1.0, color="black", ls="--", lw=1)
        elif col.endswith("_adv_teacher") or col == "own_reward_bias":
            ax.axhline(0.0, color="black", ls="--", lw=1)
        if col in RATIO_PANELS:  # a 9x overestimate on one task must not flatten the others' 0.8-2
            ax.set_yscale("symlog", linthresh=1.0, linscale=1.0)
            ax.set_ylim(bottom=min(0.0, float(d[col].min())))  # no empty negative decade below 0
            ax.yaxis.set_major_locator(mticker.FixedLocator(RATIO_TICKS))
            ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
            label += " [axis: linear to 1, log above]"
        ax.set_title(label, fontsize=9)
        ax.set(xlabel="", ylabel=col)
        if ax is axes[0]:  # one legend: the arms are the same in every panel
            ax.legend(fontsize=7, title=None, ncol=min(4, len(arms)), loc="best")
        elif ax.get_legend() is not None:
            ax.get_legend().remove()
    axes[-1].tick_params(axis="x", rotation=45, labelsize=7)
    for lab in axes[-1].get_xticklabels():
        lab.set_ha("right")
    fig.suptitle(f"{title}\nbars: mean over seeds; error bars: std over seeds", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 / fig.get_figheight()))  # room for the three-line title
    if out is not None:
        fig.savefig(out, dpi=110)
    return fig
