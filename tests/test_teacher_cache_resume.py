"""The teacher-target cache survives a SIGKILL: the build resumes at the first chunk its
progress record does not count, and the finished file is byte-identical to that of an
uninterrupted build; nothing opens the cache before it is complete."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tdmpc_lib.data.benchmark_support import make_synthetic_store
from tdmpc_lib.train.cache import TeacherTargetCache, row_has_next, valid_rows

ROWS, CHUNK, FLUSH_EVERY = 5010, 256, 3  # 10 episodes of 501 rows; 20 chunks, the last of 146 rows
CHUNKS = -(-ROWS // CHUNK)

# A build in its own process, with a tiny random teacher (sha256 given by hand). Its predict
# is counted, and the process SIGKILLs itself on call `kill_at` (0: never): a real kill at a
# known chunk, with no chance to clean up. A fresh build first calls predict twice for the
# bf16 accuracy check.
BUILD = """
import json, os, signal, sys
import torch
from tdmpc_lib import make_world_model
from tdmpc_lib.data.store import open_store
from tdmpc_lib.train.cache import TeacherTargetCache
from tdmpc_lib.train.distill import Teacher

torch.set_num_threads(1)
store_dir, path, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
teacher = Teacher(make_world_model("tiny", "mt30", seed=1), "cpu", sha256="tiny-seed-1", path="tiny")
calls, predict = [0], teacher.predict

def counted(*args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return predict(*args, **kwargs)

teacher.predict = counted
cache = TeacherTargetCache.build(teacher, open_store(store_dir), path, batch_size=%d, precision="auto",
                                 flush_every=%d, flush_s=1e9, progress=True)
print(json.dumps({"calls": calls[0], "complete": cache.meta["complete"]}))
""" % (CHUNK, FLUSH_EVERY)


def _build(store_dir, path, kill_at=0):
    return subprocess.run([sys.executable, "-c", BUILD, str(store_dir), str(path), str(kill_at)],
                          capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "store"
    make_synthetic_store(path, rows=ROWS, episode_length=501, progress=False)
    return path


def test_killed_build_resumes_to_the_same_bytes(store_dir, tmp_path):
    whole, killed = tmp_path / "whole.npy", tmp_path / "killed.npy"
    done = _build(store_dir, whole)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"calls": 2 + CHUNKS, "complete": True}
    assert "teacher cache" in done.stderr  # the progress bar

    kill_at = 2 + 11  # the 12th chunk's teacher call: chunks 0-10 computed, 0-8 flushed and counted
    cut = _build(store_dir, killed, kill_at)
    assert cut.returncode == -9, cut.stderr[-2000:]
    meta = json.loads(TeacherTargetCache.meta_path(killed).read_text())
    assert meta["complete"] is False and meta["rows_done"] == 9 * CHUNK and meta["chunk_rows"] == CHUNK
    with pytest.raises(ValueError, match="incomplete"):  # never opened before it is complete
        TeacherTargetCache(killed)

    resumed = _build(store_dir, killed)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # only the chunks not counted were computed (no accuracy check: the record keeps its result)
    assert json.loads(resumed.stdout.splitlines()[-1]) == {"calls": CHUNKS - 9, "complete": True}
    assert killed.read_bytes() == whole.read_bytes()
    a, b = (json.loads(TeacherTargetCache.meta_path(p).read_text()) for p in (killed, whole))
    for key in ("precision", "rows_done", "complete", "chunk_rows", "bf16_max_abs_err"):
        assert a[key] == b[key], key
    values = TeacherTargetCache(killed).values
    ends = np.load(store_dir / "seg_0000" / "episode_start.npy")[1:] - 1
    assert np.isnan(values[ends]).all() and np.isfinite(np.delete(np.asarray(values), ends)).all()


def test_record_of_another_teacher_is_not_resumed(store_dir, tmp_path):
    """A progress record naming another teacher (or a damaged one) starts the build afresh."""
    path = tmp_path / "c.npy"
    assert _build(store_dir, path, kill_at=2 + 5).returncode == -9
    meta = json.loads(TeacherTargetCache.meta_path(path).read_text())
    meta["teacher_sha256"] = "another"
    TeacherTargetCache.meta_path(path).write_text(json.dumps(meta))
    again = _build(store_dir, path)
    assert again.returncode == 0 and json.loads(again.stdout.splitlines()[-1])["calls"] == 2 + CHUNKS


def test_chunk_validity_needs_no_array_of_the_store_size(store_dir):
    from tdmpc_lib.data.store import open_store

    store = open_store(store_dir)
    full = valid_rows(store)
    assert full.sum() == ROWS - 10 and not full[500] and full[501]
    for lo, hi in ((0, 256), (250, 1003), (4800, ROWS), (500, 501)):
        assert np.array_equal(valid_rows(store, lo, hi), full[lo:hi])
    rows = np.array([0, 499, 500, 501, 1001, 1002, ROWS - 2, ROWS - 1])
    assert np.array_equal(row_has_next(store, rows), full[rows])
