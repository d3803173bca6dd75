"""Render an episode of a checkpoint with MuJoCo offscreen, alone or beside a second checkpoint
stepped in lockstep from the same initial state; reward traces, composites and videos of them.

    ro = rollout(model, "cartpole-balance", seed=1, policy="prior", steps=200)   # Rollout
    cmp = compare(student, teacher, "cartpole-balance", seed=1, labels=("student", "teacher"))
    cmp.table()                                   # one row per step: actions, rewards, returns
    write_video(ro, "rollout.mp4"); write_video(cmp, "compare.mp4")

Rendering needs MUJOCO_GL=egl or osmesa (set before dm_control is imported). The study's
rollout viewer (tdmpc_lib.study.viewer) is an ipywidgets front end of this module.
"""
from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .planner import PlannerConfig

TRACE_COLOR = "#1f77b4"
TRACE_COLORS = ("#1f77b4", "#ff7f0e")  # checkpoint A, checkpoint B
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


@dataclass
class Comparison:
    """Two checkpoints on the same task, seed and episode, stepped in lockstep: a.frames[t] and
    b.frames[t] (H, W, 3) are both scenes before action t (t = 0..T), a.rewards / b.rewards (T,).
    trace is both reward traces on one axis (RGB, (h, 2W + GAP, 3)); trace_x (T,) the pixel
    column of each step, trace_y (2, T) the pixel row of each reward of A and of B."""
    a: Rollout
    b: Rollout
    labels: tuple[str, str] = ("A", "B")
    trace: np.ndarray | None = field(default=None, repr=False)
    trace_x: np.ndarray | None = field(default=None, repr=False)
    trace_y: np.ndarray | None = field(default=None, repr=False)

    GAP = 4  # white pixel columns between the two frames

    @property
    def frames(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return list(zip(self.a.frames, self.b.frames))

    @property
    def rewards(self) -> np.ndarray:
        """(2, T) rewards of A and B."""
        return np.stack([self.a.rewards, self.b.rewards])

    def table(self):
        """pandas DataFrame, one row per agent step t (index 'step', 0..T-1): the L2 norm of each
        side's action, the distance between the two actions, each side's reward for action t
        and its return after it (cumulative)."""
        import pandas as pd

        a, b = self.a, self.b
        # Both sides act in the same task, so their actions have the same dimension.
        return pd.DataFrame({
            "|action A|": np.linalg.norm(a.actions, axis=1), "|action B|": np.linalg.norm(b.actions, axis=1),
            "|A - B|": np.linalg.norm(a.actions - b.actions, axis=1),
            "reward A": a.rewards, "reward B": b.rewards,
            "return A": np.cumsum(a.rewards, dtype=np.float64), "return B": np.cumsum(b.rewards, dtype=np.float64),
        }, index=pd.RangeIndex(len(a.rewards), name="step"))

    def summary(self) -> dict:
        return {"labels": list(self.labels), "a": self.a.summary(), "b": self.b.summary(),
                "return_a": self.a.episode_return, "return_b": self.b.episode_return}


def _free_rendering(env) -> None:
    """Release the offscreen GL context now (dm_control otherwise complains at interpreter exit)."""
    physics = env.physics
    with physics._contexts_lock:
        if physics._contexts:
            physics._free_rendering_contexts()


class _RngSlot:
    """One side's own torch random stream. Sampling in the planner (MPPI noise, the policy's
    sample) draws from torch's global generator; giving each model its own copy of the seeded
    state, swapped in around its act(), makes each side of a lockstep comparison draw exactly
    what a single rollout of that model draws, whatever the other side does."""

    def __init__(self, device):
        import torch
        self.cuda = torch.device(device).type == "cuda"
        self.device = torch.device(device)
        self.state = self._get()

    def _get(self):
        import torch
        return (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.cuda else None)

    def __enter__(self):
        import torch
        torch.set_rng_state(self.state[0])
        if self.cuda:
            torch.cuda.set_rng_state(self.state[1], self.device)

    def __exit__(self, *exc):
        self.state = self._get()


def rollouts(models: Sequence, task: str, seed: int = 1, policy: str = "prior", steps: int = 200,
             width: int = 240, height: int = 240, camera_id: int = 0, episode: int = 0,
             checkpoints: Sequence[str | None] | None = None, device: str = "cpu", on_step=None,
             planner: PlannerConfig | None = None) -> list[Rollout]:
    """Run every model of `models` (M of them) on `task` in lockstep (tdmpc_lib.rollout), each in
    its own environment made with the same seed and episode, so all start from the same initial
    state, for `steps` agent steps with the policy prior ('prior') or MPPI ('plan'), rendering
    every step. Returns M Rollouts; rollout i equals `rollout(models[i], ...)` bit for bit (own
    planner, own random stream). on_step(t, steps) reports progress; `planner`: the MPPI
    settings for 'plan' (None: TD-MPC2's)."""
    import torch

    from .envs import make_env
    from .evaluate import set_seed
    from .planner import BatchedPlanner
    from .rollout import lockstep, reset_all
    from .tasks import get_task_set

    if policy not in ("prior", "plan"):
        raise ValueError(f"policy must be 'prior' or 'plan', got {policy!r}")
    if not models:
        raise ValueError("rollouts needs at least one model")
    checkpoints = list(checkpoints or [None] * len(models))
    models = [m.to(device).eval() for m in models]
    task_ids = []
    for m in models:
        ids = get_task_set(m.cfg.task_set or "mt30") if m.cfg.multitask else None
        task_ids.append(torch.tensor([ids.index(task) if ids else 0], device=device))
    set_seed(seed)
    slots = [_RngSlot(device) for _ in models]  # every side starts from the seeded state
    planner_cfg = dataclasses.replace(planner or PlannerConfig(), mpc=policy == "plan")
    planners = [BatchedPlanner(m, planner_cfg, eval_mode=True) for m in models]
    envs = [make_env(task, seed, episode=episode) for _ in models]
    steps = max(1, min(int(steps), envs[0].episode_length))
    obs_dims = [m.cfg.obs_dim for m in models]
    obs = reset_all(envs, max(obs_dims))
    frames = [[env.render(width, height, camera_id)] for env in envs]
    rewards: list[list[float]] = [[] for _ in models]
    actions: list[list[np.ndarray]] = [[] for _ in models]
    act_dim = max(m.cfg.action_dim for m in models)

    def act(o: np.ndarray, t: int) -> np.ndarray:
        out = np.zeros((len(models), act_dim), np.float32)
        for i, side in enumerate(planners):
            with slots[i]:
                a = side.act(torch.from_numpy(np.ascontiguousarray(o[i:i + 1, :obs_dims[i]])), task_ids[i],
                                torch.tensor([t == 0], device=device)).cpu().numpy()
            out[i, :a.shape[1]] = a[0]
        return out

    def record(step) -> None:
        for i, env in enumerate(envs):
            if step.active[i]:
                rewards[i].append(step.rewards[i])
                actions[i].append(step.actions[i, :env.action_dim])
                frames[i].append(env.render(width, height, camera_id))
        if on_step is not None:
            on_step(step.t + 1, steps)

    try:
        lockstep(envs, act, obs, steps=steps, on_step=record)
    finally:
        for env in envs:
            _free_rendering(env)
    out = []
    for i in range(len(models)):
        ro = Rollout(task, seed, policy, frames[i], np.asarray(rewards[i], np.float32),
                     np.asarray(actions[i], np.float32), checkpoints[i])
        ro.trace, ro.trace_x, ro.trace_y = reward_trace(ro.rewards, width)
        out.append(ro)
    return out


def rollout(model, task: str, seed: int = 1, policy: str = "prior", steps: int = 200, width: int = 240,
            height: int = 240, camera_id: int = 0, episode: int = 0, checkpoint: str | None = None,
            device: str = "cpu", on_step=None, planner: PlannerConfig | None = None) -> Rollout:
    """Run `model` on `task` (episode `episode` of seed `seed`, as the evaluator starts it) for
    `steps` agent steps with the policy prior ('prior') or MPPI ('plan'), rendering every step."""
    return rollouts([model], task, seed, policy, steps, width, height, camera_id, episode, [checkpoint], device,
                    on_step, planner)[0]


def compare(model_a, model_b, task: str, seed: int = 1, policy: str = "prior", steps: int = 200,
            width: int = 240, height: int = 240, camera_id: int = 0, episode: int = 0,
            checkpoints: tuple[str | None, str | None] = (None, None), labels: tuple[str, str] = ("A", "B"),
            device: str = "cpu", on_step=None, planner: PlannerConfig | None = None) -> Comparison:
    """Two models side by side in lockstep from the same initial state (see `rollouts`); each side
    equals its own single rollout. The comparison's trace holds both reward traces on one axis."""
    a, b = rollouts([model_a, model_b], task, seed, policy, steps, width, height, camera_id, episode,
                    list(checkpoints), device, on_step, planner)
    cmp = Comparison(a, b, tuple(labels))
    # The legend says only A and B: the names are long, and the frames above carry them.
    cmp.trace, cmp.trace_x, cmp.trace_y = reward_traces([a.rewards, b.rewards], 2 * width + Comparison.GAP,
                                                        labels=["A", "B"])
    return cmp


# ---------------------------------------------------------------------------- pictures
def reward_traces(series: Sequence[np.ndarray], width: int, height: int | None = None,
                  labels: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reward traces (each (T,), same T) drawn once on one axis with matplotlib: (RGB image
    (height, width, 3), the pixel column of every step (T,), the pixel row of every reward of
    every series (len(series), T)). Markers are then drawn per frame."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matplotlib.rcParams.setdefault("font.size", 8)
    height = height or max(64, 16 * round(min(width, 360) / 3 / 16))
    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    left = min(0.14, 34 / width)  # room for the tick labels, not a fixed share of a wide strip
    ax = fig.add_axes((left, 0.2, 0.97 - left, 0.72))
    n = len(series[0]) if len(series) else 0
    steps = np.arange(n)
    for k, rewards in enumerate(series):
        ax.plot(steps, rewards, color=TRACE_COLORS[k % len(TRACE_COLORS)], lw=1,
                label=labels[k] if labels else None)
    if labels:
        ax.legend(loc="upper left", fontsize=6, frameon=False, ncol=len(series), borderaxespad=0.1)
    allr = np.concatenate([np.asarray(r, np.float64) for r in series]) if len(series) else np.zeros(0)
    ax.set_xlim(0, max(1, n - 1))
    lo, hi = float(np.min(allr, initial=0.0)), float(np.max(allr, initial=1.0))
    pad = 0.05 * (hi - lo + 1e-6)
    legend_room = 0.3 * (hi - lo + 1e-6) if labels else 0.0  # the legend sits above the traces
    ax.set_ylim(lo - pad, hi + pad + legend_room)
    ax.set_ylabel("reward", fontsize=7, labelpad=1)
    ax.tick_params(labelsize=6, pad=1)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    xs = np.zeros(n, int)
    ys = np.zeros((len(series), n), int)
    for k, rewards in enumerate(series):
        if n:
            pts = ax.transData.transform(np.stack([steps, rewards], 1))
            xs = np.clip(np.round(pts[:, 0]).astype(int), 0, width - 1)
            ys[k] = np.clip(np.round(height - pts[:, 1]).astype(int), 0, height - 1)  # display y grows upwards
    return image, xs, ys


def reward_trace(rewards: np.ndarray, width: int, height: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One reward trace (T,): (RGB image (height, width, 3), pixel column of every step (T,),
    pixel row of every reward (T,))."""
    image, xs, ys = reward_traces([rewards], width, height)
    return image, xs, ys[0]


def _marked(trace: np.ndarray, xs: np.ndarray, ys: np.ndarray, step: int) -> np.ndarray:
    """trace (h, w, 3) with a vertical line at column xs[step] and a dot on every series' row
    ys[:, step] (ys (n, T))."""
    img = trace.copy()
    if len(xs) == 0:
        return img
    i = int(np.clip(step, 0, len(xs) - 1))
    x = xs[i]
    img[:, max(0, x - 1):x + 1] = MARKER_RGB
    for y in np.atleast_2d(ys)[:, i]:
        img[max(0, y - 3):y + 4, max(0, x - 3):x + 4] = MARKER_RGB
    return img


def trace_with_marker(ro: Rollout | Comparison, step: int) -> np.ndarray:
    """The reward trace(s) with a vertical line and a dot at `step` (the action about to be taken
    in frame `step`; the last frame marks the last reward)."""
    return _marked(ro.trace, ro.trace_x, ro.trace_y, step)


def marker_column(image: np.ndarray) -> int | None:
    """The pixel column of the step the marker is on (trace_x[step]) in a trace image (h, w, 3),
    or None: the rightmost column that is marker-coloured over at least 90% of its height (the
    line covers x - 1 and x; the dots are short). What a reader of the picture, e.g. the browser
    test, uses to check that the marker follows the slider."""
    hit = np.all(image[..., :3] == np.asarray(MARKER_RGB, image.dtype), axis=-1).mean(axis=0) >= 0.9
    cols = np.flatnonzero(hit)
    return int(cols[-1]) if len(cols) else None


def _label_strip(text: str, width: int, height: int = 14) -> np.ndarray:
    """A white strip (height, width, 3) with `text` in black: names each side of a video frame."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), (255, 255, 255))
    try:  # Pillow's bundled scalable font (needs FreeType); the bitmap font squeezes spaces away
        font = ImageFont.load_default(size=height - 3)
    except (TypeError, ImportError, OSError):
        font = ImageFont.load_default()
    ImageDraw.Draw(img).text((3, 1), text, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def composite(ro: Rollout | Comparison, step: int) -> np.ndarray:
    """One video frame: frame `step` (both frames side by side, each named, for a Comparison)
    above the reward trace with its marker."""
    if isinstance(ro, Comparison):
        fa, fb = ro.a.frames[step], ro.b.frames[step]
        gap = np.full((fa.shape[0], Comparison.GAP, 3), 255, np.uint8)
        frame = np.concatenate([fa, gap, fb], axis=1)
        names = np.concatenate([_label_strip(f"A: {ro.labels[0]}", fa.shape[1]),
                                _label_strip("", Comparison.GAP),
                                _label_strip(f"B: {ro.labels[1]}", fb.shape[1])], axis=1)
        frame = np.concatenate([names, frame], axis=0)
        n_rewards = len(ro.a.rewards)
    else:
        frame, n_rewards = ro.frames[step], len(ro.rewards)
    trace = trace_with_marker(ro, min(step, n_rewards - 1))
    if trace.shape[1] != frame.shape[1]:
        from PIL import Image
        trace = np.asarray(Image.fromarray(trace).resize((frame.shape[1], trace.shape[0])))
    return np.concatenate([frame, trace], axis=0)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def write_video(ro: Rollout | Comparison, path: str | os.PathLike, fps: int = 25, every: int = 1) -> Path:
    """The rollout (or the side-by-side comparison) as mp4 (imageio-ffmpeg) or gif (Pillow),
    picked by the suffix; each video frame is the rendered frame(s) above the reward trace with
    its moving marker."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(ro.a.frames) if isinstance(ro, Comparison) else len(ro.frames)
    frames = [composite(ro, t) for t in range(0, n, max(1, every))]
    if path.suffix == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 * max(1, every) / fps, loop=0)
    else:
        h, w = frames[0].shape[:2]
        pad_h, pad_w = (-h) % 16, (-w) % 16  # codec blocks of 16 pixels
        if pad_h or pad_w:
            frames = [np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=255) for f in frames]
        imageio.mimsave(path, frames, fps=fps / max(1, every), macro_block_size=16)
    return path
