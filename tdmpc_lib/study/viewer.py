"""Rollout viewer: render an episode of a checkpoint with MuJoCo offscreen and step through it.

    ro = rollout(model, "cartpole-balance", seed=1, policy="prior", steps=200)   # Rollout
    viewer = RolloutViewer({"student": "runs/mini/train/.../model.pt"}, task="cartpole-balance")
    viewer.render(); viewer.widget          # ipywidgets: pickers, Play <-> slider, frame, reward trace
    write_video(ro, "rollout.mp4"); write_video(ro, "rollout.gif")   # shows without a kernel

Rendering needs MUJOCO_GL=egl or osmesa (set before dm_control is imported; the notebook does
it). The Play button is linked to the frame slider in the browser (jslink), so playing needs
no round trip per frame for the slider; the frame and the reward marker follow the slider.
"""
from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .profiles import ViewerConfig

TRACE_COLOR = "#1f77b4"
MARKER_RGB = (214, 39, 40)


@dataclass
class Rollout:
    """One rendered episode: frames[t] is the scene before action t (t = 0..steps), rewards[t]
    the reward received for action t."""
    task: str
    seed: int
    policy: str
    frames: list[np.ndarray]
    rewards: np.ndarray
    actions: np.ndarray
    checkpoint: str | None = None
    trace: np.ndarray | None = field(default=None, repr=False)  # reward-trace background (RGB)
    trace_x: np.ndarray | None = field(default=None, repr=False)  # pixel column of each step
    trace_y: np.ndarray | None = field(default=None, repr=False)  # pixel row of each reward

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())

    def summary(self) -> dict:
        return {"task": self.task, "seed": self.seed, "policy": self.policy, "checkpoint": self.checkpoint,
                "steps": int(len(self.rewards)), "return": self.episode_return,
                "frame_shape": list(self.frames[0].shape)}


def _free_rendering(env) -> None:
    """Release the offscreen GL context now (dm_control otherwise complains at interpreter exit)."""
    physics = env.physics
    with physics._contexts_lock:
        if physics._contexts:
            physics._free_rendering_contexts()


def rollout(model, task: str, seed: int = 1, policy: str = "prior", steps: int = 200, width: int = 240,
            height: int = 240, camera_id: int = 0, episode: int = 0, checkpoint: str | None = None,
            device: str = "cpu", on_step=None) -> Rollout:
    """Run `model` on `task` (episode `episode` of seed `seed`, as the evaluator starts it) for
    `steps` agent steps with the policy prior ('prior') or MPPI ('plan'), rendering every step."""
    import torch

    from ..envs import make_env
    from ..evaluate import set_seed
    from ..planner import BatchedPlanner, PlannerConfig
    from ..rollout import lockstep, reset_all
    from ..tasks import get_task_set

    if policy not in ("prior", "plan"):
        raise ValueError(f"policy must be 'prior' or 'plan', got {policy!r}")
    model = model.to(device).eval()
    ids = get_task_set(model.cfg.task_set or "mt30") if model.cfg.multitask else None
    task_id = torch.tensor([ids.index(task) if ids else 0], device=device)
    set_seed(seed)
    planner = BatchedPlanner(model, PlannerConfig(mpc=policy == "plan"), eval_mode=True)
    env = make_env(task, seed, episode=episode)
    steps = max(1, min(int(steps), env.episode_length))
    obs = reset_all([env], model.cfg.obs_dim)
    frames = [env.render(width, height, camera_id)]
    rewards, actions = [], []

    def act(o: np.ndarray, t: int) -> np.ndarray:
        return planner.act(torch.from_numpy(o), task_id, torch.tensor([t == 0], device=device)).cpu().numpy()

    def record(step) -> None:
        rewards.append(step.rewards[0])
        actions.append(step.actions[0, :env.action_dim])
        frames.append(env.render(width, height, camera_id))
        if on_step is not None:
            on_step(step.t + 1, steps)

    try:
        lockstep([env], act, obs, steps=steps, on_step=record)
    finally:
        _free_rendering(env)
    ro = Rollout(task, seed, policy, frames, np.asarray(rewards, np.float32), np.asarray(actions, np.float32),
                 checkpoint)
    ro.trace, ro.trace_x, ro.trace_y = reward_trace(ro.rewards, width)
    return ro


# ---------------------------------------------------------------------------- pictures
def reward_trace(rewards: np.ndarray, width: int, height: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reward trace drawn once with matplotlib: (RGB image (height, width, 3), the pixel
    column of every step, the pixel row of every reward). Markers are then drawn per frame."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matplotlib.rcParams.setdefault("font.size", 8)
    height = height or max(64, 16 * round(width / 3 / 16))
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.14, 0.2, 0.83, 0.72))
    steps = np.arange(len(rewards))
    ax.plot(steps, rewards, color=TRACE_COLOR, lw=1)
    ax.set_xlim(0, max(1, len(rewards) - 1))
    lo, hi = float(np.min(rewards, initial=0.0)), float(np.max(rewards, initial=1.0))
    ax.set_ylim(lo - 0.05 * (hi - lo + 1e-6), hi + 0.05 * (hi - lo + 1e-6))
    ax.set_ylabel("reward", fontsize=7, labelpad=1)
    ax.tick_params(labelsize=6, pad=1)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    pts = ax.transData.transform(np.stack([steps, rewards], 1)) if len(rewards) else np.zeros((0, 2))
    xs = np.clip(np.round(pts[:, 0]).astype(int), 0, width - 1)
    ys = np.clip(np.round(height - pts[:, 1]).astype(int), 0, height - 1)  # display y grows upwards
    return image, xs, ys


def trace_with_marker(ro: Rollout, step: int) -> np.ndarray:
    """The reward trace with a vertical line and a dot at `step` (the action about to be taken
    in frame `step`; the last frame marks the last reward)."""
    img = ro.trace.copy()
    if len(ro.trace_x) == 0:
        return img
    i = int(np.clip(step, 0, len(ro.trace_x) - 1))
    x, y = ro.trace_x[i], ro.trace_y[i]
    img[:, max(0, x - 1):x + 1] = MARKER_RGB
    img[max(0, y - 3):y + 4, max(0, x - 3):x + 4] = MARKER_RGB
    return img


def composite(ro: Rollout, step: int) -> np.ndarray:
    """Frame `step` above the reward trace with its marker (one video frame)."""
    frame = ro.frames[step]
    trace = trace_with_marker(ro, min(step, len(ro.rewards) - 1))
    if trace.shape[1] != frame.shape[1]:
        from PIL import Image
        trace = np.asarray(Image.fromarray(trace).resize((frame.shape[1], trace.shape[0])))
    return np.concatenate([frame, trace], axis=0)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_video(ro: Rollout, path: str | os.PathLike, fps: int = 25, every: int = 1) -> Path:
    """The rollout as mp4 (imageio-ffmpeg) or gif (Pillow), picked by the suffix; each video
    frame is the rendered frame above the reward trace with its moving marker."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [composite(ro, t) for t in range(0, len(ro.frames), max(1, every))]
    if path.suffix == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 * max(1, every) / fps, loop=0)
    else:
        h, w = frames[0].shape[:2]
        pad_h, pad_w = (-h) % 16, (-w) % 16  # codec blocks of 16 pixels
        if pad_h or pad_w:
            frames = [np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=255) for f in frames]
        imageio.mimsave(path, frames, fps=fps / max(1, every), macro_block_size=16)
    return path


# ---------------------------------------------------------------------------- the widget
class RolloutViewer:
    """ipywidgets viewer: checkpoint / task / seed / policy pickers and a Render button; a Play
    button jslinked to the frame slider; the frame; the reward trace with a moving marker."""

    def __init__(self, checkpoints: dict[str, str], config: ViewerConfig | None = None, device: str = "cpu",
                 tasks: list[str] | None = None, **overrides):
        import ipywidgets as w

        from ..tasks import MT30

        cfg = dataclasses.replace(config or ViewerConfig(), **overrides)
        self.cfg, self.device = cfg, device
        self.checkpoints = dict(checkpoints)
        if not self.checkpoints:
            raise ValueError("the viewer needs at least one checkpoint")
        self._models: dict[str, object] = {}
        self.rollout: Rollout | None = None
        self._frame_png: list[bytes] = []
        tasks = list(tasks or MT30.tasks)
        if cfg.task not in tasks:
            tasks.insert(0, cfg.task)
        paths = list(self.checkpoints.values())
        default_ckpt = cfg.checkpoint if cfg.checkpoint in paths else paths[0]
        self.checkpoint_picker = w.Dropdown(options=list(self.checkpoints.items()), value=default_ckpt,
                                            description="checkpoint", layout=w.Layout(width="460px"))
        self.task_picker = w.Dropdown(options=tasks, value=cfg.task, description="task")
        self.seed_picker = w.BoundedIntText(value=cfg.seed, min=0, max=10**6, description="seed",
                                            layout=w.Layout(width="160px"))
        self.policy_picker = w.ToggleButtons(options=[("policy prior", "prior"), ("MPPI planner", "plan")],
                                             value=cfg.policy, description="act with")
        self.steps_picker = w.BoundedIntText(value=cfg.steps, min=1, max=500, description="steps",
                                             layout=w.Layout(width="160px"))
        self.render_button = w.Button(description="Render rollout", button_style="primary", icon="play-circle")
        self.status = w.Label(value="choose a checkpoint, a task and a seed, then Render")
        self.play = w.Play(value=0, min=0, max=0, step=1, interval=max(10, int(1000 / cfg.fps)),
                           description="play", show_repeat=True)
        self.slider = w.IntSlider(value=0, min=0, max=0, description="frame", continuous_update=True,
                                  layout=w.Layout(width="420px"))
        self.link = w.jslink((self.play, "value"), (self.slider, "value"))
        self.frame = w.Image(format="png", width=cfg.width, height=cfg.height)
        self.trace = w.Image(format="png", width=cfg.width)
        self.readout = w.Label(value="")
        self.slider.observe(self._on_slider, names="value")
        self.render_button.on_click(lambda _: self.render())
        pickers = w.VBox([w.HBox([self.checkpoint_picker]), w.HBox([self.task_picker, self.seed_picker,
                                                                     self.steps_picker]),
                          w.HBox([self.policy_picker, self.render_button]), self.status])
        player = w.VBox([w.HBox([self.play, self.slider]), self.frame, self.trace, self.readout])
        self.widget = w.VBox([pickers, player])

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    def _model(self, path: str):
        if path not in self._models:
            from ..checkpoint import load_checkpoint
            self._models[path] = load_checkpoint(path, device=self.device)
        return self._models[path]

    def render(self) -> Rollout:
        """Roll out the picked checkpoint on the picked task and seed, and show frame 0."""
        path = self.checkpoint_picker.value
        self.render_button.disabled = True
        try:
            def progress(t, n):
                if t % 10 == 0 or t == n:
                    self.status.value = f"rendering step {t}/{n}..."
            ro = rollout(self._model(path), self.task_picker.value, seed=int(self.seed_picker.value),
                         policy=self.policy_picker.value, steps=int(self.steps_picker.value), width=self.cfg.width,
                         height=self.cfg.height, camera_id=self.cfg.camera_id, checkpoint=path, device=self.device,
                         on_step=progress)
        finally:
            self.render_button.disabled = False
        self.show_rollout(ro)
        return ro

    def show_rollout(self, ro: Rollout) -> None:
        self.rollout = ro
        self._frame_png = [png_bytes(f) for f in ro.frames]
        self.play.value = 0
        self.slider.value = 0
        self.play.max = self.slider.max = len(ro.frames) - 1
        self.status.value = (f"{ro.task}, seed {ro.seed}, {ro.policy}: {len(ro.rewards)} steps, "
                             f"return {ro.episode_return:.1f}")
        self.show(0)

    def _on_slider(self, change) -> None:
        self.show(int(change["new"]))

    def show(self, step: int) -> None:
        """Show frame `step` and move the reward marker there."""
        ro = self.rollout
        if ro is None:
            return
        step = int(np.clip(step, 0, len(ro.frames) - 1))
        self.frame.value = self._frame_png[step]
        r_i = min(step, len(ro.rewards) - 1)
        self.trace.value = png_bytes(trace_with_marker(ro, r_i))
        done = float(ro.rewards[:step].sum())
        self.readout.value = (f"frame {step}/{len(ro.frames) - 1}   reward of the next action "
                              f"{ro.rewards[r_i]:.3f}   return so far {done:.1f}")
