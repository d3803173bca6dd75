"""Datasets: chunk reader/converter, memory-mapped store, slice sampler, collect, hub, CLI.

Synthetic chunks encode each row's global store index in its values (obs[..., 0], action[..., 0]
and reward), so the tests can check exactly which rows the sampler returned."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "osmesa")
tensordict = pytest.importorskip("tensordict")

from tdmpc_lib.data import (Batch, DataError, SliceSampler, collect, convert_chunks, open_store,  # noqa: E402
                            read_chunk)
from tdmpc_lib.data.__main__ import main as cli  # noqa: E402
from tdmpc_lib.data.collect import rollout  # noqa: E402
from tdmpc_lib.data.store import RowArray  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "tdmpc-opt_mt30_1M_dist045_fp16.pt"
L, O, A = 501, 24, 6


def make_chunk(path, tasks, first_row=0, length=L, nan_row0=True, obs_dim=O):
    """A public-format chunk: one episode per entry of `tasks`; values = global row index."""
    n = len(tasks)
    rows = first_row + np.arange(n * length, dtype=np.float32).reshape(n, length)
    obs = np.zeros((n, length, obs_dim), np.float32)
    obs[..., 0] = rows
    obs[..., 1] = np.asarray(tasks, np.float32)[:, None]
    action = np.zeros((n, length, A), np.float32)
    action[..., 0] = rows
    reward = rows.copy()
    if nan_row0:
        action[:, 0], reward[:, 0] = np.nan, np.nan
    else:  # like 2023 data: uninitialized garbage in row 0
        action[:, 0], reward[:, 0] = 1e30, -7.0
    task = np.repeat(np.asarray(tasks, np.int32)[:, None], length, 1)
    td = tensordict.TensorDict({"obs": torch.from_numpy(obs), "action": torch.from_numpy(action),
                                "reward": torch.from_numpy(reward), "task": torch.from_numpy(task)},
                               batch_size=[n, length])
    torch.save(td, path)
    return path


@pytest.fixture
def chunks(tmp_path):
    """Two chunks, 6 episodes x 501 rows across tasks 3 and 7 (contiguous blocks per task)."""
    a = make_chunk(tmp_path / "chunk_0.pt", [7, 7, 3])
    b = make_chunk(tmp_path / "chunk_1.pt", [3, 3, 3], first_row=3 * L, nan_row0=False)
    return [a, b]


@pytest.fixture
def store_dir(tmp_path, chunks):
    out = tmp_path / "store"
    convert_chunks(chunks, out, trust_pickle=True, progress=False)
    return out


# ---------------------------------------------------------------------------- conversion
def test_convert_manifest_and_arrays(store_dir, chunks):
    m = json.loads((store_dir / "manifest.json").read_text())
    assert (m["task_set"], m["episode_length"], m["num_episodes"], m["num_rows"]) == ("mt30", L, 6, 6 * L)
    assert m["episodes_per_task"] == {"cheetah-run": 4, "pendulum-swingup": 2}
    assert m["keys"]["obs"] == {"dtype": "float32", "row_shape": [24]} and m["keys"]["task"]["dtype"] == "int32"
    assert [s["source"] for s in m["segments"]] == ["chunk_0.pt", "chunk_1.pt"]
    assert all(len(s["source_sha256"]) == 64 for s in m["segments"])
    store = open_store(store_dir)
    assert (store.num_rows, store.num_episodes, store.task_set) == (6 * L, 6, "mt30")
    assert store.obs.shape == (6 * L, O) and store.action.shape == (6 * L, A) and store.reward.shape == (6 * L,)
    assert isinstance(store.obs, RowArray)  # two segments
    np.testing.assert_array_equal(store.obs[:][:, 0], np.arange(6 * L))
    np.testing.assert_array_equal(store.episode_starts, np.arange(7) * L)
    np.testing.assert_array_equal(store.episode_task, [7, 7, 3, 3, 3, 3])
    np.testing.assert_array_equal(store.task[np.array([0, L, 2 * L, 5 * L + 3])], [7, 7, 3, 3])
    real = np.setdiff1d(np.arange(6 * L), store.episode_starts[:-1])
    np.testing.assert_array_equal(store.reward[real], real)
    assert np.isnan(store.reward[store.episode_starts[:-1]]).all()  # row 0: NaN whatever was stored
    assert np.isnan(store.action[4 * L]).all()
    assert "cheetah-run 4" in store.summary()


def test_convert_resumes(tmp_path, chunks, capsys):
    out = tmp_path / "store"
    convert_chunks(chunks[:1], out, trust_pickle=True, progress=False)
    before = (out / "seg_0000" / "obs.npy").stat().st_mtime_ns
    # an interrupted run left a half-written segment for chunk_1 behind
    (out / "seg_0001.partial").mkdir()
    (out / "seg_0001.partial" / "obs.npy").write_bytes(b"garbage")
    convert_chunks(chunks, out, trust_pickle=True, progress=True)
    assert "chunk_0.pt: already converted as seg_0000, skipped" in capsys.readouterr().out
    assert (out / "seg_0000" / "obs.npy").stat().st_mtime_ns == before
    assert not (out / "seg_0001.partial").exists()
    assert open_store(out).num_episodes == 6
    convert_chunks(chunks, out, trust_pickle=True, progress=False)  # everything skipped
    assert json.loads((out / "manifest.json").read_text())["num_episodes"] == 6


def test_legacy_format_and_info_json(tmp_path, chunks, capsys):
    td = torch.load(chunks[0], weights_only=False)
    torch.save(td, tmp_path / "old.pt", _use_new_zipfile_serialization=False)  # cannot be memory-mapped
    assert torch.equal(read_chunk(tmp_path / "old.pt", trust_pickle=True)["obs"], td["obs"])
    convert_chunks([tmp_path / "old.pt"], tmp_path / "s", trust_pickle=True, progress=False)
    assert cli(["info", str(tmp_path / "s"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["segments"][0]["source"] == "old.pt"
    with pytest.raises(DataError, match="episodes have 501 rows, expected 7"):
        convert_chunks([chunks[0]], tmp_path / "bad", trust_pickle=True, task_set="mt30", episode_length=7,
                       progress=False)
    assert cli(["info", str(tmp_path / "bad"), "--json"]) == 2


def test_failed_conversion_leaves_store_usable(tmp_path, chunks):
    out = tmp_path / "store"
    bad = make_chunk(tmp_path / "bad.pt", [1, 99])
    with pytest.raises(DataError, match="task id 99"):
        convert_chunks([chunks[0], bad], out, trust_pickle=True, progress=False)
    assert not list(out.glob("*.partial")) and open_store(out).num_episodes == 3


@pytest.mark.parametrize("case, match", [
    ("length", "episodes have 101 rows, expected 501"),
    ("task", "task id 30, outside"),
    ("task_change", "changes task id"),
    ("nan_action", "NaN/inf in action of episode 1, row 5"),
    ("nan_obs_row0", "NaN/inf in obs of episode 0, row 0"),
    ("obs_dim", "cannot tell the task set of observations of size 20"),
    ("action_dim", r"action has shape \(1, 501, 4\), expected \(1, 501, 6\)"),
    ("truncated", "truncated"),
    ("garbage", "cannot read chunk"),
    ("not_td", "not a TD-MPC2 dataset chunk"),
])
def test_convert_errors(tmp_path, case, match):
    path = tmp_path / "c.pt"
    if case == "length":
        make_chunk(path, [0, 1], length=101)
    elif case == "task":
        make_chunk(path, [0, 30])
    elif case == "obs_dim":
        make_chunk(path, [0], obs_dim=20)
    elif case == "action_dim":
        make_chunk(path, [0])
        td = torch.load(path, weights_only=False)
        td = tensordict.TensorDict({**{k: td[k] for k in ("obs", "reward", "task")},
                                    "action": torch.zeros(1, L, 4)}, batch_size=[1, L])
        torch.save(td, path)
    elif case == "not_td":
        torch.save({"weights": torch.zeros(3)}, path)
    elif case == "garbage":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
    else:
        make_chunk(path, [0, 1])
        if case == "truncated":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        else:
            td = torch.load(path, weights_only=False)
            if case == "task_change":
                td["task"][1, 200] = 2
            elif case == "nan_action":
                td["action"][1, 5, 2] = float("nan")
            else:
                td["obs"][0, 0, 3] = float("nan")
            torch.save(td, path)
    with pytest.raises(DataError, match=match) as err:
        convert_chunks([path], tmp_path / "out", trust_pickle=True, progress=False)
    assert "\n" not in str(err.value)


def test_random_bytes_are_a_corrupt_chunk(tmp_path):
    """Unpickling random bytes fails in many ways (OverflowError, KeyError, struct.error, ...):
    each is the one-line 'cannot read chunk' DataError, for 64 fixed draws."""
    rng = np.random.default_rng(0)
    path = tmp_path / "c.pt"
    for _ in range(64):
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        with pytest.raises(DataError, match="cannot read chunk"):
            convert_chunks([path], tmp_path / "out", trust_pickle=True, progress=False)



def test_trust_flag_required(tmp_path, chunks, capsys):
    with pytest.raises(DataError, match="--trust-pickle"):
        convert_chunks(chunks, tmp_path / "out")
    with pytest.raises(DataError, match="trust_pickle=True"):
        read_chunk(chunks[0])
    assert cli(["convert", "--chunks", str(chunks[0]), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: refusing to unpickle") and "\n" not in err
    assert cli(["convert", "--chunks", *map(str, chunks), "--out", str(tmp_path / "o2"), "--trust-pickle",
                "--quiet"]) == 0
    assert cli(["info", str(tmp_path / "o2")]) == 0
    assert "6 episodes x 501 rows" in capsys.readouterr().out


# ---------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("gather", ["pread", "mmap"])
def test_sampler_rows_boundaries_and_row0(store_dir, gather):
    store = open_store(store_dir)
    sampler = SliceSampler(store, batch_size=512, horizon=3, seed=0, gather=gather)
    seen_first = set()
    for _ in range(20):
        b = sampler.sample()
        assert isinstance(b, Batch) and b.horizon == 3
        assert b.obs.shape == (4, 512, O) and b.action.shape == (3, 512, A) and b.reward.shape == (3, 512, 1)
        assert b.task.shape == (512,) and b.task.dtype == torch.int64 and b.rows.shape == (4, 512)
        rows = b.rows
        assert torch.equal(rows, rows[:1] + torch.arange(4)[:, None])
        assert torch.equal(rows[0] // L, rows[-1] // L)  # never across an episode boundary
        assert torch.equal(b.obs[..., 0], rows.float())
        assert torch.equal(b.action[..., 0], rows[1:].float()) and torch.equal(b.reward[..., 0], rows[1:].float())
        assert not (rows[1:] % L == 0).any()  # row 0 never supplies an action/reward
        assert torch.isfinite(b.action).all() and torch.isfinite(b.reward).all()
        assert torch.equal(b.task, b.obs[0, :, 1].long())
        seen_first.update((rows[0] % L).tolist())
    assert 0 in seen_first and L - 4 in seen_first and max(seen_first) == L - 4  # all valid starts reachable


def test_sampler_episode_subset_and_short_episodes(tmp_path):
    make_chunk(tmp_path / "c.pt", [0, 1, 2], length=5)
    convert_chunks([tmp_path / "c.pt"], tmp_path / "s", trust_pickle=True, episode_length=5, progress=False)
    store = open_store(tmp_path / "s")
    b = SliceSampler(store, batch_size=64, horizon=4, seed=1).sample()  # one valid start per episode
    assert set(b.rows[0].tolist()) == {0, 5, 10}
    b = SliceSampler(store, batch_size=64, horizon=2, seed=1, episodes=[1]).sample()
    assert set((b.rows[0] // 5).tolist()) == {1} and set(b.task.tolist()) == {1}
    with pytest.raises(ValueError, match="no episode has the 6 rows"):
        SliceSampler(store, batch_size=4, horizon=5)


def test_sampler_determinism_and_resume(store_dir, tmp_path):
    store = open_store(store_dir)
    a, b = SliceSampler(store, 32, 3, seed=5), SliceSampler(store, 32, 3, seed=5)
    assert all(torch.equal(a.sample().rows, b.sample().rows) for _ in range(3))
    other = SliceSampler(store, 32, 3, seed=6).sample().rows
    assert not torch.equal(other, SliceSampler(store, 32, 3, seed=5).sample().rows)
    state = a.state_dict()
    torch.save(state, tmp_path / "s.pt")
    json.dumps(state)
    expected = [a.sample() for _ in range(3)]
    resumed = SliceSampler(store, 32, 3, seed=123)
    resumed.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    assert resumed.batches == 3
    for e in expected:
        r = resumed.sample()
        assert torch.equal(r.rows, e.rows) and torch.equal(r.obs, e.obs) and torch.equal(r.task, e.task)
    with pytest.raises(ValueError, match="batch_size"):
        SliceSampler(store, 16, 3).load_state_dict(state)


def test_prefetch_gives_the_same_batches_and_resumes(store_dir):
    store = open_store(store_dir)
    plain, ahead = SliceSampler(store, 16, 3, seed=9), SliceSampler(store, 16, 3, seed=9, prefetch=3)
    for _ in range(4):
        assert torch.equal(plain.sample().obs, ahead.sample().obs)
    state = ahead.state_dict()  # three batches are already read ahead: not part of the state
    assert state == plain.state_dict()
    expected = [plain.sample().rows for _ in range(5)]
    resumed = SliceSampler(store, 16, 3, seed=0, prefetch=2)
    resumed.sample()
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.sample().rows, e) for e in expected)
    ahead.close()
    resumed.close()


def test_sampler_device(store_dir):
    store = open_store(store_dir)
    b = SliceSampler(store, 8, 3, device=torch.device("cpu")).sample()
    assert all(t.device.type == "cpu" for t in (b.obs, b.action, b.reward, b.task, b.rows))
    assert b.obs.dtype == torch.float32 and b.rows.dtype == torch.int64
    if torch.cuda.is_available():
        b = SliceSampler(store, 8, 3, device="cuda").sample()
        assert b.obs.is_cuda and b.rows.is_cuda
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            SliceSampler(store, 8, 3, device="cuda")


def test_gather_modes_agree_release_pages_and_row_array(store_dir):
    store = open_store(store_dir)
    a, b = SliceSampler(store, 64, 3, seed=2), SliceSampler(store, 64, 3, seed=2, gather="mmap", release_every=1)
    for _ in range(3):
        x, y = a.sample(), b.sample()
        assert all(torch.equal(u, v) for u, v in zip((x.obs, x.action, x.reward, x.task, x.rows),
                                                      (y.obs, y.action, y.reward, y.task, y.rows)))
    store.release_pages()
    assert torch.isfinite(b.sample().obs).all()
    obs, reward = store.read_slices(np.array([L - 3, 4 * L]), 3, ("obs", "reward"))
    assert obs.shape == (2, 3, O) and obs[0, :, 0].tolist() == [L - 3, L - 2, L - 1] and reward[1, 2] == 4 * L + 2
    with pytest.raises(IndexError, match="outside its segment"):
        store.read_slices(np.array([3 * L - 2]), 3)  # would cross from segment 0 into segment 1
    idx = np.array([5 * L + 7, 3, L * 3, 3 * L - 1])
    np.testing.assert_array_equal(store.obs[idx][:, 0], idx)
    assert store.obs[-1][0] == 6 * L - 1 and store.obs[L - 2:L + 2][:, 0].tolist() == [L - 2, L - 1, L, L + 1]
    with pytest.raises(IndexError):
        store.obs[np.array([6 * L])]


def test_open_store_errors(tmp_path, store_dir):
    with pytest.raises(DataError, match="holds no dataset"):
        open_store(tmp_path / "nothing")
    (store_dir / "seg_0001" / "reward.npy").write_bytes(b"\x93NUMPY broken")
    with pytest.raises(DataError, match="cannot memory-map"):
        open_store(store_dir)


# ---------------------------------------------------------------------------- collect
def test_collect_random_writes_both_formats(tmp_path, capsys):
    out = tmp_path / "col"
    rc = cli(["collect", "--policy", "random", "--tasks", "pendulum-swingup,cartpole-balance", "--episodes", "2",
              "--out", str(out), "--max-steps", "6", "--seed", "3", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    store = open_store(out)
    assert (store.num_episodes, store.episode_length, store.num_rows) == (4, 7, 28)
    assert store.manifest["episodes_per_task"] == {"pendulum-swingup": 2, "cartpole-balance": 2}
    np.testing.assert_array_equal(store.episode_task, [7, 7, 8, 8])
    obs = store.obs[:].reshape(4, 7, O)
    assert not np.allclose(obs[0, 0], obs[1, 0]) and not np.allclose(obs[2, 0], obs[3, 0])  # episodes differ
    assert (obs[:2, :, 3:] == 0).all() and (obs[2:, :, 5:] == 0).all()  # zero-padded to 24
    act = store.action[:].reshape(4, 7, A)
    assert np.isnan(act[:, 0]).all() and (act[:, 1:, 1:] == 0).all() and (np.abs(act[:, 1:, 0]) <= 1).all()
    chunk = read_chunk(out / "chunks" / "chunk_0.pt", trust_pickle=True)
    assert chunk["obs"].shape == (4, 7, O) and chunk["task"].dtype == torch.int32
    assert torch.isnan(chunk["reward"][:, 0]).all() and torch.isnan(chunk["action"][:, 0]).all()
    np.testing.assert_array_equal(chunk["obs"].numpy().reshape(-1, O), store.obs[:])
    convert_chunks([out / "chunks" / "chunk_0.pt"], out, trust_pickle=True, progress=False)  # same sha: skipped
    assert open_store(out).num_episodes == 4
    again = collect(tmp_path / "col2", "pendulum-swingup", 1, "random", seed=3, max_steps=6, progress=False)
    np.testing.assert_array_equal(open_store(tmp_path / "col2").obs[:], store.obs[:7])  # reproducible
    assert again["returns"]["pendulum-swingup"][0] == pytest.approx(float(np.sum(store.reward[1:7])))
    with pytest.raises(ValueError, match="needs a checkpoint"):
        collect(tmp_path / "x", "pendulum-swingup", 1, "prior")


def test_collect_default_length_matches_public_format(tmp_path):
    res = collect(tmp_path / "s", "cup-catch", 1, "random", seed=1, progress=False)  # full 500 steps
    store = open_store(tmp_path / "s")
    assert (store.episode_length, store.num_rows) == (501, 501)
    convert_chunks([res["chunk_file"]], tmp_path / "again", trust_pickle=True, progress=False)  # default checks
    again = open_store(tmp_path / "again")
    np.testing.assert_array_equal(again.obs[:], store.obs[:])
    np.testing.assert_array_equal(again.reward[1:], store.reward[1:])
    assert again.manifest["segments"][0]["source_sha256"] == store.manifest["segments"][0]["source_sha256"]


@pytest.mark.parametrize("policy", ["prior", "plan"])
def test_collect_fixture_policy(tmp_path, policy):
    if not FIXTURE.is_file():
        pytest.skip("../shared/fixtures is absent (a user's clone has no shared folder)")
    chunk, steps = tmp_path / "mine.pt", 3 if policy == "prior" else 1  # MPPI steps are slow on CPU
    rc = cli(["collect", "--checkpoint", str(FIXTURE), "--policy", policy, "--tasks", "walker-walk",
              "--episodes", "1", "--out", str(tmp_path / "s"), "--max-steps", str(steps), "--chunk-file", str(chunk),
              "--quiet"])
    assert rc == 0 and chunk.is_file()
    store = open_store(tmp_path / "s")
    assert store.num_rows == steps + 1 and store.manifest["segments"][0]["collected"]["policy"] == policy
    act = store.action[1:steps + 1]
    assert np.isfinite(act).all() and (np.abs(act) <= 1).all() and np.abs(act).sum() > 0


# ---------------------------------------------------------------------------- hub
def test_download_uses_hub_and_cache(monkeypatch, tmp_path, capsys):
    import huggingface_hub
    calls = []

    def fake(repo_id, filename, repo_type=None, revision=None, cache_dir=None, local_files_only=False):
        calls.append((repo_id, repo_type, filename, cache_dir, local_files_only))
        return str(tmp_path / filename)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    assert cli(["download", "--task-set", "mt30", "--chunks", "0,1", "--cache-dir", str(tmp_path)]) == 0
    assert calls == [("nicklashansen/tdmpc2", "dataset", f"mt30/chunk_{i}.pt", str(tmp_path), False) for i in (0, 1)]
    assert capsys.readouterr().out.split() == [str(tmp_path / "mt30" / f"chunk_{i}.pt") for i in (0, 1)]
    assert cli(["download", "--task-set", "mt30", "--chunks", "4"]) == 2
    assert "chunks 0..3" in capsys.readouterr().err
    calls.clear()
    cli(["download", "--task-set", "mt80"])
    assert len(calls) == 20 and calls[-1][2] == "mt80/chunk_19.pt"


def test_download_offline_empty_cache(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli(["download", "--task-set", "mt30", "--chunks", "0", "--cache-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert "mt30/chunk_0.pt" in err and "HF_HUB_OFFLINE=1" in err and "\n" not in err


# ---------------------------------------------------------------------------- benchmark helper
def test_synthetic_store_and_rss(tmp_path):
    from tdmpc_lib.data.benchmark_support import make_synthetic_store, measure_sampling_rss

    store = make_synthetic_store(tmp_path / "syn", rows=5000, progress=False)
    assert store.num_rows == 10 * L and store.num_episodes == 10
    mtime = (tmp_path / "syn" / "manifest.json").stat().st_mtime_ns
    assert make_synthetic_store(tmp_path / "syn", rows=5000, progress=False).num_rows == 10 * L
    assert (tmp_path / "syn" / "manifest.json").stat().st_mtime_ns == mtime  # reused, not rewritten
    r = measure_sampling_rss(tmp_path / "syn", batches=20, batch_size=64, isolated=False)
    assert r["peak_rss_mb"] > 0 and r["batches"] == 20


def test_collect_action_noise_with_the_bundled_teacher(tmp_path):
    """Mixed-quality data: the teacher's policy prior with Gaussian action noise. The noise is
    drawn from the episode's own generator (reproducible), clipped to [-1, 1], and recorded."""
    from tdmpc_lib import load_checkpoint

    model = load_checkpoint("tdmpc-opt-mt30-1M")
    runs = [rollout(["cartpole-balance"], 1, "prior", model, seed=5, max_steps=4, explore=False, progress=False,
                    action_noise=noise) for noise in (0.0, 0.5, 0.5)]
    clean, noisy, again = (r["action"][0, 1:, :1] for r in runs)
    assert not np.allclose(clean, noisy) and np.array_equal(noisy, again)
    assert (np.abs(noisy) <= 1).all()
    res = collect(tmp_path / "s", "cartpole-balance", 1, "prior", model, seed=5, max_steps=4, action_noise=0.5,
                  progress=False)
    np.testing.assert_array_equal(open_store(res["store"]).action[1:5, :1], noisy)
    assert open_store(res["store"]).manifest["segments"][0]["collected"]["action_noise"] == 0.5
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="action_noise must be a finite number >= 0"):
            rollout(["cartpole-balance"], 1, "prior", model, max_steps=2, progress=False, action_noise=bad)


def test_takeover_episodes_switch_from_the_student_to_the_teacher(tmp_path):
    """Student-then-teacher episodes: a takeover at the episode's end is the student's own MPPI
    episode (eval mode), one at step 0 the teacher's, and one in between follows the student's
    episode up to the switch, then leaves it; the manifest records the student and the steps."""
    from tdmpc_lib import load_checkpoint
    from tdmpc_lib.config import model_config
    from tdmpc_lib.data import Takeover
    from tdmpc_lib.planner import PlannerConfig
    from tdmpc_lib.world_model import WorldModel

    teacher = load_checkpoint("tdmpc-opt-mt30-1M")
    torch.manual_seed(0)
    student = WorldModel(model_config("tiny", "mt30")).eval()
    planner = PlannerConfig(num_samples=16, num_elites=4, num_pi_trajs=2, iterations=1)
    common = dict(seed=3, max_steps=6, progress=False, planner=planner)
    task = ["cartpole-balance"]
    own = rollout(task, 1, "plan", student, explore=False, **common)
    taught = rollout(task, 1, "plan", teacher, explore=True, **common)
    runs = {k: rollout(task, 1, "plan", teacher, explore=True, takeover=Takeover(student, (k,)), **common)
            for k in (6, 0, 3)}
    for key in ("obs", "action", "reward"):
        np.testing.assert_array_equal(runs[6][key], own[key])
        np.testing.assert_array_equal(runs[0][key], taught[key])
    np.testing.assert_array_equal(runs[3]["obs"][:, :4], own["obs"][:, :4])  # 3 student actions
    assert not np.array_equal(runs[3]["action"][:, 4:], own["action"][:, 4:])
    both = Takeover(student, (0, 6))
    res = collect(tmp_path / "s", task, 2, "plan", teacher, explore=True, takeover=both, **common)
    arrays = rollout(task, 2, "plan", teacher, explore=True, takeover=both, **common)
    np.testing.assert_array_equal(open_store(res["store"]).action[1:7], arrays["action"][0, 1:])
    assert open_store(res["store"]).manifest["segments"][0]["collected"]["takeover"]["steps"] == [0, 6]
    with pytest.raises(ValueError, match="one episode per takeover step"):
        rollout(task, 1, "plan", teacher, takeover=Takeover(student, (1, 2)), **common)
    with pytest.raises(ValueError, match=r"must lie in \[0, 6\]"):
        rollout(task, 1, "plan", teacher, takeover=Takeover(student, (7,)), **common)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(num_rows=m["num_rows"] + 7), "disagrees with its segments"),
    (lambda m: m.update(episode_length=m["episode_length"] - 1), "disagrees with its segments"),
    (lambda m: m.pop("obs_dim"), "lacks obs_dim"),
])
def test_edited_manifest_is_refused(tmp_path, store_dir, edit, message, capsys):
    import shutil
    copy = tmp_path / "s"
    shutil.copytree(store_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=message):
        open_store(copy)
    assert cli(["info", str(copy)]) == 2 and message in capsys.readouterr().err
