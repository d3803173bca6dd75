"""The rollout viewer's side-by-side comparison: two checkpoints stepped in lockstep from the same
initial state, each side equal to its own single rollout; the per-step table; the marker of the
shared reward axis; the side-by-side mp4; the widget in both modes; notebook 06's `compare`
parameter."""
import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")

from tdmpc_lib import make_world_model, save_checkpoint  # noqa: E402
from tdmpc_lib.planner import PlannerConfig  # noqa: E402
from tdmpc_lib.render import (Comparison, compare, marker_column, reward_traces, rollout,  # noqa: E402
                              trace_with_marker, write_video)
from tdmpc_lib.study.viewer import RolloutViewer, table_html  # noqa: E402

TASK = "cartpole-swingup"
SMALL = dict(width=64, height=48)
# MPPI small enough for a shared 2-core CPU; sampling still draws from torch's generator.
TINY_MPPI = PlannerConfig(horizon=2, iterations=1, num_samples=16, num_elites=4, num_pi_trajs=2)


@pytest.fixture(scope="module")
def models():
    return make_world_model("tiny", seed=0), make_world_model("tiny", seed=1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, models):
    folder = tmp_path_factory.mktemp("ckpts")
    paths = {}
    for name, model in zip(("student", "teacher"), models):
        paths[name] = str(folder / f"{name}.pt")
        save_checkpoint(model, paths[name])
    return paths


def test_same_checkpoint_twice_gives_identical_sides(models):
    """Same model on both sides: the lockstep loop starts both environments from the same state
    and keeps them identical (first frames equal, then every frame, reward and action)."""
    cmp = compare(models[0], models[0], TASK, seed=3, steps=5, **SMALL)
    assert np.array_equal(cmp.a.frames[0], cmp.b.frames[0]) and cmp.a.frames[0].std() > 0
    assert all(np.array_equal(x, y) for x, y in zip(cmp.a.frames, cmp.b.frames))
    assert np.array_equal(cmp.a.rewards, cmp.b.rewards) and np.array_equal(cmp.a.actions, cmp.b.actions)


@pytest.mark.parametrize("policy", ["prior", "plan"])
def test_each_side_equals_its_single_rollout(models, policy):
    """Each side of a comparison is bit-identical to a single rollout of that model: same
    initial state, own planner, and (for MPPI) its own copy of the seeded random stream, so the
    other side's sampling does not shift it."""
    ma, mb = models
    cmp = compare(ma, mb, TASK, seed=2, policy=policy, steps=4, planner=TINY_MPPI, **SMALL)
    for side, model in ((cmp.a, ma), (cmp.b, mb)):
        single = rollout(model, TASK, seed=2, policy=policy, steps=4, planner=TINY_MPPI, **SMALL)
        assert np.array_equal(side.rewards, single.rewards)
        assert np.array_equal(side.actions, single.actions)
        assert side.episode_return == single.episode_return
        assert all(np.array_equal(x, y) for x, y in zip(side.frames, single.frames))
    assert np.array_equal(cmp.a.frames[0], cmp.b.frames[0])  # the same initial state
    if policy == "prior":  # different policies act differently from the same state
        assert not np.array_equal(cmp.a.actions, cmp.b.actions)


def test_table_marker_and_mp4(models, tmp_path):
    import imageio.v2 as imageio

    cmp = compare(*models, TASK, seed=1, steps=7, labels=("student", "teacher"), **SMALL)
    table = cmp.table()
    assert len(table) == len(cmp.a.rewards) == len(cmp.b.rewards) == 7  # one row per step
    assert list(table.index) == list(range(7))
    np.testing.assert_allclose(table["return A"].iloc[-1], cmp.a.episode_return, rtol=1e-6)
    np.testing.assert_allclose(table["return B"], np.cumsum(cmp.b.rewards), rtol=1e-6)
    np.testing.assert_allclose(table["|action A|"], np.linalg.norm(cmp.a.actions, axis=1), rtol=1e-6)
    # both traces on one axis, one marker: the marker's column is the step's column
    assert cmp.trace_y.shape == (2, 7) and cmp.trace.shape[1] == 2 * SMALL["width"] + Comparison.GAP
    columns = [marker_column(trace_with_marker(cmp, t)) for t in range(7)]
    assert columns == [int(x) for x in cmp.trace_x] and columns == sorted(set(columns))
    # the trace's columns depend only on the number of steps and the width (what the browser test uses)
    assert np.array_equal(reward_traces([np.zeros(7)] * 2, cmp.trace.shape[1])[1], cmp.trace_x)
    html = table_html(table, 6, window=2)
    assert "data-step='6' class='current'" in html and html.count("<tr data-step=") == 5
    path = write_video(cmp, tmp_path / "compare.mp4", fps=10)
    frames = imageio.mimread(path)
    assert len(frames) == len(cmp.a.frames) == 8
    assert frames[0].shape[1] >= cmp.trace.shape[1]  # both frames side by side (padded to 16)


def test_viewer_widget_compares_and_switches_off(checkpoints):
    viewer = RolloutViewer({"student: s": checkpoints["student"], "teacher: t": checkpoints["teacher"]},
                           checkpoint=checkpoints["student"], compare="teacher", task=TASK, steps=5, fps=10,
                           **SMALL)
    assert viewer.compare_picker.value == checkpoints["teacher"]  # 'teacher' = the teacher among the choices
    shown = viewer.render()
    assert isinstance(shown, Comparison) and viewer.comparison is shown and viewer.rollout is shown.a
    assert viewer.side_b.layout.display is None and viewer.slider.max == 5
    assert "data-step='0' class='current'" in viewer.table.value
    frame_a, frame_b, trace = viewer.frame.value, viewer.frame_b.value, viewer.trace.value
    viewer.slider.value = 4  # what Play does through the jslink
    assert viewer.step == 4 and "data-step='4' class='current'" in viewer.table.value
    assert viewer.frame.value != frame_a and viewer.frame_b.value != frame_b and viewer.trace.value != trace
    assert "return so far A" in viewer.readout.value
    viewer.compare_picker.value = "none"  # the single-checkpoint mode
    single = viewer.render()
    assert viewer.comparison is None and single is viewer.rollout and single.checkpoint == checkpoints["student"]
    assert viewer.side_b.layout.display == "none" and viewer.table.layout.display == "none"
    # a checkpoint not among the choices is added; no teacher among them means no comparison
    other = RolloutViewer({"s": checkpoints["student"]}, compare=checkpoints["teacher"], **SMALL)
    assert other.compare_picker.value == checkpoints["teacher"]
    assert RolloutViewer({"s": checkpoints["student"]}, **SMALL).compare_picker.value == "none"


def test_compare_parameter_is_checked():
    from tdmpc_lib.study import profiles
    from tdmpc_lib.study.params import ParameterError, resolve

    for ok in ("teacher", "none", None):
        assert resolve("06_rollout_viewer", profiles.SMOKE, None, {"viewer.compare": ok}).viewer.compare == ok
    with pytest.raises(ParameterError, match="'viewer.compare'"):
        resolve("06_rollout_viewer", profiles.SMOKE, None, {"viewer.compare": "no-such.pt"})
    assert profiles.SMOKE.viewer.compare == profiles.MINI.viewer.compare == "teacher"
    assert profiles.MINI.replace(**{"viewer.compare": None}).viewer.compare is None
