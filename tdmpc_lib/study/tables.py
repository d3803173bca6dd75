"""Small tables (pandas DataFrames) the notebooks show and save."""
from __future__ import annotations

import dataclasses

import pandas as pd

from . import paper
from .profiles import Profile
from .results import Study


def component_table(model) -> pd.DataFrame:
    """Parameters per component of a world model, with shares; the target Qs are not trained
    and not counted (as TD-MPC2 reports model size)."""
    comp = model.component_params()
    total = model.total_params
    df = pd.DataFrame({"component": list(comp), "parameters": list(comp.values())})
    df["share"] = (df["parameters"] / total).map(lambda x: f"{100 * x:.1f}%")
    total_row = pd.DataFrame({"component": ["total (trainable)"], "parameters": [total], "share": ["100.0%"]})
    return pd.concat([df, total_row], ignore_index=True).set_index("component")


def config_table(cfg) -> pd.DataFrame:
    """A dataclass config (nested ones flattened as 'distill.d_coef') as a two-column table."""
    def flat(obj, prefix=""):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                yield from flat(v, f"{prefix}{f.name}.")
            elif not isinstance(v, (list, tuple)) or len(v) <= 8:
                yield prefix + f.name, v
    return pd.DataFrame(list(flat(cfg)), columns=["field", "value"]).set_index("field")


def task_table(result: dict) -> pd.DataFrame:
    """Per-task returns of an `evaluate` result: mean, score, and every episode's return."""
    rows = [{"task": t, "mean return": v["mean"], "score": v["score"],
             "returns": ", ".join(f"{r:.1f}" for r in v["returns"])} for t, v in result["tasks"].items()]
    return pd.DataFrame(rows).set_index("task")


def table1(study: Study, profile: Profile) -> pd.DataFrame:
    """The paper's Table 1 layout: one row per setting, our score (mean +- sd over seeds, the
    sweep's length and the default teacher) beside the paper's."""
    r = study.runs
    rows = []

    def ours(sel: pd.DataFrame) -> tuple[str, int]:
        sel = sel.drop_duplicates("run_dir")["normalized_score"].dropna()
        if not len(sel):
            return "-", 0
        return (f"{sel.mean():.2f}" + (f" +- {sel.std():.2f}" if len(sel) > 1 else "")), len(sel)

    base = r[(r["steps"] == profile.train.steps) & r["default_teacher"].astype(bool)] if len(r) else r
    for mode, name in (("linear-frozen", "reward + next-state latent, frozen linear projection"),
                       ("linear", "reward + next-state latent, trained linear projection"),
                       ("pca", "reward + next-state latent, PCA")):
        sel = base[base["latent"] == mode] if len(base) else base
        score, n = ours(sel) if len(sel) else ("-", 0)
        rows.append({"setting": name, "ours": score, "runs": n, "paper": paper.TABLE1_LATENT.get(mode)})
    d_values = sorted(set(profile.sweep.d_coefs) | set(paper.TABLE1_DCOEF))
    for d in d_values:
        sel = base[(base["latent"] == "none") & (base["d_coef"] == d)] if len(base) else base
        score, n = ours(sel) if len(sel) else ("-", 0)
        name = "no distillation (baseline)" if d == 0 else f"d_coef {d:g}"
        rows.append({"setting": name, "ours": score, "runs": n, "paper": paper.TABLE1_DCOEF.get(d)})
    df = pd.DataFrame(rows).set_index("setting")
    df["paper"] = df["paper"].map(lambda x: "-" if x is None or pd.isna(x) else f"{x:.2f}")
    return df
