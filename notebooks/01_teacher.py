# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · The teacher
#
# **What.** Load a TD-MPC2 world model that will act as the *teacher*: a hub checkpoint
# (`mt30-317M`, the paper's teacher), a local file, or the profile's default. Under the `mini` and
# `smoke` profiles the default is a larger preset trained here on the profile's dataset (unless
# the profile's hub checkpoint is already in the local Hugging Face cache), so everything runs
# offline. The dataset is made here too, once, and shared by every later notebook.
#
# **Why.** Distillation can only pass on what the teacher knows: its architecture, its size and its
# score on the evaluation tasks are the ceiling the students are compared against.
#
# **How to read it.** The parameter table shows where each component's parameters go (the Q
# ensemble dominates the large presets). The per-task table and bar chart show the teacher's mean
# episode return per task; the *normalized score* is the mean over tasks of return / 10 (0-100).
#
# The configuration is the profile's (`runs/<profile>/profile.json` when the study runner wrote one)
# with `overrides` applied; the next cell lists every field that differs. A bad parameter stops the
# notebook there with a one-line message.

# %% tags=["parameters"]
profile = "mini"   # smoke | mini | mini-takeover | paper
member = None      # a sweep member (one per teacher: python -m tdmpc_lib.study --list); None: the profile's teacher
overrides = {}     # dotted profile fields, e.g. {"eval.episodes": 5, "eval.policy": "prior"}
study_dir = None   # the study's folder (None: runs/<profile>)

# %%
import os
os.environ.setdefault("MUJOCO_GL", "osmesa")  # offscreen MuJoCo rendering, before dm_control loads
from tdmpc_lib import study

run = study.setup("01_teacher", globals())
run

# %% [markdown]
# ## The dataset and the teacher
# The dataset is made once per study folder (synthetic for `smoke`; for `mini`, episodes the teacher
# collects in dm_control, from random to expert: its policy prior with growing action noise, random
# actions and MPPI; the public MT30 chunks for `paper`), and so are the held-out episodes that no
# student trains on. A teacher `train:SIZE` is trained on the dataset once.

# %%
from tdmpc_lib.data import open_store
from tdmpc_lib.study import pipeline

teacher_info = pipeline.resolve_teacher(run.profile, run.study_dir, run.profile.train.distill.teacher)
print(f"teacher: {teacher_info.label}\n  source {teacher_info.source}, file {teacher_info.path}")
data_dir = pipeline.ensure_dataset(run.profile, run.study_dir)
print("training data:", open_store(data_dir).summary())
heldout_dir = pipeline.ensure_heldout(run.profile, run.study_dir)
print("held-out data:", open_store(heldout_dir).summary() if heldout_dir else "none in this profile")

# %% [markdown]
# ## Architecture and parameters per component

# %%
import tdmpc_lib
from tdmpc_lib.study import tables

model = tdmpc_lib.load_checkpoint(teacher_info.path, device=run.profile.device)
print(model)
tables.component_table(model)

# %% [markdown]
# ## The ceiling and the floor
# The teacher is evaluated exactly as the students will be (same tasks, initial states, protocol
# and MPPI settings); a uniform random policy on the same initial states is the floor. Every
# (task, episode) pair gets its own environment and all of them act in lockstep; episode *k*
# starts from the state the official sequential evaluation would see.

# %%
import dataclasses

from tdmpc_lib.evaluate import format_table

teacher_cfg = run.profile.teacher  # its episodes per task and planning precision
eval_cfg = dataclasses.replace(pipeline.eval_config(run.profile), episodes=teacher_cfg.episodes,
                               precision=teacher_cfg.precision)
result = pipeline.evaluate_checkpoint(run.profile, teacher_info.path, run.path("eval.json"), model=model, cfg=eval_cfg)
print(format_table(result))
# The policy prior alone as well, when the study plans: the reference for the students' priors.
prior = (pipeline.evaluate_checkpoint(run.profile, teacher_info.path, run.path("prior_eval.json"), model=model,
                                      cfg=dataclasses.replace(eval_cfg, policy="prior"))
         if eval_cfg.policy == "plan" else None)
if prior:
    print(f"its policy prior alone: normalized score {prior['normalized_score']:.2f}")
floor = pipeline.random_floor(run.profile, run.path("floor.json"))
print(f"random policy (floor): normalized score {floor['normalized_score']:.2f}")
teacher_err = pipeline.heldout_reward_error(run.profile, run.study_dir, teacher_info.path,
                                            run.path("heldout_reward_error.json"))
if teacher_err:
    print(f"the teacher's reward head on {teacher_err['transitions']} held-out transitions: "
          f"MSE vs the true reward {teacher_err['mse_true']:.4f}")
# The students' diagnostics applied to the teacher itself: the reference they are read against.
teacher_diag = pipeline.heldout_diagnostics(run.profile, run.study_dir, teacher_info.path, run.path("diagnostics.json"))
if teacher_diag:
    print("the teacher's diagnostics on the held-out episodes:",
          {k: round(v, 3) for k, v in teacher_diag["mean"].items() if isinstance(v, float)})
tables.task_table(result)

# %%
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from tdmpc_lib.study import plots

plots.theme()
shown = {f"teacher ({eval_cfg.policy})": result, "teacher (prior only)": prior, "random (floor)": floor}
per_task = pd.concat([tables.task_table(r).reset_index().assign(policy=name) for name, r in shown.items() if r])
fig, ax = plt.subplots(figsize=(8, 0.5 * len(result["tasks"]) + 1.6))
sns.barplot(data=per_task, y="task", x="mean return", hue="policy", ax=ax)
ax.set_title(f"{teacher_info.label}: mean return per task (normalized score {result['normalized_score']:.2f}, "
             f"random {floor['normalized_score']:.2f})\n{run.profile.label()}", fontsize=10)
ax.set_xlabel(f"mean episode return ({eval_cfg.episodes} episode(s), protocol {eval_cfg.protocol})")
ax.set_ylabel("")
fig.tight_layout()
fig.savefig(run.path("teacher_returns.png"), dpi=110)
plt.show()

# %%
_ = run.finish({"teacher": vars(teacher_info), "total_params": model.total_params,
                "components": model.component_params(), "size": model.cfg.size,
                "normalized_score": result["normalized_score"], "eval_file": str(run.path("eval.json")),
                "task_scores": {t: v["score"] for t, v in result["tasks"].items()},
                "returns": {t: v["returns"] for t, v in result["tasks"].items()},
                "prior_returns": {t: v["returns"] for t, v in prior["tasks"].items()} if prior else None,
                "reward_error": teacher_err, "diagnostics": teacher_diag,
                "floor": {"normalized_score": floor["normalized_score"],
                          "returns": {t: v["returns"] for t, v in floor["tasks"].items()}},
                "eval": {k: result.get(k) for k in ("protocol", "policy", "seed", "episodes", "precision")}
                | {"planner": result["eval_config"]["planner"]}})
print(f"results written to {run.out}")
