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
# **What.** Watch a checkpoint act: pick a checkpoint (any teacher or student of this study, or a
# file), a task and a seed, press *Render rollout*, then *Play*. The frames are rendered with
# MuJoCo offscreen (EGL or OSMesa, no display needed); the reward trace below the frame has a
# marker that follows the frame slider. Under the widget, the same rollout is saved as an mp4 and
# a gif and embedded in the notebook, so it shows without a running kernel (e.g. in the executed
# copy under `runs/`).
#
# **Why.** A normalized score hides *how* an agent fails; a few seconds of video and its reward
# trace show whether it balances, swings up, or flails.
#
# **How to read it.** Frame *t* shows the scene before action *t*; the marker sits on the reward
# that action earned. `policy = 'prior'` acts with the policy network alone (fast on a CPU);
# `'plan'` runs the MPPI planner (what the evaluation uses in the paper's setting; slow on a CPU).

# %% tags=["parameters"]
profile = "mini"      # smoke | mini | paper
study_dir = None      # the study's folder (None: runs/<profile>)
out = None            # this notebook's output folder (None: <study_dir>/06_rollout_viewer)
member = None         # sweep member name (set by the study runner)
checkpoint = None     # checkpoint file or hub name (None: the profile's default distilled student)
task = None           # an MT30 task
seed = None           # environment seed (episode 0 of that seed, as the evaluation starts it)
policy = None         # prior | plan
steps = None          # agent steps rendered (at most 500)
width = None          # frame size in pixels
height = None
camera_id = None
fps = None            # frames per second of the Play button and the videos
device = None         # cpu | cuda
threads = None        # torch CPU threads (0: torch's default)

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

choices = results.checkpoints(results.load_study(run.study_dir))
if run.p.checkpoint is None:  # the profile's default distilled student (trained here if missing)
    default_file = pipeline.default_student(run.profile, run.study_dir, run.p.device, run.p.threads or 0)["checkpoint"]
else:
    from tdmpc_lib.checkpoint import HUB_CHECKPOINTS, download_checkpoint
    default_file = download_checkpoint(run.p.checkpoint) if run.p.checkpoint in HUB_CHECKPOINTS else run.p.checkpoint
if default_file not in choices.values():
    choices = {f"given: {default_file}": default_file, **choices}
for label, path in choices.items():
    print(f"{label:<60} {path}")

# %% [markdown]
# ## The viewer
# Change the pickers and press *Render rollout* for another rollout (needs the kernel). *Play*
# is linked to the frame slider in the browser.

# %%
import dataclasses

from tdmpc_lib.study.profiles import ViewerConfig
from tdmpc_lib.study.viewer import RolloutViewer

viewer_cfg = ViewerConfig(**{f.name: getattr(run.p, f.name) for f in dataclasses.fields(ViewerConfig)
                             if f.name != "checkpoint"}, checkpoint=default_file)
viewer = RolloutViewer(choices, viewer_cfg, device=run.p.device)
rollout = viewer.render()
viewer

# %% [markdown]
# ## The same rollout as a video (shows without a kernel)

# %%
from IPython.display import Image, Video, display

from tdmpc_lib.study.viewer import write_video

mp4 = write_video(rollout, run.path("rollout.mp4"), fps=run.p.fps)
gif = write_video(rollout, run.path("rollout.gif"), fps=run.p.fps, every=max(1, len(rollout.frames) // 60))
print(f"{rollout.task}, seed {rollout.seed}, policy {rollout.policy}: return {rollout.episode_return:.1f} over "
      f"{len(rollout.rewards)} steps\nmp4: {mp4}\ngif: {gif}")
display(Video(str(mp4), embed=True, width=run.p.width, html_attributes="controls loop"))
display(Image(filename=str(gif)))

# %%
_ = run.finish({"rollout": rollout.summary(), "mp4": str(mp4), "gif": str(gif), "checkpoints": choices})
print(f"results written to {run.out}")
