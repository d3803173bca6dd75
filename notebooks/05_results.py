# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Results: the study's figures beside the paper's numbers
#
# **What.** Read every run's files (each execution's `result.json`, each training run's
# `metrics.csv` and `eval.csv`, the quantization table; never notebook JSON) and draw the figures
# into the figures folder (`figures/` for `mini`):
# score vs `d_coef` beside the paper's Table 1, score vs updates (distilled vs scratch) beside the
# paper's curve, teacher size, the latent ablation, the quantization trade-off, and per-task scores.
#
# **Why.** One place to compare the runs of notebooks 01, 02 and 04 with each other and with the paper.
#
# **How to read it.** In every figure that reproduces one of the paper's, the left panel is ours and
# the right panel the paper's; the transfer figure shows each arm planning with MPPI, then acting
# with its policy prior alone, then its value calibration. The title names the profile; a
# footnote says when the numbers come from a small CPU profile rather than the paper's setting
# (317M teacher, all of MT30, 200K-1M updates of batch 256, MPPI evaluation on 30 tasks x 10
# episodes). At `mini` scale the differences between runs are mostly evaluation noise: read the
# shapes, not the decimals.

# %% tags=["parameters"]
profile = "mini"   # smoke | mini | mini-takeover | paper
member = None      # (05 has no sweep members)
overrides = {}     # dotted profile fields, e.g. {"figures_dir": "my-figures"}
study_dir = None   # the study's folder (None: runs/<profile>)

# %%
from tdmpc_lib import study

run = study.setup("05_results", globals())
run

# %%
from pathlib import Path

from tdmpc_lib.study import results

figures = Path(run.profile.figures_dir) if run.profile.figures_dir else run.study_dir / "figures"
st = results.load_study(run.study_dir)
if st.teachers.empty and st.runs.empty:  # e.g. a fresh clone: nothing to draw yet
    raise study.ParameterError(f"{run.study_dir} holds no results of profile {run.profile.name!r} yet: run the "
                               f"study first (bash scripts/study.sh, or the notebooks 01, 02 and 04), or set study_dir")
print(st.summary())
print(f"figures go to {figures}")

# %% [markdown]
# ## Every arm with confidence intervals
# The interquartile mean (IQM) and the mean of the normalized score, each with a 95%
# stratified-bootstrap confidence interval (rliable; tasks are the strata, runs are resampled
# within each task). A run is one (training seed, evaluation episode) pair: a student arm has
# seeds x episodes runs per task; the teacher (the ceiling) and a uniform random policy (the floor)
# have the evaluation's episodes. Non-overlapping intervals are a difference this study can
# resolve; overlapping ones are not.

# %%
from tdmpc_lib import stats

agg = st.aggregate(run.profile)
print(stats.format_aggregate(agg))
run.save_json("aggregate.json", agg)
stats.per_task_table(st.arms(run.profile)).round(1)

# %% [markdown]
# ## The mechanism: reward-prediction error on held-out episodes
# Mean over training seeds with a 95% bootstrap CI across seeds (scipy), for every student arm.

# %%
import pandas as pd

mech = {}
if len(st.runs) and st.runs["reward_mse_true"].notna().any():
    _r = st.runs[st.runs["default_teacher"].astype(bool) & (st.runs["steps"] == run.profile.train.steps)]
    for _arm, _g in _r.drop_duplicates("run_dir").groupby(_r.apply(results.arm_label, axis=1)):
        mech[_arm] = {k: stats.seed_ci(_g[f"reward_mse_{k}"].dropna().astype(float).values) for k in ("true", "teacher")}
    run.save_json("reward_error.json", mech)
pd.DataFrame({a: {f"MSE vs {k}": f"{v[k]['mean']:.4f} [{v[k]['ci'][0]:.4f}, {v[k]['ci'][1]:.4f}] (n={v[k]['n']})"
                  for k in v} for a, v in mech.items()}).T

# %% [markdown]
# ## The paper's Table 1 layout
# Ours: mean (+- standard deviation over seeds) of the sweep-length runs with the default teacher;
# `-` where this profile has no such run.

# %%
from tdmpc_lib.study import tables

table1 = tables.table1(st, run.profile)
table1.to_csv(run.path("table1.csv"))
table1

# %% [markdown]
# ## Teachers and students

# %%
st.teachers[["label", "params", "normalized_score"]] if len(st.teachers) else st.teachers

# %%
(st.runs.drop_duplicates("run_dir")[["member", "teacher", "d_coef", "latent", "seed", "steps",
                                     "normalized_score", "train_s"]].sort_values("member")
 if len(st.runs) else st.runs)

# %% [markdown]
# ## The figures

# %%
import matplotlib.pyplot as plt

from tdmpc_lib.study import plots

plots.theme()
paths = {}
for _name in plots.figures_for(run.profile):
    fig, paths[_name] = plots.DRAW[_name](st, run.profile, figures)
    plt.show()
    plt.close(fig)

# %%
_ = run.finish({"figures": {k: str(v) for k, v in paths.items()}, "table1": str(run.path("table1.csv")),
                "summary": st.summary(), "aggregate": agg, "reward_error": mech})
for _name, _path in paths.items():
    print(f"{_name:<16} {_path}")
