"""Every output goes through tdmpc_lib.files.atomic_write: the umask's permissions (not
mkstemp's 0600), the old file kept when a write fails, and no temporary file left behind."""
import json
import os
import stat

import pytest

from tdmpc_lib import make_world_model, save_checkpoint
from tdmpc_lib.files import atomic_write, atomic_write_json


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_get_the_umask_mode(tmp_path, umask_022):
    atomic_write_json(tmp_path / "a" / "r.json", {"x": 1})
    save_checkpoint(make_world_model("tiny", seed=0), tmp_path / "m.pt")
    for path in (tmp_path / "a" / "r.json", tmp_path / "m.pt"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    os.umask(0o077)
    atomic_write_json(tmp_path / "private.json", {})
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = atomic_write_json(tmp_path / "r.json", {"good": True})

    def broken(f):
        f.write(b'{"half": ')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"good": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary file left


def test_made_once_computes_once_per_inputs_and_again_after_a_change_or_a_cut_file(tmp_path):
    from tdmpc_lib.files import fingerprint, made_once
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    out = tmp_path / "sub" / "result.json"
    first = made_once(out, {"a": 1}, compute)
    assert first == {"value": 1, "key": fingerprint({"a": 1})} and json.loads(out.read_text()) == first
    assert made_once(out, {"a": 1}, compute) == first and len(calls) == 1  # reused, not recomputed
    assert made_once(out, {"a": 2}, compute)["value"] == 2  # other inputs: made again
    out.write_text('{"value": 2, "ke')  # unreadable (cut off, edited by hand): made again
    assert made_once(out, {"a": 2}, compute)["value"] == 3
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1}) != fingerprint({"a": 2})
