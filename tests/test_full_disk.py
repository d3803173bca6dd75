"""A full disk (ENOSPC) is one line and exit code 2 from every writer, with the output left as it
was and the inputs unchanged: on a real 64 KiB tmpfs where this machine lets the test mount one,
and by a simulated ENOSPC everywhere. Bad data that gets past the converter is named too."""
import contextlib
import errno
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tdmpc_lib import make_world_model, save_checkpoint
from tdmpc_lib.data.benchmark_support import make_synthetic_store
from tdmpc_lib.files import OutputWriteError, atomic_write_text

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "osmesa")}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    save_checkpoint(make_world_model("tiny", seed=0), root / "tiny.pt")
    make_synthetic_store(root / "store", rows=2000, episode_length=40, progress=False)
    return root


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*")}


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs with 40 KiB already used (skipped where mounting is not permitted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not permitted'}); "
                    f"the simulated ENOSPC tests cover the same paths")
    try:
        (disk / "filler").write_bytes(bytes(40 * 1024))
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _commands(inputs, disk):
    return {
        "train": ["-m", "tdmpc_lib.train", "--data", str(inputs / "store"), "--student-size", "tiny",
                  "--batch-size", "8", "--steps", "4", "--out", str(disk / "run"), "--threads", "1", "--no-progress"],
        "data collect": ["-m", "tdmpc_lib.data", "collect", "--policy", "random", "--tasks", "cartpole-balance",
                         "--episodes", "2", "--out", str(disk / "store"), "--quiet"],
        "evaluate": ["-m", "tdmpc_lib.evaluate", "--checkpoint", str(inputs / "tiny.pt"), "--tasks",
                     "cartpole-balance", "--episodes", "1", "--policy", "prior", "--output", str(disk / "r.json")],
        "quantize": ["-m", "tdmpc_lib.quantize", "--checkpoint", str(inputs / "tiny.pt"), "--format", "fp16",
                     "--output", str(disk / "q.pt")],
    }


@pytest.mark.parametrize("writer", ["train", "data collect", "evaluate", "quantize"])
def test_a_full_disk_is_one_line_and_leaves_the_output_as_it_was(writer, inputs, full_disk):
    if writer == "evaluate":  # its result is small: leave less room than it needs
        (full_disk / "filler2").write_bytes(bytes(24 * 1024 - 512))
    before, inputs_before = _snapshot(full_disk), _snapshot(inputs)
    result = subprocess.run([sys.executable, *_commands(inputs, full_disk)[writer]], env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1 and "no space left on device" in lines[0] and "free some space" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(full_disk) == before  # nothing partial left: not a temporary file, not an empty folder
    assert _snapshot(inputs) == inputs_before


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_simulated_enospc_in_atomic_write(tmp_path, monkeypatch):
    import tdmpc_lib.files as files
    monkeypatch.setattr(files.os, "fsync", _no_space)
    with pytest.raises(OutputWriteError) as e:
        atomic_write_text(tmp_path / "r.json", "{}")
    assert isinstance(e.value, ValueError) and isinstance(e.value, OSError)
    assert str(e.value) == f"cannot write {tmp_path / 'r.json'}: no space left on device; free some space or " \
                           f"choose another output"
    assert list(tmp_path.iterdir()) == []  # no temporary file left


@pytest.mark.parametrize("tool", ["quantize", "evaluate"])
def test_simulated_enospc_through_a_command_line(tool, inputs, tmp_path, monkeypatch):
    import tdmpc_lib.files as files
    from tdmpc_lib.evaluate import main as evaluate_main
    from tdmpc_lib.quantize import main as quantize_main

    monkeypatch.setattr(files.os, "fsync", _no_space)
    work = tmp_path / "work"
    work.mkdir()
    args = {"quantize": ["--checkpoint", str(inputs / "tiny.pt"), "--format", "fp16", "--output",
                         str(work / "q.pt")],
            "evaluate": ["--checkpoint", str(inputs / "tiny.pt"), "--tasks", "cartpole-balance", "--episodes", "1",
                         "--policy", "prior", "--output", str(work / "r.json")]}[tool]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        with pytest.raises(SystemExit) as e:
            {"quantize": quantize_main, "evaluate": evaluate_main}[tool](args)
    lines = [line for line in err.getvalue().splitlines() if line.strip() and "it/s]" not in line]
    assert e.value.code == 2 and len(lines) == 1 and "no space left on device" in lines[0], err.getvalue()
    assert list(work.iterdir()) == []


def test_training_on_a_store_with_nan_observations_names_the_data(tmp_path):
    from tdmpc_lib.train.__main__ import main as train_main

    store = tmp_path / "store"
    make_synthetic_store(store, rows=400, episode_length=40, progress=False)
    obs = np.load(store / "seg_0000" / "obs.npy", mmap_mode="r+")
    obs[:] = np.nan  # written around the converter, which refuses NaN rows
    obs.flush()
    del obs
    out = tmp_path / "run"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        with pytest.raises(SystemExit) as e:
            train_main(["--data", str(store), "--student-size", "tiny", "--batch-size", "8", "--steps", "3",
                        "--out", str(out), "--threads", "1", "--no-progress"])
    text = err.getvalue().strip()
    assert e.value.code == 2 and "\n" not in text, text
    assert f"the dataset {store} holds NaN/inf in obs" in text and "data convert" in text
    assert not out.exists()  # no config.json or metrics of a run that never was


@pytest.mark.parametrize("content, message", [
    ('{"profile": ', "cannot be read"),
    ("[]", "holds a JSON list, not an object"),
])
def test_a_damaged_profile_json_names_the_file(content, message, tmp_path):
    from tdmpc_lib.study.profiles import load_profile

    (tmp_path / "profile.json").write_text(content)
    with pytest.raises(ValueError) as e:
        load_profile("smoke", tmp_path)
    assert str(tmp_path / "profile.json") in str(e.value) and message in str(e.value)


def test_a_journal_line_of_the_wrong_type_names_the_file(tmp_path):
    from tdmpc_lib.evaluate import _read_journal

    header = {"journal": "tdmpc-distill-evaluation"}
    path = Path(tmp_path / "r.json.partial.jsonl")
    path.write_text(json.dumps(header) + "\n" + "[1, 2]\n")
    with pytest.raises(ValueError, match=f"{path} line 2 is not a finished batch"):
        _read_journal(path, header)
