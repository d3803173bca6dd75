"""Memory-mapped episode store: the on-disk layout every dataset is converted into.

A store is a folder:

    DIR/manifest.json           task set, episode length, counts, dtypes, shapes, sources
    DIR/seg_0000/obs.npy        (rows, O) float32   one segment per converted chunk file
                 action.npy     (rows, A) float32   row 0 of every episode: NaN (dummy)
                 reward.npy     (rows,)   float32   row 0 of every episode: NaN (dummy)
                 task.npy       (rows,)   int32     task id of every row
                 episode_start.npy  (E_seg + 1,) int64  episode e = rows [s[e], s[e+1]) of the segment
                 episode_task.npy   (E_seg,) int32

Storage convention (official tdmpc2/common/buffer.py): row t of an episode holds obs_t, the action that led to
obs_t and the reward received on arriving in obs_t; row 0's action/reward are dummies.

API (stable; the trainer uses it):
    store = open_store(DIR)           -> EpisodeStore (read-only; nothing is loaded into RAM)
    store.task_set                    'mt30' | 'mt80';  store.tasks -> tdmpc_lib.tasks.TaskSet
    store.num_rows, store.num_episodes, store.episode_length (rows per episode, e.g. 501)
    store.obs (rows, O), store.action (rows, A), store.reward (rows,), store.task (rows,)
        row-indexable arrays: an np.memmap for a one-segment store, else a RowArray that takes
        the same int / slice / int-array row indices and returns ndarrays
    store.episode_starts (E + 1,) int64, store.episode_task (E,) int32   (in RAM, small)
    store.gather(rows (n,) int64, keys=('obs','action','reward','task')) -> arrays (n, O), (n, A), (n,), (n,)
    store.read_slices(first (n,) int64, length, keys) -> arrays (n, length, ...) per key, read
        with os.preadv (page cache only: the resident set does not grow; the sampler's default)
    store.release_pages()             drop this process's mapped pages (bounds resident memory
                                      after reading through the memory maps)
    store.manifest                    the parsed manifest.json
"""
from __future__ import annotations

import contextlib
import json
import mmap
import os
import shutil
from pathlib import Path

import numpy as np

from ..files import atomic_write_json, write_error
from ..tasks import get_task_set
from ..typed import PATH_TYPES, check_argument

FORMAT_NAME = "tdmpc-distill-episodes"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROW_KEYS = ("obs", "action", "reward", "task")
DTYPES = {"obs": np.float32, "action": np.float32, "reward": np.float32, "task": np.int32}


class DataError(ValueError):
    """A dataset file or store is missing, corrupt or inconsistent (one-line message)."""


# ---------------------------------------------------------------------------- manifest
def read_manifest(root: str | os.PathLike) -> dict | None:
    """The store's manifest, or None when `root` holds no store yet."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}; delete the folder and convert again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise DataError(f"{path} is not a {FORMAT_NAME} manifest")
    return manifest


def write_manifest(root: str | os.PathLike, manifest: dict) -> None:
    """Atomic: a temporary file renamed over manifest.json."""
    path = Path(root) / MANIFEST
    atomic_write_json(path, manifest)


def new_manifest(task_set: str, episode_length: int) -> dict:
    ts = get_task_set(task_set)
    shapes = {"obs": [ts.obs_dim], "action": [ts.action_dim], "reward": [], "task": []}
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "task_set": ts.name, "tasks": list(ts.tasks), "episode_length": int(episode_length),
        "obs_dim": ts.obs_dim, "action_dim": ts.action_dim,
        "keys": {k: {"dtype": np.dtype(DTYPES[k]).name, "row_shape": shapes[k]} for k in ROW_KEYS},
        "row0": "action and reward of row 0 of every episode are NaN dummies (never used)",
        "num_episodes": 0, "num_rows": 0, "episodes_per_task": {}, "segments": [],
    }


def _add_counts(total: dict, part: dict) -> dict:
    out = dict(total)
    for k, v in part.items():
        out[k] = out.get(k, 0) + v
    return out


def _drop_mapped_pages(arr: np.memmap) -> None:
    """madvise(MADV_DONTNEED) on a shared file mapping: this process's page-table entries go,
    the file's pages (dirty ones included) stay in the page cache. Lowers RSS, loses nothing."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        arr._mmap.madvise(mmap.MADV_DONTNEED)


# ---------------------------------------------------------------------------- writing
class SegmentWriter:
    """Writes one segment of `num_episodes` episodes of `episode_length` rows into
    DIR/<name>.partial/ in blocks (`write`), then `commit` renames it and updates the manifest.

    write(first_episode, obs (n, L, O), action (n, L, A), reward (n, L), task (n,) int) takes
    already validated arrays; row 0 action/reward are set to NaN here."""

    def __init__(self, root: str | os.PathLike, manifest: dict, num_episodes: int, reserve: bool = True):
        self.root, self.manifest = Path(root), manifest
        self.name = f"seg_{len(manifest['segments']):04d}"
        self.final, self.tmp = self.root / self.name, self.root / (self.name + ".partial")
        for stale in (self.final, self.tmp):  # leftovers of an interrupted conversion
            if stale.exists():
                shutil.rmtree(stale)
        L, n = manifest["episode_length"], num_episodes
        self.num_episodes, self.length = n, L
        self.arrays = {}
        try:
            self.tmp.mkdir(parents=True)
            for k in ROW_KEYS:
                path = self.tmp / f"{k}.npy"
                self.arrays[k] = np.lib.format.open_memmap(path, mode="w+", dtype=DTYPES[k],
                                                           shape=(n * L, *manifest["keys"][k]["row_shape"]))
                # Reserve the disk blocks now: a store on a full disk fails here with ENOSPC
                # instead of a SIGBUS when a page of the (sparse) memory map is written later.
                # reserve=False keeps the files sparse (a synthetic store of zeros at MT30 size).
                if reserve:
                    with open(path, "r+b") as f:
                        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            self.abort()
            raise write_error(e, self.tmp) from None
        self.episode_task = np.full(n, -1, dtype=np.int32)

    def write(self, first: int, obs, action, reward, task) -> None:
        n, L = obs.shape[0], self.length
        lo, hi = first * L, (first + n) * L
        self.arrays["obs"][lo:hi] = obs.reshape(n * L, -1)
        action = np.array(action, dtype=np.float32)  # a copy: row 0 is overwritten below
        reward = np.array(reward, dtype=np.float32).reshape(n, L)
        action[:, 0], reward[:, 0] = np.nan, np.nan
        self.arrays["action"][lo:hi] = action.reshape(n * L, -1)
        self.arrays["reward"][lo:hi] = reward.reshape(-1)
        self.arrays["task"][lo:hi] = np.repeat(np.asarray(task, dtype=np.int32), L)
        self.episode_task[first:first + n] = task
        for arr in self.arrays.values():  # unmap the written pages (they stay in the page cache
            _drop_mapped_pages(arr)         # and are written back): RSS stays about one block

    def commit(self, source: dict) -> dict:
        """Flush, rename <name>.partial -> <name>, add the segment to the manifest (atomically)."""
        if (self.episode_task < 0).any():
            raise DataError(f"internal error: segment {self.name} was not completely written")
        L = self.length
        try:
            for arr in self.arrays.values():
                arr.flush()
            self.arrays.clear()
            np.save(self.tmp / "episode_start.npy", np.arange(self.num_episodes + 1, dtype=np.int64) * L)
            np.save(self.tmp / "episode_task.npy", self.episode_task)
            os.replace(self.tmp, self.final)
        except OSError as e:
            self.abort()
            raise write_error(e, self.tmp) from None
        names = self.manifest["tasks"]
        ids, counts = np.unique(self.episode_task, return_counts=True)
        per_task = {names[i]: int(c) for i, c in zip(ids, counts)}
        seg = {"name": self.name, **source, "episodes": self.num_episodes, "rows": self.num_episodes * L,
               "row_offset": self.manifest["num_rows"], "episodes_per_task": per_task}
        m = self.manifest
        m["segments"].append(seg)
        m["num_episodes"] += seg["episodes"]
        m["num_rows"] += seg["rows"]
        m["episodes_per_task"] = dict(sorted(_add_counts(m["episodes_per_task"], per_task).items(),
                                             key=lambda kv: names.index(kv[0])))
        try:
            write_manifest(self.root, m)
        except OSError:  # the segment never entered the store: take it out again
            shutil.rmtree(self.final, ignore_errors=True)
            raise
        return seg

    def abort(self) -> None:
        self.arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- reading
class RowArray:
    """Rows of several segment memmaps seen as one (rows, ...) array.

    a[i] / a[lo:hi] / a[int ndarray] -> ndarray (copies); shape, dtype, len() as for ndarray."""

    def __init__(self, parts: list[np.ndarray], offsets: np.ndarray):
        self.parts, self.offsets = parts, offsets  # offsets (S + 1,): segment s = [off[s], off[s+1])
        self.shape = (int(offsets[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self[:], dtype=dtype)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self[np.arange(len(self))[idx]]
        scalar = np.ndim(idx) == 0
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        idx = np.where(idx < 0, idx + len(self), idx)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        seg = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty((idx.size, *self.shape[1:]), dtype=self.dtype)
        for s in np.unique(seg):
            mask = seg == s
            out[mask] = self.parts[s][idx[mask] - self.offsets[s]]
        return out[0] if scalar else out.reshape(*np.shape(idx), *self.shape[1:])


class EpisodeStore:
    """A read-only, memory-mapped view of a store folder (see the module docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = read_manifest(self.root)
        if manifest is None:
            raise DataError(f"{self.root} holds no dataset (no {MANIFEST}); create one with "
                            f"`python -m tdmpc_lib.data convert` or `collect`")
        if not manifest["segments"]:
            raise DataError(f"{self.root} holds no converted episodes yet")
        missing = [k for k in ("task_set", "episode_length", "num_rows", "num_episodes", "obs_dim", "action_dim",
                               "keys") if k not in manifest]
        if missing:
            raise DataError(f"{self.root / MANIFEST} lacks {', '.join(missing)}; the store is corrupt, convert again")
        self.manifest = manifest
        self.task_set: str = manifest["task_set"]
        self.tasks = get_task_set(self.task_set)
        self.episode_length: int = manifest["episode_length"]
        self.num_rows: int = manifest["num_rows"]
        self.num_episodes: int = manifest["num_episodes"]
        self.obs_dim, self.action_dim = manifest["obs_dim"], manifest["action_dim"]
        parts: dict[str, list[np.memmap]] = {k: [] for k in ROW_KEYS}
        starts, ep_task = [], []
        for seg in manifest["segments"]:
            folder = self.root / seg["name"]
            for k in ROW_KEYS:
                arr = self._open(folder / f"{k}.npy")
                want = (seg["rows"], *manifest["keys"][k]["row_shape"])
                if arr.shape != want or arr.dtype != DTYPES[k]:
                    raise DataError(f"{folder / k}.npy has shape {arr.shape} {arr.dtype}, the manifest says "
                                    f"{want} {np.dtype(DTYPES[k]).name}; the store is corrupt, convert again")
                parts[k].append(arr)
            s = np.load(folder / "episode_start.npy")
            starts.append(s[:-1] + seg["row_offset"])
            ep_task.append(np.load(folder / "episode_task.npy"))
        self.episode_starts = np.concatenate(starts + [np.array([self.num_rows], np.int64)])
        self.episode_task = np.concatenate(ep_task)
        # The manifest's totals must agree with the segments (an edited or half-written manifest
        # would otherwise sample rows that do not exist or cut episodes in the wrong place).
        seg_rows = sum(seg["rows"] for seg in manifest["segments"])
        lengths = np.diff(self.episode_starts)
        if (seg_rows != self.num_rows or len(self.episode_task) != self.num_episodes
                or len(lengths) != self.num_episodes or (lengths != self.episode_length).any()):
            raise DataError(f"{self.root / MANIFEST} disagrees with its segments (num_rows {self.num_rows} vs "
                            f"{seg_rows}, num_episodes {self.num_episodes} vs {len(self.episode_task)}, episode_length "
                            f"{self.episode_length} vs {sorted(set(lengths.tolist()))[:3]}); the store is corrupt, "
                            f"convert again")
        self.segment_offsets = np.array([s["row_offset"] for s in manifest["segments"]] + [self.num_rows],
                                        dtype=np.int64)
        self._parts = parts
        self._fds: dict[str, list[tuple[int, int, int]]] = {}
        for k in ROW_KEYS:
            view = parts[k][0] if len(parts[k]) == 1 else RowArray(parts[k], self.segment_offsets)
            setattr(self, k, view)

    @staticmethod
    def _open(path: Path) -> np.memmap:
        try:
            arr = np.lib.format.open_memmap(path, mode="r")
        except (OSError, ValueError) as e:
            raise DataError(f"cannot memory-map {path}: {e}; the store is incomplete or corrupt") from None
        with contextlib.suppress(AttributeError, OSError, ValueError):  # random access: no read-ahead
            arr._mmap.madvise(mmap.MADV_RANDOM)
        return arr

    @property
    def episode_lengths(self) -> np.ndarray:
        """(E,) int64 rows per episode."""
        return np.diff(self.episode_starts)

    def gather(self, rows: np.ndarray, keys: tuple[str, ...] = ROW_KEYS) -> tuple[np.ndarray, ...]:
        """rows (n,) int64 global row indices -> one array per key, by default obs (n, O),
        action (n, A), reward (n,), task (n,), by fancy-indexing the memmaps (only these rows
        are read)."""
        rows = np.asarray(rows, dtype=np.int64)
        return tuple(np.asarray(getattr(self, k)[rows]) for k in keys)

    def read_slices(self, first: np.ndarray, length: int, keys: tuple[str, ...] = ROW_KEYS) -> tuple[np.ndarray, ...]:
        """first (n,) int64 global rows, each slice [first, first + length) inside one segment
        (e.g. inside one episode) -> one array (n, length, *row_shape) per key.

        Reads with positional file reads (os.preadv) into fresh buffers instead of touching
        the memory maps: the data pass through the OS page cache only, so this process's
        resident set does not grow with the rows read (mapped pages would count in it)."""
        first = np.asarray(first, dtype=np.int64)
        seg = np.searchsorted(self.segment_offsets, first, side="right") - 1
        local = first - self.segment_offsets[seg]
        if first.size and ((first < 0).any() or (local + length > np.diff(self.segment_offsets)[seg]).any()):
            raise IndexError(f"a slice of {length} rows runs outside its segment")
        if not hasattr(os, "preadv"):  # no positional reads here: gather through the maps
            rows = (first[:, None] + np.arange(length)).reshape(-1)
            return tuple(a.reshape(first.size, length, *a.shape[1:]) for a in self.gather(rows, keys))
        out = []
        for k in keys:
            files = self._file_handles(k)
            arr = np.empty((first.size, length, *self._parts[k][0].shape[1:]), DTYPES[k])
            nbytes = arr[0].nbytes
            view = memoryview(arr.reshape(-1).view(np.uint8))
            for i, (s, r) in enumerate(zip(seg.tolist(), local.tolist())):
                fd, base, row_bytes = files[s]
                if os.preadv(fd, [view[i * nbytes:(i + 1) * nbytes]], base + r * row_bytes) != nbytes:
                    raise DataError(f"short read from {self.manifest['segments'][s]['name']}/{k}.npy: "
                                    f"the file is truncated; convert again")
            out.append(arr)
        return tuple(out)

    def _file_handles(self, key: str) -> list[tuple[int, int, int]]:
        """Per segment: (open file descriptor, byte offset of the data, bytes per row)."""
        if key not in self._fds:
            handles = []
            for seg, arr in zip(self.manifest["segments"], self._parts[key]):
                fd = os.open(self.root / seg["name"] / f"{key}.npy", os.O_RDONLY)
                if hasattr(os, "posix_fadvise"):  # random reads: no read-ahead beyond each slice
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                handles.append((fd, int(arr.offset), int(arr.itemsize * np.prod(arr.shape[1:], dtype=np.int64))))
            self._fds[key] = handles
        return self._fds[key]

    def close(self) -> None:
        """Close the file descriptors read_slices opened (the memory maps close with the object)."""
        for handles in self._fds.values():
            for fd, _, _ in handles:
                os.close(fd)
        self._fds.clear()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def release_pages(self) -> None:
        """Unmap this process's resident pages of every array (they stay in the OS page cache):
        random row access otherwise lets the resident set grow towards the dataset size."""
        for arrays in self._parts.values():
            for arr in arrays:
                _drop_mapped_pages(arr)

    def summary(self) -> str:
        m = self.manifest
        lines = [f"{self.root}: task set {self.task_set}, {self.num_episodes} episodes x "
                 f"{self.episode_length} rows = {self.num_rows} rows, obs {self.obs_dim}, action "
                 f"{self.action_dim}, {len(m['segments'])} segment(s)"]
        for seg in m["segments"]:
            lines.append(f"  {seg['name']}: {seg['episodes']} episodes from {seg.get('source', '?')} "
                         f"(sha256 {str(seg.get('source_sha256', ''))[:12]})")
        lines.append("  episodes per task: " + ", ".join(f"{t} {n}" for t, n in m["episodes_per_task"].items()))
        return "\n".join(lines)


def open_store(root: str | os.PathLike) -> EpisodeStore:
    """Open a store folder read-only (memory-mapped; see the module docstring)."""
    check_argument("open_store", "root", root, PATH_TYPES, "the store folder's path")
    return EpisodeStore(root)
