# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · One distillation run
#
# **What.** Train a student world model offline with TD-MPC2's losses plus the paper's *reward
# distillation*: the MSE between the frozen teacher's and the student's predicted rewards, weighted
# by `d_coef` (the paper: 0.4 for 200K updates, 0.45 for 1M). `d_coef = 0` trains the same student
# from scratch, without a teacher: the baseline. Beyond the paper, `arm` picks what else the
# teacher passes on: its value (`value`: the student's Q regressed on the teacher's Q, weight
# `q_coef`), its policy prior (`policy`: the student's prior on the teacher's, weight `pi_coef`),
# or all three terms together (`all`).
#
# **Why.** The paper's claim is that a 1M student distilled from the 317M teacher beats the same
# student trained from scratch. The study runner executes this notebook once per sweep member
# (`d_coef` x `seed`, plus longer curve runs and other teachers); notebook 05 lays the members out
# like the paper's Table 1.
#
# **How to read it.** The loss panels show every term against updates (`distill_reward_loss` is the
# teacher term; the others are TD-MPC2's). The evaluation curve shows the normalized score during
# training; the per-task table the last evaluation. The run's folder keeps its checkpoint,
# `metrics.csv` / `metrics.jsonl` and `eval.csv`. An identical run (same configuration) is trained
# once and reused, and an interrupted one resumes from its last checkpoint.

# %% tags=["parameters"]
profile = "mini"      # smoke | mini | paper
study_dir = None      # the study's folder (None: runs/<profile>)
out = None            # this notebook's output folder (None: <study_dir>/02_distillation/<member>)
member = None         # sweep member name (set by the study runner)
teacher = None        # hub name (mt30-317M), checkpoint path, 'auto' or 'train:SIZE'
student_size = None   # student preset: 1, 5, 19, 48, 317 or 'tiny'
d_coef = None         # reward-distillation coefficient (0.0: from scratch, no teacher)
arm = None            # reward (the paper's) | value | policy | all (the last three: beyond the paper)
schedule = None       # constant | decrease | increase
batch_size = None
steps = None          # updates
seed = None
device = None         # cpu | cuda
threads = None        # torch CPU threads (0: torch's default)
eval_freq = None      # evaluate every N updates (None: the profile's number of evaluation points)

# %%
import os
os.environ.setdefault("MUJOCO_GL", "osmesa")  # offscreen MuJoCo rendering, before dm_control loads
from tdmpc_lib import study

run = study.setup("02_distillation", globals())
run

# %% [markdown]
# ## The run's configuration
# Everything the trainer receives: notebook parameters, then the profile (evaluation tasks,
# episodes, protocol), then TD-MPC2's defaults.

# %%
from tdmpc_lib.study import pipeline, tables

train_cfg, teacher_info = pipeline.student_config(
    run.profile, run.study_dir, teacher=run.p.teacher, d_coef=run.p.d_coef, schedule=run.p.schedule,
    student_size=run.p.student_size, batch_size=run.p.batch_size, steps=run.p.steps, seed=run.p.seed,
    device=run.p.device, threads=run.p.threads or 0, eval_freq=run.p.eval_freq, arm=run.p.arm)
print(f"teacher: {teacher_info.label if teacher_info else 'none (from scratch)'}")
print(f"run folder: {train_cfg.out}")
tables.config_table(train_cfg)

# %% [markdown]
# ## Training

# %%
import time

_tic = time.perf_counter()
record = pipeline.run_student(train_cfg, teacher_info, run.profile, run.study_dir)
print(f"{record['steps']} updates ({record['train_s']:.0f} s of training; this call took "
      f"{time.perf_counter() - _tic:.0f} s)\ncheckpoint: {record['checkpoint']}\nmetrics:    {record['metrics_csv']}")

# %% [markdown]
# ## Training curves: every loss term

# %%
import matplotlib.pyplot as plt

from tdmpc_lib.study import plots

plots.theme()
fig = plots.training_curves(record["metrics_csv"], f"{os.path.basename(train_cfg.out)}: losses\n{run.profile.label()}",
                            out=run.path("losses.png"))
plt.show()

# %% [markdown]
# ## Evaluation

# %%
import pandas as pd
import seaborn as sns

curve = pd.DataFrame(record["curve"])
fig, ax = plt.subplots(figsize=(6, 3.2))
if len(curve):
    sns.lineplot(data=curve, x="step", y="normalized_score", marker="o", ax=ax, color=plots.OURS)
ax.set_title(f"normalized score during training (d_coef {record['d_coef']:g}, seed {record['seed']})\n"
             f"{run.profile.label()}", fontsize=9)
ax.set_xlabel("updates")
fig.tight_layout()
fig.savefig(run.path("score_curve.png"), dpi=110)
plt.show()
ev = record["eval"]
print(f"final normalized score: {record['normalized_score']:.2f}  ({ev['episodes']} episode(s) per task, policy "
      f"{ev['policy']}, protocol {ev['protocol']}, seed {ev['seed']}; planner {ev['planner']})")
pd.DataFrame({"score": record["task_scores"], "returns": {t: ", ".join(f"{x:.0f}" for x in r)
                                                          for t, r in record["returns"].items()}})

# %% [markdown]
# ## The mechanism: the reward head on held-out episodes
# Reward distillation changes the student's reward head, and MPPI is where a reward head matters.
# This measures it directly, without planning: the mean squared error of the student's predicted
# reward (two-hot decoded, real units) against the environment's reward, and against the teacher's
# prediction, on every transition of the held-out episodes (collected with seeds no training
# episode uses).

# %%
err = record["reward_error"]
if err:
    print(f"held-out transitions: {err['transitions']}\n"
          f"MSE vs the true reward:    {err['mse_true']:.4f}\n"
          f"MSE vs the teacher's head: {err.get('mse_teacher', float('nan')):.4f}  (teacher: {err['teacher']})")
    display(pd.DataFrame(err["per_task"]).T)  # noqa: F821  (IPython)
else:
    print("this profile has no held-out episodes")

# %% [markdown]
# ## Diagnostics: does the student's value and prior make sense?
# On the first 100 steps of every held-out episode (`tdmpc_lib.diagnostics`): the student's Q
# against the discounted Monte-Carlo return of the episode (a Q far below it cannot rank plans;
# the teacher's Q, which values its own policy, may lie above it), Q's spread over 128 random
# actions (near 0: MPPI cannot tell actions apart), and how saturated its policy prior is (a mean
# at +-1 on most states: the prior proposes bang-bang actions).

# %%
diag = record["diagnostics"]
if diag:
    display(pd.DataFrame(diag["per_task"]).T[["q_mean", "mc_return_mean", "q_over_return", "q_action_std",  # noqa: F821
                                               "prior_saturated", "prior_log_std", "states"]])
else:
    print("this profile has no held-out episodes")

# %%
_ = run.finish({"run": record, "default_teacher": run.p.teacher == run.profile.teacher})
print(f"results written to {run.out}")
