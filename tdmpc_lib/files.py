"""Writing files so that nothing is lost: every checkpoint, JSON result and manifest of the
project goes through `atomic_write`.

The bytes go to a temporary file in the destination's folder, are flushed and fsync'ed, and
the temporary file is renamed over the destination (`os.replace`, atomic on POSIX). A kill at
any moment leaves either the old file or the new one, never half of one; a failed write leaves
the old file untouched and no temporary file behind. New files get the permissions `open()`
would give them (0o666 minus the umask, e.g. 0644 under umask 022), not the 0600 of a bare
`tempfile.mkstemp`, so colleagues on a shared cluster can read checkpoints and results.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(f)` on a binary temporary file, then rename it over `path` (parents made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | os.PathLike, obj, indent: int | None = 1) -> Path:
    """`obj` as JSON (values JSON does not know, such as Paths, as their str)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=str))


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail now, with one sentence, if `path` cannot be written later: it is a folder, a parent
    is a file, or the nearest existing folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"output {path} is a folder; give a file path such as {path / 'results.json'}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output {path} lies under {parent}, which is a file, not a folder; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output {path} cannot be written: {parent} is not writable; choose another path")
    return path


def check_output_dir(path: str | os.PathLike) -> Path:
    """Fail now, with one sentence, if folder `path` cannot be created or written later: it is
    a file, a parent is a file, or the nearest existing folder is not writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output folder {path} is a file; choose a folder path")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"output folder {path} lies under {parent}, which is a file, not a folder; choose another "
                         f"path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {path} cannot be written: {parent} is not writable; choose another path")
    return path
