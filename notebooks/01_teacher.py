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
# Parameters left at `None` take the profile's value (`runs/<profile>/profile.json` when the study
# runner wrote one). A bad parameter stops the notebook in the next cell with a one-line message.

# %% tags=["parameters"]
profile = "mini"      # smoke | mini | paper
study_dir = None      # the study's folder (None: runs/<profile>)
out = None            # this notebook's output folder (None: <study_dir>/01_teacher/<member>)
member = None         # sweep member name (set by the study runner)
teacher = None        # hub name (mt30-317M), checkpoint path, 'auto' or 'train:SIZE'
tasks = None          # evaluation tasks: 'mt30' or comma-separated MT30 task names
episodes = None       # episodes per task
seed = None           # evaluation seed
protocol = None       # clean | paper
policy = None         # plan (MPPI) | prior (policy network only)
precision = None      # fp32 | bf16 | fp16
device = None         # cpu | cuda
threads = None        # torch CPU threads (0: torch's default)

# %%
import os, sys  # noqa: E401  (run from the repository root, as the study runner does)
_root = os.path.dirname(os.getcwd()) if os.path.basename(os.getcwd()) == "notebooks" else os.getcwd()
os.chdir(_root); sys.path.insert(0, _root)  # noqa: E702
os.environ.setdefault("MUJOCO_GL", "osmesa")  # offscreen MuJoCo rendering, before dm_control loads
from tdmpc_lib import study

run = study.setup("01_teacher", globals())
run

# %% [markdown]
# ## The dataset and the teacher
# The dataset is made once per study folder (synthetic for `smoke`, collected with dm_control for
# `mini`, the public MT30 chunks for `paper`). A teacher `train:SIZE` is trained on it once.

# %%
from tdmpc_lib.data import open_store
from tdmpc_lib.study import pipeline

data_dir = pipeline.ensure_dataset(run.profile, run.study_dir)
print(open_store(data_dir).summary())
teacher_info = pipeline.resolve_teacher(run.profile, run.study_dir, run.p.teacher, run.p.device, run.p.threads or 0)
print(f"teacher: {teacher_info.label}\n  source {teacher_info.source}, file {teacher_info.path}")

# %% [markdown]
# ## Architecture and parameters per component

# %%
import tdmpc_lib
from tdmpc_lib.study import tables

model = tdmpc_lib.load_checkpoint(teacher_info.path, device=run.p.device)
print(model)
tables.component_table(model)

# %% [markdown]
# ## Evaluation
# Every (task, episode) pair gets its own environment and all of them act in lockstep; episode *k*
# starts from the state the official sequential evaluation would see.

# %%
from tdmpc_lib.evaluate import EvalConfig, evaluate, format_table

eval_cfg = EvalConfig(tasks=run.p.tasks, episodes=run.p.episodes, seed=run.p.seed, protocol=run.p.protocol,
                      policy=run.p.policy, device=run.p.device, precision=run.p.precision)
result = evaluate(model, eval_cfg, progress=False)
run.save_json("eval.json", result)
print(format_table(result))
tables.task_table(result)

# %%
import matplotlib.pyplot as plt
import seaborn as sns

from tdmpc_lib.study import plots

plots.theme()
per_task = tables.task_table(result).reset_index()
fig, ax = plt.subplots(figsize=(8, 0.35 * len(per_task) + 1.2))
sns.barplot(data=per_task, y="task", x="mean return", color=plots.OURS, ax=ax)
ax.set_title(f"{teacher_info.label}: mean return per task (normalized score {result['normalized_score']:.2f})\n"
             f"{run.profile.label()}", fontsize=10)
ax.set_xlabel(f"mean episode return ({run.p.episodes} episode(s), policy {run.p.policy}, protocol {run.p.protocol})")
ax.set_ylabel("")
fig.tight_layout()
fig.savefig(run.path("teacher_returns.png"), dpi=110)
plt.show()

# %%
_ = run.finish({"teacher": vars(teacher_info), "total_params": model.total_params,
                "components": model.component_params(), "size": model.cfg.size,
                "normalized_score": result["normalized_score"], "eval_file": str(run.path("eval.json")),
                "task_scores": {t: v["score"] for t, v in result["tasks"].items()}})
print(f"results written to {run.out}")
