"""Ctrl-C (SIGINT) and SIGTERM end every long command with one line saying where it stopped and
how to continue, exit code 130 / 143, no traceback, and only complete files left; the command
then continues from there."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tdmpc_lib import make_world_model, save_checkpoint
from tdmpc_lib.data.benchmark_support import make_synthetic_store

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
PROGRESS_BAR = re.compile(r"\|\s*\d+/\d+ \[")  # a tqdm line already on the screen, not part of the message


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "store"
    make_synthetic_store(path, rows=2000, episode_length=40, progress=False)
    return path


def _wait(condition, proc, timeout=180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the command ended first: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "timed out waiting for the command to get going"
        time.sleep(0.05)


def _interrupt(proc, sig) -> str:
    """Send `sig`, wait for the exit; returns stderr after checking the one-line form and the code."""
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == CODES[sig], err
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS_BAR.search(line)]
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), err
    assert "Traceback" not in err
    return lines[0]


def _no_partial_files(folder) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name and p.is_dir()]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_training_interrupted_then_resumed(sig, store_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tdmpc_lib.train", "--data", str(store_dir), "--student-size", "tiny",
           "--batch-size", "8", "--steps", "100000", "--device", "cpu", "--out", str(out), "--threads", "1",
           "--checkpoint-freq", "5", "--log-freq", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait(lambda: (out / "checkpoints" / "step_10.pt").exists(), proc)
    line = _interrupt(proc, sig)
    assert "training stopped at step" in line and "--resume" in line and "step_" in line
    _no_partial_files(out)
    assert not (out / "model.pt").exists()
    saved = max(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("step_*.pt"))
    assert f"step_{saved}.pt" in line
    resumed = subprocess.run([*cmd[:cmd.index("--steps") + 1], str(saved + 3), *cmd[cmd.index("--steps") + 2:],
                              "--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == saved + 3 and summary["resumed_from"] == saved


def test_evaluation_interrupted_then_resumed(tmp_path):
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(make_world_model("tiny", seed=0), ckpt)
    output = tmp_path / "eval" / "r.json"
    cmd = [sys.executable, "-m", "tdmpc_lib.evaluate", "--checkpoint", str(ckpt), "--tasks",
           "cartpole-balance,reacher-easy", "--episodes", "1", "--policy", "plan",
           "--max-batch-envs", "1", "--output", str(output)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    journal = output.parent / "r.json.partial.jsonl"
    _wait(lambda: journal.exists() and journal.read_text().strip(), proc)
    line = _interrupt(proc, signal.SIGTERM)
    assert "--resume" in line and str(output) in line
    assert not output.exists() and journal.exists()
    resumed = subprocess.run([*cmd, "--resume"], env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(output.read_text())
    assert result["episodes"] == 1 and len(result["tasks"]) == 2 and not journal.exists()


def test_an_interrupted_constructor_leaves_no_finalizer_traceback(tmp_path):
    """The signal can land inside a constructor (a tqdm bar's): the half-built object's __del__
    fails when it is collected, which Python reports as an 'Exception ignored' traceback."""
    script = tmp_path / "half_built.py"
    script.write_text(
        "from tdmpc_lib.cli import interruptible\n"
        "class HalfBuilt:\n"
        "    def __init__(self):\n"
        "        raise KeyboardInterrupt  # before its fields are set\n"
        "    def __del__(self):\n"
        "        self.disable  # what tqdm's close() reads\n"
        "with interruptible('stopped here; rerun'):\n"
        "    HalfBuilt()\n")
    done = subprocess.run([sys.executable, str(script)], env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130 and done.stderr.splitlines() == ["interrupted: stopped here; rerun"], done.stderr


def test_collection_interrupted_adds_nothing(tmp_path):
    out = tmp_path / "store"
    cmd = [sys.executable, "-m", "tdmpc_lib.data", "collect", "--policy", "random", "--tasks", "cartpole-balance",
           "--episodes", "200", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait(lambda: (tmp_path / ".store.lock").exists(), proc)
    time.sleep(1.0)  # inside the rollout
    line = _interrupt(proc, signal.SIGINT)
    assert "nothing of this collection was added" in line
    assert not (out / "manifest.json").exists()
    assert not (tmp_path / ".store.lock").exists()


def test_study_interrupted_stops_its_workers(tmp_path):
    study = tmp_path / "study"
    cmd = [sys.executable, "-m", "tdmpc_lib.study", "--profile", "smoke", "--only", "02", "--workers", "2",
           "--study-dir", str(study)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = []

    def running() -> bool:  # the runner logs "run  NAME" as it hands an execution to a worker
        line = proc.stdout.readline()
        started.append(line)
        return "] run " in line

    _wait(running, proc, timeout=600)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: the study stopped while running"), err
    assert "rerun the same command" in lines[0]
    assert not (tmp_path / ".study.lock").exists()
