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
import numpy as np
import pandas as pd
import seaborn as sns

from . import paper
from .profiles import Profile
from .results import Study, loss_columns, read_metrics

OURS, PAPER, SCRATCH = "#1f77b4", "#7f7f7f", "#d62728"
FIGURES = ("score_vs_dcoef", "score_vs_steps", "teacher_size", "latent_ablation", "quantization", "task_heatmap")


def theme() -> None:
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)


def _label(fig, profile: Profile, title: str, extra: str | None = None) -> float:
    """Title with the profile; a footnote with its caveat (what the numbers can show), and an
    optional line above it. Returns the fraction of the figure height the footnote takes."""
    fig.suptitle(f"{title}\n{profile.label()}", fontsize=11)
    note = profile.caveat if profile.paper_setting else (
        "Ours: numbers from a small CPU profile, not the paper's setting. " + profile.caveat)
    lines = textwrap.wrap(note, 190)
    if extra:
        lines = [extra, *lines]
    fig.text(0.01, 0.005, "\n".join(lines), fontsize=6.5, color="dimgray", va="bottom")
    bottom = (len(lines) * 6.5 * 1.3 + 6) / 72 / fig.get_figheight()
    fig._footnote_bottom = bottom
    return bottom


def _finish(fig, out_dir: str | Path | None, name: str) -> Path | None:
    fig.tight_layout(rect=(0, getattr(fig, "_footnote_bottom", 0.07), 1, 0.95))
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


def _updates_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter

    def f(x, _):
        if abs(x) >= 1e6:
            return f"{x / 1e6:g}M"
        return f"{x / 1e3:g}K" if abs(x) >= 1e3 else f"{x:g}"
    ax.xaxis.set_major_formatter(FuncFormatter(f))


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this study yet", ha="center", va="center", transform=ax.transAxes,
            color="dimgray")
    ax.set_xticks([])
    ax.set_yticks([])


def _ours_title(profile: Profile, extra: str = "") -> str:
    return f"ours ({profile.name}{', ' + extra if extra else ''})"


def _default_runs(study: Study) -> pd.DataFrame:
    r = study.runs
    if not len(r):
        return r
    return r[(r["latent"] == "none") & r["default_teacher"].astype(bool)]


# ---------------------------------------------------------------------------- figures
def score_vs_dcoef(study: Study, profile: Profile, out_dir=None):
    """Score against d_coef (sweep length), seeds as points, mean as line; scratch dashed."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.2))
    r = _default_runs(study)
    r = r[r["steps"] == profile.steps] if len(r) else r
    if len(r) and r["normalized_score"].notna().any():
        sns.stripplot(data=r, x="d_coef", y="normalized_score", ax=ax, color=OURS, size=7, jitter=False,
                      native_scale=True)
        mean = r.groupby("d_coef")["normalized_score"].mean()
        ax.plot(mean.index, mean.values, color=OURS, lw=1.5, label="mean over seeds")
        if 0.0 in mean.index:
            ax.axhline(mean.loc[0.0], color=SCRATCH, ls="--", lw=1, label="from scratch (d_coef 0)")
        ax.legend(fontsize=8)
        ax.set_xlabel("d_coef (reward distillation coefficient)")
        ax.set_ylabel("normalized score")
        ax.set_title(_ours_title(profile, f"{profile.steps:,} updates, batch {profile.batch_size}, "
                                          f"{len(profile.seeds)} seed(s)"), fontsize=9)
    else:
        _empty(ax, "d_coef runs")
    d = pd.DataFrame({"d_coef": list(paper.TABLE1_DCOEF), "score": list(paper.TABLE1_DCOEF.values())})
    axp.plot(d["d_coef"], d["score"], "o-", color=PAPER)
    axp.axhline(paper.TABLE1_DCOEF[0.0], color=SCRATCH, ls="--", lw=1, label="no distillation")
    for x, y in zip(d["d_coef"], d["score"]):
        axp.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    axp.set_title(f"paper, Table 1 (317M teacher, batch 256, {paper.TABLE1_STEPS // 1000}K updates)", fontsize=9)
    _plain_axes(ax, axp)
    axp.set_xlabel("d_coef")
    axp.set_ylabel("MT30 normalized score")
    axp.legend(fontsize=8)
    _label(fig, profile, "Score against the distillation coefficient")
    return fig, _finish(fig, out_dir, "score_vs_dcoef")


def score_vs_steps(study: Study, profile: Profile, out_dir=None):
    """Distilled (curve d_coef) vs from scratch against updates, from the runs' eval.csv."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.2))
    c = study.curves
    length = profile.curve_length
    d_curve = profile.curve_d_coef
    if len(c):
        c = c[(c["steps_total"] == length) & (c["label"].isin([f"d_coef {d_curve:g}", "scratch"]))]
        c = c[c["run_dir"].isin(_default_runs(study)["run_dir"]) | (c["label"] == "scratch")]
    if len(c):
        sns.lineplot(data=c, x="step", y="normalized_score", hue="label", marker="o", ax=ax, errorbar="sd",
                     palette={f"d_coef {d_curve:g}": OURS, "scratch": SCRATCH})
        ax.set_xlabel("updates")
        ax.set_ylabel("normalized score")
        ax.set_title(_ours_title(profile, f"batch {profile.batch_size}"), fontsize=9)
        ax.legend(title=None, fontsize=8)
    else:
        _empty(ax, "evaluation curves")
    axp.plot(paper.CURVE_STEPS, paper.CURVE_DISTILLED, "o-", color=PAPER, label="distilled (d_coef 0.45)")
    axp.plot(paper.CURVE_STEPS, paper.CURVE_SCRATCH, "s--", color=SCRATCH, alpha=0.7, label="from scratch")
    axp.set_xlabel("updates")
    axp.set_ylabel("MT30 normalized score")
    axp.set_title("paper (317M teacher, batch 256; read off its figure, +-0.3)", fontsize=9)
    axp.legend(fontsize=8)
    _plain_axes(ax, axp)
    _updates_axis(ax)
    _updates_axis(axp)
    _label(fig, profile, "Score against training updates: distilled vs from scratch")
    return fig, _finish(fig, out_dir, "score_vs_steps")


def teacher_size(study: Study, profile: Profile, out_dir=None):
    """Student score per teacher (same d_coef, seed, steps), the teachers' own scores beside."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.2))
    r = study.runs
    rows = []
    if len(r):
        r = r[(r["latent"] == "none") & (r["d_coef"] == profile.d_coef) & (r["steps"] == profile.steps)
              & (r["seed"] == profile.seeds[0])].drop_duplicates("run_dir")
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
        ax.set_xlabel("")
        ax.set_ylabel("normalized score")
        ax.set_ylim(0, 1.3 * max(1e-6, float(df["score"].max())))
        ax.set_title(_ours_title(profile, f"d_coef {profile.d_coef:g}, {profile.steps:,} updates"), fontsize=9)
        ax.legend(fontsize=8, title=None, ncol=2, loc="upper center")
    else:
        _empty(ax, "teacher comparison runs")
    axp.bar(list(paper.TEACHER_SIZE), list(paper.TEACHER_SIZE.values()), color=PAPER)
    for i, v in enumerate(paper.TEACHER_SIZE.values()):
        axp.text(i, v + 0.2, f"{v:.2f}", ha="center", fontsize=8)
    axp.set_xlabel("teacher size")
    axp.set_ylabel("student's MT30 normalized score")
    axp.set_title("paper (1M student, d_coef 0.4, 200K updates)", fontsize=9)
    _label(fig, profile, "Teacher size: the distilled student's score per teacher")
    return fig, _finish(fig, out_dir, "teacher_size")


LATENT_ORDER = ("none", "linear-frozen", "linear", "pca")
LATENT_NAMES = {"none": "reward only", "linear-frozen": "+ latent,\nfrozen linear",
                "linear": "+ latent,\ntrained linear", "pca": "+ latent,\nPCA"}


def latent_ablation(study: Study, profile: Profile, out_dir=None):
    """Reward-only vs reward + next-state latent (frozen / trained linear projection, PCA)."""
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(11, 4.2))
    r = study.runs
    if len(r):
        r = r[(r["notebook"] == "03_latent_ablation")].drop_duplicates("run_dir")
    if len(r) and r["normalized_score"].notna().any():
        r = r.assign(mode=pd.Categorical(r["latent"], LATENT_ORDER, ordered=True)).sort_values("mode")
        r = r.assign(name=r["latent"].map(LATENT_NAMES))
        sns.barplot(data=r, x="name", y="normalized_score", ax=ax, color=OURS, errorbar=None)
        ax.set_ylim(0, 1.4 * max(1e-6, float(r["normalized_score"].max())))  # room for the labels
        for i, (_, row) in enumerate(r.groupby("mode", observed=True).first().iterrows()):
            txt = f"{row['normalized_score']:.2f}"
            if row.get("pca_explained_variance") is not None and not pd.isna(row.get("pca_explained_variance")):
                txt += f"\nPCA keeps {100 * row['pca_explained_variance']:.0f}%\nof the variance"
            ax.text(i, row["normalized_score"], txt, ha="center", va="bottom", fontsize=7)
        ax.set_xlabel("")
        ax.set_ylabel("normalized score")
        ax.set_title(_ours_title(profile, f"d_coef {profile.d_coef:g}, {profile.steps:,} updates"), fontsize=9)
    else:
        _empty(ax, "latent ablation runs")
    names = [LATENT_NAMES[k] for k in paper.TABLE1_LATENT]
    axp.bar(names, list(paper.TABLE1_LATENT.values()), color=PAPER)
    for i, v in enumerate(paper.TABLE1_LATENT.values()):
        axp.text(i, v + 0.2, f"{v:.2f}", ha="center", fontsize=8)
    axp.set_ylabel("MT30 normalized score")
    axp.set_title("paper, Table 1 (latent rows confounded: TD-MPC2 loss gradients were zeroed)", fontsize=8)
    _label(fig, profile, "Latent distillation ablation")
    return fig, _finish(fig, out_dir, "latent_ablation")


def quantization(study: Study, profile: Profile, out_dir=None):
    """Size, output error, latency and score per format (paper-int8 for contrast)."""
    q = study.quant
    fig, axes = plt.subplots(1, 4, figsize=(14, 4))
    if not len(q):
        for a in axes:
            _empty(a, "quantization table")
    else:
        pal = dict(zip(q["format"], sns.color_palette("deep", len(q))))
        panels = (("size_ratio", "file size (fraction of fp32)", False),
                  ("err_reward_max", "max |reward error| vs fp32", True),
                  ("latency_ms", f"one agent step (ms, {int(q['latency_envs'].iloc[0])} env)", False),
                  ("normalized_score", "normalized score", False))
        for a, (col, title, log) in zip(axes, panels):
            vals = q[col].astype(float)
            if log:
                vals = vals.clip(lower=1e-9)
            sns.barplot(x=q["format"], y=vals, hue=q["format"], palette=pal, ax=a, legend=False)
            if log:
                a.set_yscale("log")
            a.set_title(title, fontsize=9)
            a.set_xlabel("")
            a.set_ylabel("")
            a.tick_params(axis="x", rotation=30, labelsize=8)
        axes[0].axhline(paper.FP16_BYTES / paper.FP32_BYTES_APPROX, color=PAPER, ls=":", lw=1,
                        label="paper's fp16 file / fp32")
        axes[0].legend(fontsize=7)
    _label(fig, profile, "Post-training quantization trade-off", extra=paper.QUANT_NOTE)
    return fig, _finish(fig, out_dir, "quantization")


def task_heatmap(study: Study, profile: Profile, out_dir=None):
    """Per-task scores of the teachers and the default-teacher students."""
    ts = study.task_scores
    fig, ax = plt.subplots(figsize=(11, 0.5 + 0.45 * max(4, ts["model"].nunique() if len(ts) else 4)))
    if len(ts):
        table = ts.pivot_table(index="model", columns="task", values="score", aggfunc="mean")
        order = sorted(table.index, key=lambda m: (not m.startswith("teacher"), m))
        sns.heatmap(table.loc[order], annot=table.shape[1] <= 12, fmt=".1f", cmap="viridis", ax=ax,
                    cbar_kws={"label": "task score (return / 10)"}, annot_kws={"fontsize": 7})
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=40, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        for lab in ax.get_xticklabels():
            lab.set_ha("right")
    else:
        _empty(ax, "per-task scores")
    _label(fig, profile, f"Per-task scores ({profile.episodes} episode(s) per task, policy {profile.policy}, "
                         f"protocol {profile.protocol})")
    return fig, _finish(fig, out_dir, "task_heatmap")


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
        a.set_xlabel("update")
        a.set_ylabel("")
    for a in list(axes.flat)[len(cols):]:
        a.axis("off")
    if not cols:
        _empty(axes.flat[0], "metrics")
    fig.suptitle(title or "training losses", fontsize=11)
    fig.tight_layout()
    if out is not None:
        fig.savefig(out, dpi=110)
    return fig


DRAW = {"score_vs_dcoef": score_vs_dcoef, "score_vs_steps": score_vs_steps, "teacher_size": teacher_size,
        "latent_ablation": latent_ablation, "quantization": quantization, "task_heatmap": task_heatmap}


def draw_all(study: Study, profile: Profile, out_dir: str | Path, show: bool = False) -> dict[str, Path]:
    """Draw and save every figure; returns {name: png path}."""
    theme()
    paths = {}
    for name in FIGURES:
        fig, path = DRAW[name](study, profile, out_dir)
        paths[name] = path
        if show:
            plt.show()
        plt.close(fig)
    return paths
