"""tdmpc_lib.stats: score matrices, IQM / mean with bootstrap CIs, per-seed CIs."""
import json

import numpy as np
import pytest

from tdmpc_lib import stats

# 4 runs x 2 tasks. Pooled, sorted: 0 10 20 30 | 50 60 80 100; the IQM drops the 2 lowest and
# the 2 highest of the 8 scores: (20 + 30 + 50 + 60) / 4 = 40.
# Mean of task means: task 0 (10+20+30+0)/4 = 15, task 1 (80+60+100+50)/4 = 72.5 -> 43.75.
HAND = np.array([[10.0, 80.0], [20.0, 60.0], [30.0, 100.0], [0.0, 50.0]])
HAND_IQM, HAND_MEAN = 40.0, 43.75


def _width(ci):
    return ci[1] - ci[0]


def test_point_estimates_by_hand():
    r = stats.aggregate({"hand": HAND}, reps=200)["hand"]
    assert abs(r["iqm"] - HAND_IQM) < 1e-9
    assert abs(r["mean"] - HAND_MEAN) < 1e-9
    assert (r["runs"], r["tasks"]) == (4, 2)
    json.dumps(r)  # plain Python numbers
    assert all(type(v) is float for v in [r["iqm"], r["mean"], *r["iqm_ci"], *r["mean_ci"]])


def test_ci_contains_estimate_and_shrinks_with_runs():
    rng = np.random.default_rng(1)
    few = rng.normal(50.0, 10.0, size=(5, 3))
    many = rng.normal(50.0, 10.0, size=(80, 3))
    agg = stats.aggregate({"few": few, "many": many}, reps=1000)
    for r in agg.values():
        for key in ("iqm", "mean"):
            lo, hi = r[f"{key}_ci"]
            assert lo <= r[key] <= hi
    assert _width(agg["many"]["iqm_ci"]) < _width(agg["few"]["iqm_ci"])
    assert _width(agg["many"]["mean_ci"]) < _width(agg["few"]["mean_ci"])


def test_identical_values_and_single_run_give_zero_width_ci():
    agg = stats.aggregate({"flat": np.full((6, 3), 12.5), "one": np.array([[10.0, 30.0, 20.0]])}, reps=200)
    assert agg["flat"]["iqm_ci"] == pytest.approx([12.5, 12.5]) and agg["flat"]["iqm"] == pytest.approx(12.5)
    assert agg["flat"]["mean_ci"] == pytest.approx([12.5, 12.5])
    one = agg["one"]
    assert one["runs"] == 1 and one["mean"] == pytest.approx(20.0)
    assert one["iqm_ci"] == pytest.approx([one["iqm"]] * 2) and one["mean_ci"] == pytest.approx([20.0, 20.0])


def test_reproducible_and_global_rng_untouched():
    rng = np.random.default_rng(2)
    mats = {"a": rng.uniform(0, 100, size=(6, 4)), "b": rng.uniform(0, 100, size=(6, 4))}
    np.random.seed(123)
    before = np.random.get_state()
    first = stats.aggregate(mats, reps=300, seed=7)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    assert stats.aggregate(mats, reps=300, seed=7) == first
    assert stats.aggregate({"b": mats["b"]}, reps=300, seed=7)["b"] == first["b"]  # independent of other arms
    assert stats.aggregate(mats, reps=300, seed=8)["a"]["iqm_ci"] != first["a"]["iqm_ci"]


def test_score_matrix():
    m = stats.score_matrix({"walk": [100.0, 900.0, 500.0], "run": np.array([0.0, 1000.0, 250.0])}, ["run", "walk"])
    assert m.shape == (3, 2)
    np.testing.assert_allclose(m, [[0.0, 10.0], [100.0, 90.0], [25.0, 50.0]])
    with pytest.raises(ValueError, match="different numbers of runs"):
        stats.score_matrix({"walk": [1.0, 2.0], "run": [1.0]}, ["walk", "run"])
    with pytest.raises(ValueError, match="No returns"):
        stats.score_matrix({"walk": [1.0]}, ["walk", "run"])


def test_seed_ci():
    r = stats.seed_ci([1.0, 2.0, 3.0, 6.0], reps=500)
    assert r["mean"] == 3.0 and r["n"] == 4
    assert 1.0 <= r["ci"][0] <= 3.0 <= r["ci"][1] <= 6.0
    assert stats.seed_ci([1.0, 2.0, 3.0, 6.0], reps=500) == r
    assert stats.seed_ci([0.7]) == {"mean": 0.7, "ci": [0.7, 0.7], "n": 1}
    flat = stats.seed_ci([0.1, 0.1, 0.1])
    assert flat["ci"] == [flat["mean"], flat["mean"]] and flat["mean"] == pytest.approx(0.1)


def test_format_aggregate_and_per_task_table():
    agg = stats.aggregate({"teacher": HAND, "student-fp16": HAND / 2}, reps=200)
    text = stats.format_aggregate(agg)
    assert "teacher" in text and "student-fp16" in text
    assert "40.00" in text and "43.75" in text and "20.00" in text and "4 x 2" in text
    df = stats.per_task_table({"teacher": {"walk": [800.0, 600.0], "run": [100.0]},
                               "student": {"walk": [400.0], "run": [300.0, 100.0]}})
    assert list(df.columns) == ["teacher", "student"] and list(df.index) == ["walk", "run", "normalized score"]
    assert df.loc["walk", "teacher"] == 700.0 and df.loc["run", "student"] == 200.0
    assert df.loc["normalized score", "teacher"] == pytest.approx((70.0 + 10.0) / 2)
    assert df.loc["normalized score", "student"] == pytest.approx((40.0 + 20.0) / 2)
