# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Rollout viewer
#
# **What.** Watch a checkpoint act, beside a second one: pick checkpoint A (any teacher or student
# of this study, or a file), checkpoint B to compare with (by default the profile's teacher
# beside the default distilled student; `compare = 'none'` turns the comparison off), a task and
# a seed, press *Render rollout*, then *Play*. The two run in lockstep, each in its own
# environment made from the same seed, so both start from the same initial state. The frames are
# rendered with MuJoCo offscreen (EGL or OSMesa, no display needed); both reward traces share one
# axis with a marker that follows the frame slider, and a table lists every step's actions,
# rewards and returns around the frame shown. Under the widget, the same rollouts are saved as
# mp4 (and a gif of A) and embedded in the notebook, so they show without a running kernel (e.g.
# in the executed copy under `runs/`).
#
# **Why.** A normalized score hides *how* an agent fails; a few seconds of video and its reward
# trace show whether it balances, swings up, or flails, and side by side with the teacher from
# the same start, where the student departs from it.
#
# **How to read it.** Frame *t* shows the scene before action *t*; the marker sits on the reward
# that action earned, and the highlighted table row is step *t* (|action| is the action's L2 norm,
# |A - B| the distance between the two sides' actions, returns are cumulative after the step).
# `policy = 'prior'` acts with the policy network alone (fast on a CPU); `'plan'` runs the MPPI
# planner with the profile's settings (what the evaluation uses; slower on a CPU).

# %% tags=["parameters"]
profile = "mini"   # smoke | mini | mini-takeover | paper
member = None      # (06 has no sweep members)
overrides = {}     # dotted profile fields, e.g. {"viewer.task": "walker-walk", "viewer.policy": "plan"}
study_dir = None   # the study's folder (None: runs/<profile>)

# %%
import os
os.environ.setdefault("MUJOCO_GL", "osmesa")  # offscreen MuJoCo rendering, before dm_control loads
from tdmpc_lib import study

run = study.setup("06_rollout_viewer", globals())
run

# %% [markdown]
# ## The checkpoints of this study

# %%
from tdmpc_lib.study import pipeline, results

from tdmpc_lib.checkpoint import checkpoint_path

view = run.profile.viewer
choices = results.checkpoints(results.load_study(run.study_dir))
if view.checkpoint is None:  # the profile's own run (trained here if missing)
    default_file = pipeline.default_student(run.profile, run.study_dir)["checkpoint"]
else:
    default_file = str(checkpoint_path(view.checkpoint))
if default_file not in choices.values():
    choices = {f"given: {default_file}": default_file, **choices}
compare_file = None  # no comparison
if view.compare == "teacher":  # the profile's teacher (trained here if missing)
    teacher = pipeline.resolve_teacher(run.profile, run.study_dir)
    compare_file = teacher.path
    if compare_file not in choices.values():
        choices[f"teacher: {teacher.label}"] = compare_file
elif view.compare not in (None, "none"):
    compare_file = str(checkpoint_path(view.compare))
    if compare_file not in choices.values():
        choices[f"given: {compare_file}"] = compare_file
for label, path in choices.items():
    print(f"{label:<60} {path}")
print(f"\nA: {default_file}\nB: {compare_file or 'no comparison'}")

# %% [markdown]
# ## The viewer
# Change the pickers and press *Render rollout* for another rollout (needs the kernel); pick
# *no comparison* for B to watch A alone. *Play* is linked to the frame slider in the browser.

# %%
import dataclasses

from tdmpc_lib.study.viewer import RolloutViewer

viewer_cfg = dataclasses.replace(view, checkpoint=default_file, compare=compare_file)
viewer = RolloutViewer(choices, viewer_cfg, device=run.profile.device, planner=run.profile.eval.planner)
shown = viewer.render()  # a Comparison of A and B, or A's Rollout
viewer

# %% [markdown]
# ## The same rollouts as videos (show without a kernel)
# Side by side (A left, B right) with both reward traces, then A alone.

# %%
from IPython.display import Image, Video, display

from tdmpc_lib.render import write_video

rollout, comparison = viewer.rollout, viewer.comparison
compare_mp4 = None
if comparison is not None:
    compare_mp4 = write_video(comparison, run.path("compare.mp4"), fps=view.fps)
    print(f"A: {comparison.labels[0]}: return {comparison.a.episode_return:.1f}\n"
          f"B: {comparison.labels[1]}: return {comparison.b.episode_return:.1f}\nmp4: {compare_mp4}")
    display(Video(str(compare_mp4), embed=True, width=2 * view.width, html_attributes="controls loop"))
mp4 = write_video(rollout, run.path("rollout.mp4"), fps=view.fps)
gif = write_video(rollout, run.path("rollout.gif"), fps=view.fps, every=max(1, len(rollout.frames) // 60))
print(f"{rollout.task}, seed {rollout.seed}, policy {rollout.policy}: return {rollout.episode_return:.1f} over "
      f"{len(rollout.rewards)} steps\nmp4: {mp4}\ngif: {gif}")
display(Video(str(mp4), embed=True, width=view.width, html_attributes="controls loop"))
display(Image(filename=str(gif)))

# %% [markdown]
# ## Step by step (the comparison)
# One row per agent step, also saved as `compare_steps.csv`.

# %%
steps_table = None
if comparison is not None:
    steps_table = comparison.table()
    steps_table.to_csv(run.path("compare_steps.csv"))
    display(steps_table.round(4))

# %%
_ = run.finish({"rollout": rollout.summary(), "mp4": str(mp4), "gif": str(gif), "checkpoints": choices,
                "comparison": comparison.summary() if comparison is not None else None,
                "compare_mp4": str(compare_mp4) if compare_mp4 else None,
                "compare_steps": str(run.path("compare_steps.csv")) if comparison is not None else None})
print(f"results written to {run.out}")
