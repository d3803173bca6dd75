"""The study's rollout viewer: ipywidgets around tdmpc_lib.render, to step through an episode of a
checkpoint, alone or beside a second checkpoint stepped in lockstep from the same initial state.

    viewer = RolloutViewer({"student": "runs/mini/train/.../model.pt", "teacher": "..."},
                           checkpoint=".../model.pt", compare="...teacher.pt")
    viewer.render(); viewer.widget          # ipywidgets: pickers, Play <-> slider, frames, trace, table

The Play button is linked to the frame slider in the browser (jslink), so playing needs no round
trip per frame for the slider; the frames, the reward marker and the step table follow the slider.
"""
from __future__ import annotations

import dataclasses
import html

import numpy as np

from ..planner import PlannerConfig
from ..render import Comparison, Rollout, compare, png_bytes, rollout, trace_with_marker
from .profiles import ViewerConfig

NO_COMPARISON = "none"  # the compare picker's "off" value (ViewerConfig.compare None means the same)


def table_html(table, step: int, window: int = 6) -> str:
    """The rows of `table` (Comparison.table()) from step - window to step + window as an HTML
    table; the row of `step` is highlighted and marked class="current" data-step="<step>"."""
    n = len(table)
    if n == 0:
        return "<i>no steps</i>"
    step = int(np.clip(step, 0, n - 1))
    lo = max(0, min(step - window, n - 2 * window - 1))
    hi = min(n, lo + 2 * window + 1)
    head = "".join(f"<th style='padding:0 6px'>{html.escape(str(c))}</th>" for c in ["step", *table.columns])
    rows = []
    for t in range(lo, hi):
        cells = "".join(f"<td style='padding:0 6px;text-align:right'>{v:.3f}</td>" for v in table.iloc[t])
        mark = " class='current' style='background:#ffe9a8;font-weight:bold'" if t == step else ""
        rows.append(f"<tr data-step='{t}'{mark}><td style='padding:0 6px;text-align:right'>{t}</td>{cells}</tr>")
    return (f"<table class='tdmpc-step-table' style='font-family:monospace;font-size:11px;border-collapse:collapse'>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<div style='font-size:11px;color:#666'>steps {lo}-{hi - 1} of 0-{n - 1}; the row of the frame "
            f"shown is highlighted (its action, the reward it earned, the returns after it)</div>")


# ---------------------------------------------------------------------------- the widget
class RolloutViewer:
    """ipywidgets viewer: checkpoint / comparison / task / seed / policy pickers and a Render
    button; a Play button jslinked to the frame slider; the frame (both frames side by side when
    comparing); the reward trace(s) with a moving marker; the per-step table of a comparison.

    checkpoints: {label: path or checkpoint name} offered by both pickers. cfg.checkpoint picks
    checkpoint A (None: the first); cfg.compare picks B: None or 'none' for no comparison, a path
    or name (added to the choices when missing), or 'teacher' (the first choice whose label
    starts with 'teacher'; no comparison when there is none).

    planner: the MPPI settings of 'plan' (None: TD-MPC2's; notebook 06 passes the profile's).
    State after render(): `rollout` (A's Rollout), `comparison` (a Comparison or None),
    `step` (the frame shown)."""

    def __init__(self, checkpoints: dict[str, str], config: ViewerConfig | None = None, device: str = "cpu",
                 tasks: list[str] | None = None, planner: PlannerConfig | None = None, **overrides):
        import ipywidgets as w

        from ..tasks import MT30

        cfg = dataclasses.replace(config or ViewerConfig(), **overrides)
        self.cfg, self.device, self.planner = cfg, device, planner
        self.checkpoints = dict(checkpoints)
        if not self.checkpoints:
            raise ValueError("the viewer needs at least one checkpoint")
        self._models: dict[str, object] = {}
        self.rollout: Rollout | None = None
        self.comparison: Comparison | None = None
        self.step = 0
        self._frame_png: list[bytes] = []
        self._frame_png_b: list[bytes] = []
        self._trace_png: dict[int, bytes] = {}
        self._table = None
        tasks = list(tasks or MT30.tasks)
        if cfg.task not in tasks:
            tasks.insert(0, cfg.task)
        compare_value = self._compare_choice(cfg.compare)
        paths = list(self.checkpoints.values())
        default_ckpt = cfg.checkpoint if cfg.checkpoint in paths else paths[0]
        if cfg.checkpoint is not None and cfg.checkpoint not in paths:
            self.checkpoints = {f"given: {cfg.checkpoint}": cfg.checkpoint, **self.checkpoints}
            default_ckpt = cfg.checkpoint
        self.checkpoint_picker = w.Dropdown(options=list(self.checkpoints.items()), value=default_ckpt,
                                            description="checkpoint A", layout=w.Layout(width="520px"),
                                            style={"description_width": "100px"})
        self.compare_picker = w.Dropdown(options=[("no comparison", NO_COMPARISON), *self.checkpoints.items()],
                                         value=compare_value, description="beside it, B",
                                         layout=w.Layout(width="520px"), style={"description_width": "100px"})
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
        self.frame_b = w.Image(format="png", width=cfg.width, height=cfg.height)
        # Each side as wide as its frame, so the trace below spans both; long names are cut
        # with an ellipsis and shown whole as the tooltip.
        side = w.Layout(width=f"{cfg.width}px")
        self.label_a, self.label_b = w.Label(value="", layout=side), w.Label(value="", layout=side)
        self.trace = w.Image(format="png", width=cfg.width)
        self.readout = w.Label(value="")
        self.table = w.HTML(value="")
        # CSS classes name the parts for a browser (tests/test_browser.py) and for styling.
        for widget, name in ((self.checkpoint_picker, "checkpoint"), (self.compare_picker, "compare"),
                             (self.task_picker, "task"), (self.seed_picker, "seed"), (self.steps_picker, "steps"),
                             (self.policy_picker, "policy"), (self.render_button, "render"), (self.status, "status"), (self.play, "play"),
                             (self.slider, "slider"), (self.frame, "frame-a"), (self.frame_b, "frame-b"),
                             (self.trace, "trace"), (self.readout, "readout"), (self.table, "table")):
            widget.add_class(f"tdmpc-{name}")
        self.slider.observe(self._on_slider, names="value")
        self.render_button.on_click(lambda _: self.render())
        pickers = w.VBox([self.checkpoint_picker, self.compare_picker,
                          w.HBox([self.task_picker, self.seed_picker, self.steps_picker]),
                          w.HBox([self.policy_picker, self.render_button]), self.status])
        self.side_b = w.VBox([self.label_b, self.frame_b],
                             layout=w.Layout(margin=f"0 0 0 {Comparison.GAP}px", width=f"{cfg.width}px"))
        frames = w.HBox([w.VBox([self.label_a, self.frame], layout=w.Layout(width=f"{cfg.width}px")), self.side_b])
        player = w.VBox([w.HBox([self.play, self.slider]), frames, self.trace, self.readout, self.table])
        self.widget = w.VBox([pickers, player])
        self.widget.add_class("tdmpc-viewer")
        self._set_comparing(False)

    def _compare_choice(self, compare: str | None) -> str:
        """cfg.compare as a value of the compare picker (a path, or NO_COMPARISON)."""
        if compare in (None, NO_COMPARISON):
            return NO_COMPARISON
        if compare == "teacher":
            teachers = [p for label, p in self.checkpoints.items() if label.lower().startswith("teacher")]
            return teachers[0] if teachers else NO_COMPARISON
        if compare in self.checkpoints:  # a label
            return self.checkpoints[compare]
        if compare not in self.checkpoints.values():
            self.checkpoints[f"given: {compare}"] = compare
        return compare

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    def _model(self, path: str):
        if path not in self._models:
            from ..checkpoint import load_checkpoint
            self._models[path] = load_checkpoint(path, device=self.device)
        return self._models[path]

    def _label(self, path: str) -> str:
        return next((label for label, p in self.checkpoints.items() if p == path), str(path))

    def _set_comparing(self, on: bool) -> None:
        self.side_b.layout.display = None if on else "none"
        self.table.layout.display = None if on else "none"

    def render(self) -> Rollout | Comparison:
        """Roll out checkpoint A (and B beside it, in lockstep, when one is picked) on the picked
        task and seed, and show frame 0. Returns the Rollout, or the Comparison."""
        path, path_b = self.checkpoint_picker.value, self.compare_picker.value
        self.render_button.disabled = True
        try:
            def progress(t, n):
                if t % 10 == 0 or t == n:
                    self.status.value = f"rendering step {t}/{n}..."
            common = dict(task=self.task_picker.value, seed=int(self.seed_picker.value),
                          policy=self.policy_picker.value, steps=int(self.steps_picker.value), width=self.cfg.width,
                          height=self.cfg.height, camera_id=self.cfg.camera_id, device=self.device, on_step=progress,
                          planner=self.planner)
            if path_b == NO_COMPARISON:
                shown = rollout(self._model(path), checkpoint=path, **common)
            else:
                shown = compare(self._model(path), self._model(path_b), checkpoints=(path, path_b),
                                labels=(self._label(path), self._label(path_b)), **common)
        finally:
            self.render_button.disabled = False
        self.show_result(shown)
        return shown

    def show_result(self, shown: Rollout | Comparison) -> None:
        """Load a Rollout, or a Comparison (both sides and the step table), into the player at frame 0."""
        cmp = shown if isinstance(shown, Comparison) else None
        ro = cmp.a if cmp else shown
        self.rollout, self.comparison, self._table = ro, cmp, cmp.table() if cmp else None
        self._frame_png = [png_bytes(f) for f in ro.frames]
        self._frame_png_b = [png_bytes(f) for f in cmp.b.frames] if cmp else []
        self._set_comparing(cmp is not None)
        if cmp:
            for label, name, text in ((self.label_a, "A", cmp.labels[0]), (self.label_b, "B", cmp.labels[1])):
                label.value = label.tooltip = f"{name}: {text}"
        else:
            self.label_a.value = self.label_a.tooltip = self._label(ro.checkpoint) if ro.checkpoint else ""
        self.trace.width = shown.trace.shape[1]
        self._trace_png = {}
        self.play.value = self.slider.value = 0
        self.play.max = self.slider.max = len(ro.frames) - 1
        head = f"{ro.task}, seed {ro.seed}, {ro.policy}"
        self.status.value = (f"{head}: {len(ro.rewards)} steps, return {ro.episode_return:.1f}" if cmp is None else
                             f"{head}, lockstep from the same initial state: {len(ro.rewards)} steps, return A "
                             f"{ro.episode_return:.1f}, return B {cmp.b.episode_return:.1f}")
        self.show(0)

    def _on_slider(self, change) -> None:
        self.show(int(change["new"]))

    def show(self, step: int) -> None:
        """Show frame `step` (of both sides), move the reward marker there and centre the step table on it."""
        ro = self.rollout
        if ro is None:
            return
        step = int(np.clip(step, 0, len(ro.frames) - 1))
        self.step = step
        shown = self.comparison or ro
        r_i = min(step, len(ro.rewards) - 1)
        if r_i not in self._trace_png:  # Play revisits frames; encode each marked trace once
            self._trace_png[r_i] = png_bytes(trace_with_marker(shown, r_i))
        self.frame.value = self._frame_png[step]
        if self.comparison is not None:
            self.frame_b.value = self._frame_png_b[step]
        self.trace.value = self._trace_png[r_i]
        done = float(ro.rewards[:step].sum())
        if self.comparison is None:
            self.readout.value = (f"frame {step}/{len(ro.frames) - 1}   reward of the next action "
                                  f"{ro.rewards[r_i]:.3f}   return so far {done:.1f}")
        else:
            b = self.comparison.b
            self.readout.value = (f"frame {step}/{len(ro.frames) - 1}   reward of the next action A "
                                  f"{ro.rewards[r_i]:.3f}, B {b.rewards[r_i]:.3f}   return so far A {done:.1f}, "
                                  f"B {float(b.rewards[:step].sum()):.1f}")
            self.table.value = table_html(self._table, r_i)
