"""One writer per output: a second process started on the same run folder, store, teacher cache,
evaluation output or study folder stops at once with exit code 2 and one line naming the
holder's PID, and leaves the output as it was; a lock left by a killed process blocks nobody."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from tdmpc_lib.data.benchmark_support import make_synthetic_store
from tdmpc_lib.files import OutputBusyError, OutputLock

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "store"
    make_synthetic_store(path, rows=2000, episode_length=40, progress=False)
    return path


def _train_cmd(store_dir, out, steps, *extra):
    return [sys.executable, "-m", "tdmpc_lib.train", "--data", str(store_dir), "--student-size", "tiny",
            "--batch-size", "8", "--steps", str(steps), "--device", "cpu", "--out", str(out), "--threads", "1",
            "--checkpoint-freq", "1000000", "--log-freq", "1", "--no-progress", *extra]


def _wait_for_holder(lock: OutputLock, proc, timeout=120.0) -> int:
    """The PID the lock file names, once the process `proc` holds it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        text = lock.lock_path.read_text().strip() if lock.lock_path.exists() else ""
        if text == str(proc.pid):
            return proc.pid
        time.sleep(0.05)
    raise AssertionError("the first writer never took the lock")


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


def test_two_trainings_into_one_run_folder(store_dir, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(_train_cmd(store_dir, out, 100000), env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        pid = _wait_for_holder(OutputLock(out), first)
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
            time.sleep(0.05)  # the first writer is training
        second = subprocess.run(_train_cmd(store_dir, out, 100000), env=ENV, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: run folder"), second.stderr
        assert f"process {pid}" in lines[0] and str(out) in lines[0]
        assert first.poll() is None  # the holder is untouched and still training
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # kill -9 leaves the lock file with a dead PID: it blocks nobody
    assert OutputLock(out).lock_path.read_text().strip() == str(pid)
    third = subprocess.run(_train_cmd(store_dir, out, 3), env=ENV, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert not OutputLock(out).lock_path.exists()  # released and removed at the end


def _holder(path, what):
    """A process that holds the lock on `path` until killed."""
    code = ("import time; from tdmpc_lib.files import OutputLock; "
            f"held = OutputLock({str(path)!r}, {what!r}).acquire(); time.sleep(600)")
    return subprocess.Popen([sys.executable, "-c", code], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.parametrize("writer", ["data convert", "teacher cache", "evaluate", "quantize", "study"])
def test_a_second_writer_of_any_output_exits_2_and_writes_nothing(writer, store_dir, tmp_path):
    from tdmpc_lib import make_world_model, save_checkpoint
    from tdmpc_lib.data.collect import save_chunk

    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(make_world_model("tiny", seed=0), ckpt)
    work = tmp_path / "work"
    work.mkdir()
    if writer == "data convert":
        import numpy as np
        chunk = tmp_path / "c.pt"
        rng = np.random.default_rng(0)
        save_chunk({"obs": rng.normal(size=(2, 5, 24)).astype("float32"),
                    "action": rng.uniform(-1, 1, (2, 5, 6)).astype("float32"),
                    "reward": rng.uniform(0, 1, (2, 5)).astype("float32"),
                    "task": np.zeros((2, 5), "int64")}, chunk)
        target = work / "store"
        cmd = ["-m", "tdmpc_lib.data", "convert", "--chunks", str(chunk), "--out", str(target), "--trust-pickle"]
    elif writer == "teacher cache":
        target = work / "cache.npy"
        cmd = ["-m", "tdmpc_lib.train", "--data", str(store_dir), "--teacher", str(ckpt), "--teacher-cache",
               str(target), "--cache-only", "--no-progress"]
    elif writer == "evaluate":
        target = work / "eval.json"
        cmd = ["-m", "tdmpc_lib.evaluate", "--checkpoint", str(ckpt), "--tasks", "cartpole-balance",
               "--episodes", "1", "--policy", "prior", "--output", str(target)]
    elif writer == "quantize":
        target = work / "q.pt"
        cmd = ["-m", "tdmpc_lib.quantize", "--checkpoint", str(ckpt), "--format", "fp16", "--output", str(target)]
    else:
        target = work / "study"
        cmd = ["-m", "tdmpc_lib.study", "--profile", "smoke", "--only", "01", "--study-dir", str(target)]
    holder = _holder(target, "output")
    try:
        pid = _wait_for_holder(OutputLock(target), holder)
        before = _snapshot(work)
        result = subprocess.run([sys.executable, *cmd], env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"process {pid}" in lines[0] and str(target) in lines[0], result.stderr
        assert "Traceback" not in result.stderr
        assert _snapshot(work) == before  # nothing written, nothing left behind
    finally:
        holder.kill()
        holder.wait()


def test_lock_in_one_process_is_reentrant(tmp_path):
    target = tmp_path / "out"
    with OutputLock(target, "run folder") as held:
        assert held.held and held.lock_path.read_text().strip() == str(os.getpid())
        with OutputLock(target, "run folder") as inner:  # the study holds a run the trainer locks again
            assert inner.held
        assert held.lock_path.exists()  # still held by the outer one
    assert not held.held and not held.lock_path.exists()


def test_waiting_writer_gets_the_lock_when_the_holder_ends(tmp_path, capsys):
    target = tmp_path / "shared"
    holder = _holder(target, "run folder")
    pid = _wait_for_holder(OutputLock(target), holder)
    with pytest.raises(OutputBusyError, match=f"run folder {target} is being written by process {pid}"):
        OutputLock(target, "run folder").acquire()
    threading.Timer(0.5, holder.kill).start()
    with OutputLock(target, "run folder", wait=True) as waited:  # blocks until the holder is gone
        assert waited.held and holder.poll() is not None
    holder.wait()
    assert capsys.readouterr().err == f"waiting for process {pid}, which is writing the run folder {target}\n"


def test_lock_on_an_unwritable_place_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot be written"):
        OutputLock(blocker / "sub" / "out").acquire()
