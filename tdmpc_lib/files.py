"""Writing files so that nothing is lost: every checkpoint, JSON result and manifest of the
project goes through `atomic_write`.

The bytes go to a temporary file in the destination's folder, are flushed and fsync'ed, and
the temporary file is renamed over the destination (`os.replace`, atomic on POSIX). A kill at
any moment leaves either the old file or the new one, never half of one; a failed write leaves
the old file untouched and no temporary file behind. New files get the permissions `open()`
would give them (0o666 minus the umask, e.g. 0644 under umask 022), not the 0600 of a bare
`tempfile.mkstemp`, so colleagues on a shared cluster can read checkpoints and results.

`OutputLock` keeps two processes from writing the same output (a run folder, a store, a
teacher cache, an evaluation result, a study folder) at once; `removed_if_left_empty` takes
back the folders a failed writer made.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set straight back
    os.umask(mask)
    return mask


_interrupts = {"depth": 0, "pending": None}  # interrupts_held nesting and the held signal


@contextlib.contextmanager
def interrupts_held():
    """Hold Ctrl-C / SIGTERM (the handlers of tdmpc_lib.cli.interruptible) until the block ends,
    then raise them: an exception raised inside a writer that calls back into Python from C++
    (torch.save's zip writer) comes out as an unrelated RuntimeError, not as the interrupt."""
    _interrupts["depth"] += 1
    try:
        yield
    finally:
        _interrupts["depth"] -= 1
        if _interrupts["depth"] == 0 and _interrupts["pending"] is not None:
            pending, _interrupts["pending"] = _interrupts["pending"], None
            raise pending


def deliver_interrupt(exc: BaseException) -> None:
    """Raise `exc` now, or when the enclosing `interrupts_held` block ends."""
    if _interrupts["depth"]:
        _interrupts["pending"] = _interrupts["pending"] or exc
        return
    raise exc


class OutputWriteError(OSError, ValueError):
    """The operating system refused to write an output (a full disk, a read-only file system, no
    permission): one sentence naming the file and the fix. Also a ValueError, which the command
    lines report as one line with exit code 2."""

    def __str__(self) -> str:
        reason = (self.strerror or "the operating system refused").lower()
        fix = "free some space or choose another output" if self.errno == errno.ENOSPC else "choose another output"
        return f"cannot write {self.filename}: {reason}; {fix}"


def write_error(e: OSError, path: str | os.PathLike) -> OutputWriteError:
    """`e` (raised while writing `path`) as an OutputWriteError (unchanged if it is one)."""
    if isinstance(e, OutputWriteError):
        return e
    return OutputWriteError(e.errno, e.strerror or str(e), str(e.filename or path))


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(f)` on a binary temporary file, then rename it over `path` (parents made).
    An OSError (a full disk ...) leaves nothing behind and is raised as an OutputWriteError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with interrupts_held():
            return _atomic_write(path, write)
    except OSError as e:
        raise write_error(e, path) from None


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
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


@contextlib.contextmanager
def removed_if_left_empty(*folders: str | os.PathLike):
    """Run the block; if it raises, remove each of `folders` that did not exist before it and is
    empty now (the last given first, so list a parent before its children): a writer that
    failed leaves no empty folder behind."""
    made = [Path(f) for f in folders if not Path(f).exists()]
    try:
        yield
    except BaseException:
        for folder in reversed(made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def read_json_object(path: str | os.PathLike, what: str = "file") -> dict:
    """A JSON object (dict) read from `path`; a missing, unreadable, cut-off or wrong-typed file
    is a one-line ValueError naming the file."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(f"{what} {path} cannot be read ({reason}); delete it to have it made again") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} {path} holds a JSON {type(value).__name__}, not an object; delete it to have it "
                         f"made again")
    return value


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail now, with one sentence, if `path` cannot be written later: it is a folder, a parent
    is a file, or the nearest existing folder is not writable."""
    if not str(path).strip():
        raise ValueError("the output file is empty (''); give a file path such as results.json")
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
    if not str(path).strip():
        raise ValueError("the output folder is empty (''); give a folder such as runs/my_run")
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


class OutputBusyError(ValueError):
    """Another live process is writing the same output."""


class OutputLock:
    """An exclusive advisory lock on an output (a folder or a file) for one writing process:

        with OutputLock(run_dir, "run folder"):
            ...  # write run_dir

    The lock is `fcntl.flock` on a lock file beside the output (`.NAME.lock` in its parent
    folder, so a refused writer leaves nothing inside the output). The kernel drops the lock
    when its process ends in any way, kill -9 included: a lock file left by a dead process never
    blocks anyone; it only records the holder's PID for the message.

    A second writing process gets OutputBusyError at once: one sentence naming the output and
    the holder's PID. With `wait=True` it waits for the holder instead (the study's workers,
    which share a teacher, a dataset or a run and reuse what the first one made). Within one
    process the lock is re-entrant: the study holds a run folder while the trainer it calls
    takes the same lock. The lock file is removed on release; a writer that locked a file which
    was removed meanwhile (its holder released) locks the new one instead, so two processes
    never hold the same output."""

    _held: dict[Path, list] = {}  # lock file -> [fd, depth] for the locks this process holds

    def __init__(self, path: str | os.PathLike, what: str = "output", wait: bool = False):
        if not str(path).strip():
            raise ValueError(f"the {what} path is empty (''); give a path")
        self.path = Path(os.path.abspath(path))
        self.what = what
        self.wait = wait
        self.lock_path = self.path.parent / f".{self.path.name}.lock"
        self.held = False

    def _holder(self) -> str:
        try:
            pid = self.lock_path.read_text().strip()
        except OSError:
            pid = ""
        return f"process {pid}" if pid.isdigit() else "another process"

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_umask())
        except OSError as e:
            where = e.filename or self.lock_path
            raise ValueError(f"{self.what} {self.path} cannot be written ({e.strerror} at {where}); "
                             f"choose another output") from None

    def acquire(self) -> "OutputLock":
        if self.held:
            return self
        mine = self._held.get(self.lock_path)
        if mine is not None:  # this process holds it already (re-entrant)
            mine[1] += 1
            self.held = True
            return self
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    os.close(fd)
                    raise OutputBusyError(f"{self.what} {self.path} is being written by {self._holder()}; wait for "
                                          f"it to finish (or stop it) or choose another output") from None
                print(f"waiting for {self._holder()}, which is writing the {self.what} {self.path}", file=sys.stderr,
                      flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # the file we locked may have been unlinked by a holder that just released it
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:  # a full disk: not even the lock's PID fits
            self.lock_path.unlink(missing_ok=True)
            os.close(fd)
            raise write_error(e, self.path) from None
        self._held[self.lock_path] = [fd, 1]
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        mine = self._held[self.lock_path]
        mine[1] -= 1
        if mine[1]:
            return
        del self._held[self.lock_path]
        try:
            self.lock_path.unlink(missing_ok=True)  # while still held: nobody else can hold this file
        finally:
            os.close(mine[0])  # closing drops the flock

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        if getattr(self, "held", False):
            self.release()


def read_json(path: str | os.PathLike):
    """The JSON at `path`, or None when it is missing or unreadable (an interrupted writer)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def fingerprint(obj) -> str:
    """12 hex digits of the sha256 of `obj` as sorted JSON (non-JSON values by str)."""
    import hashlib
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def made_once(out: str | os.PathLike, inputs, compute: Callable[[], dict], lock: str | os.PathLike | None = None,
              what: str = "study output") -> dict:
    """compute()'s dict, made once per `inputs`: kept at `out` (JSON) with the fingerprint of
    `inputs` as its 'key', and returned without calling compute while the inputs are the same.
    Under a waiting OutputLock on `lock` (default `out`: the folder compute writes, when it
    writes more than `out`), so a parallel process that needs the same thing waits and reuses it."""
    out, key = Path(out), fingerprint(inputs)
    with OutputLock(lock or out, what, wait=True):
        old = read_json(out)
        if isinstance(old, dict) and old.get("key") == key:
            return old
        result = {**compute(), "key": key}
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, result)
    return result
