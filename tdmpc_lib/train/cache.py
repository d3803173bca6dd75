"""The teacher-target cache: the frozen teacher's targets for every dataset row, computed once.

One cache per kind of target (`KINDS`), each a row-aligned table: row r holds the teacher's
output for (obs[r], action[r+1]) (row r+1 stores the action taken at obs r; the last row of
every episode has no such action and holds NaN, which no training slice ever reads):

    reward  (rows,)      the decoded reward r_T(obs_r, a_r)          (reward distillation)
    value   (rows,)      the ensemble-mean decoded Q_T(obs_r, a_r)    (value distillation)
    policy  (rows, 2A)   the prior's tanh-mean and log-std at obs_r  (policy distillation)
    value_randomK (rows, K) the ensemble-mean decoded Q_T(obs_r, a_r,k) at the K random actions
                         contrast_actions draws for row r (value distillation at random actions;
                         4K bytes per row: 11 GB for all of MT30 at K = 8)

Stored beside the data as PATH.npy (a float32 memmap) and PATH.json (kind, teacher sha256 and
dtype, dataset size, precision and the bf16 accuracy check, build progress). Sweeps over
coefficients and seeds then never run the teacher: a loss reads cache[batch.rows[t]]. Building runs in bf16 where that is accurate:
bf16 is used when its max abs error against fp32 on a spread-out check batch is within
`tolerance` (reward units).

Building all of MT30 (345.69M rows) with the 317M teacher takes hours, so it is done in chunks
of `batch_size` rows with a tqdm bar, and survives a kill (SIGKILL or power loss included):
PATH.json is the progress record, rewritten atomically (tdmpc_lib.files) after every
`flush_every` chunks or `flush_s` seconds, and only after the chunks it counts (`rows_done`)
have been msync'ed to PATH.npy. A new build resumes at the first chunk not counted there, with
the chunk size the build started with, so the finished file is byte-identical to that of an
uninterrupted build. `complete` becomes true with the last chunk and nothing opens an
incomplete cache. Memory is O(chunk): the rows of one chunk, their validity computed from the
episode boundaries, and the written pages of the memory map released at every flush.
"""
from __future__ import annotations

import json
import mmap
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..files import OutputLock, atomic_write_json

if TYPE_CHECKING:
    from .distill import Teacher

CACHE_FORMAT = "tdmpc-distill-teacher-rewards"
# The teacher targets a cache can hold, one file each: these, and RANDOM_VALUE + K (the Qs at K
# random actions per row, e.g. 'value_random8').
KINDS = ("reward", "value", "policy")
RANDOM_VALUE = "value_random"


def random_value_kind(k: int) -> str:
    """The cache kind of the teacher's Q at `k` random actions per row: 'value_random8'."""
    return f"{RANDOM_VALUE}{k}"


def random_actions_of(kind: str) -> int:
    """K of a 'value_randomK' kind, 0 for the other kinds; a one-line ValueError for an unknown kind."""
    if kind in KINDS:
        return 0
    k = kind[len(RANDOM_VALUE):] if kind.startswith(RANDOM_VALUE) else ""
    if not (k.isdigit() and int(k) > 0):
        raise ValueError(f"unknown teacher-target kind {kind!r}; choose one of {', '.join(KINDS)}, "
                         f"{RANDOM_VALUE}K (K >= 1)")
    return int(k)


def contrast_actions(rows: torch.Tensor, k: int, action_dim: int, seed: int = 0) -> torch.Tensor:
    """(k, *rows.shape, action_dim) actions uniform in [-1, 1), a function of (seed, row, i, dim)
    only (splitmix64 of the counter): the same for a row in every batch, run and cache build."""
    r = rows.detach().cpu().numpy().astype(np.uint64)
    i = np.arange(k, dtype=np.uint64).reshape(k, *([1] * r.ndim), 1)
    d = np.arange(action_dim, dtype=np.uint64)
    x = ((r[None, ..., None] * np.uint64(k) + i) * np.uint64(action_dim) + d) ^ np.uint64(seed * 0x9E3779B97F4A7C15 % 2**64)
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    u = (x >> np.uint64(40)).astype(np.float64) / float(1 << 24)  # 24 random bits -> [0, 1)
    return torch.from_numpy((2 * u - 1).astype(np.float32)).to(rows.device)


def task_contrast_actions(rows: torch.Tensor, k: int, task: torch.Tensor, action_dim: int, action_mask
                          ) -> torch.Tensor:
    """contrast_actions with the task's inactive action dims zeroed, as the data's are:
    rows (...), task (...) -> (k, ..., A). action_mask: WorldModel.action_mask (None single-task)."""
    a = contrast_actions(rows, k, action_dim)
    mask = action_mask(task, a)
    return a if mask is None else a * mask


def kind_columns(teacher: Teacher, kind: str) -> int:
    """Floats per row of a cache of `kind` (policy: tanh-mean and log-std of every action dim)."""
    k = random_actions_of(kind)
    return k if k else 2 * teacher.model.cfg.action_dim if kind == "policy" else 1


def kind_values(teacher: Teacher, obs, action, task, kind: str, bf16: bool, rows: np.ndarray) -> torch.Tensor:
    """The teacher's targets of `kind` for dataset rows `rows` (n,) given their obs (n, O),
    action (n, A) and task (n,): (n, C)."""
    k = random_actions_of(kind)
    actions = None
    if k:  # the actions training draws for these rows (Distiller.targets)
        actions = task_contrast_actions(torch.from_numpy(np.asarray(rows, dtype=np.int64)), k, task, action.shape[-1],
                                        teacher.model.action_mask)
    out = teacher.predict(obs, action, task, reward=kind == "reward", value=kind == "value",
                          policy=kind == "policy", value_actions=actions, bf16=bf16)
    if kind == "policy":
        return torch.cat([out["pi_mean"], out["pi_log_std"]], dim=-1)
    if k:
        return out["value_random"].squeeze(-1).transpose(0, 1)  # (K, n, 1) -> (n, K)
    return out[kind]


def row_has_next(store, rows: np.ndarray) -> np.ndarray:
    """rows (n,) int64 -> (n,) bool: row r has a next row in the same episode (r is not an
    episode's last row). O(n log E): no array of the store's size is made."""
    rows = np.asarray(rows, dtype=np.int64)
    nxt = np.searchsorted(store.episode_starts, rows, side="right")  # index of the next episode's start
    return rows + 1 < store.episode_starts[np.minimum(nxt, len(store.episode_starts) - 1)]


def valid_rows(store, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """(hi - lo,) bool for rows lo .. hi-1 (default: all rows): row_has_next. The full-range
    call makes one byte per dataset row (345 MB for MT30); the cache build asks per chunk."""
    hi = store.num_rows if hi is None else hi
    valid = np.ones(hi - lo, dtype=bool)
    ends = store.episode_starts[1:] - 1
    ends = ends[np.searchsorted(ends, lo):np.searchsorted(ends, hi)]
    valid[ends - lo] = False
    return valid


def _store_rows(store, lo: int, hi: int):
    """obs[lo:hi], action[lo+1:hi+1] (zeros past the end / NaN dummies), task[lo:hi] as tensors."""
    obs, task = store.gather(np.arange(lo, hi), ("obs", "task"))
    act_rows = np.minimum(np.arange(lo + 1, hi + 1), store.num_rows - 1)
    (action,) = store.gather(act_rows, ("action",))
    action = np.nan_to_num(action, nan=0.0)
    return torch.from_numpy(obs), torch.from_numpy(action), torch.from_numpy(task.astype(np.int64))


class TeacherTargetCache:
    """Per-row teacher targets of one kind beside the data: PATH.npy, (rows,) or (rows, C)
    float32 memmap (NaN for the last row of every episode, which no slice uses), and PATH.json
    naming the kind, teacher sha256, dtype, the store's size and the accuracy check.
    Lookup: cache[rows (n, B)] -> (n, B, C) (C = 1 for reward and value)."""

    UPLOAD_CHUNK = 1 << 24  # rows per host->device copy (64 MB)

    def __init__(self, path: str | os.PathLike, device="cpu", release_every: int = 256):
        self.path, self.release_every, self._lookups = Path(path), release_every, 0
        self.meta = json.loads(self.meta_path(self.path).read_text())
        if not self.meta.get("complete"):
            raise ValueError(f"teacher cache {self.path} is incomplete; build it again (it resumes)")
        self.kind = self.meta.get("kind", "reward")  # caches of older builds hold rewards
        self.values = np.load(self.path, mmap_mode="r")
        self.columns = 1 if self.values.ndim == 1 else self.values.shape[1]
        self.device = torch.device(device)
        # On an accelerator the whole table (4 bytes per row) lives there: lookups need no host
        # sync. It is uploaded in chunks so the host never holds more than one chunk.
        self.table = None
        if self.device.type != "cpu":
            self.table = torch.empty(self.values.shape, dtype=torch.float32, device=self.device)
            for lo in range(0, len(self.values), self.UPLOAD_CHUNK):
                chunk = np.array(self.values[lo:lo + self.UPLOAD_CHUNK])
                self.table[lo:lo + len(chunk)].copy_(torch.from_numpy(chunk))
            self.release_pages()

    @staticmethod
    def meta_path(path: Path) -> Path:
        return path.with_suffix(".json")

    @staticmethod
    def default_path(data_dir: str | os.PathLike, teacher_sha256: str, kind: str = "reward") -> Path:
        return Path(data_dir) / "teacher_cache" / f"{kind}_{teacher_sha256[:16]}.npy"

    @staticmethod
    def path_of(spec: str, data_dir, teacher_sha256: str, kind: str) -> Path:
        """The file of `kind` for a cache spec: 'auto' (beside the data) or the reward cache's
        .npy path, the other kinds beside it (PATH_value.npy, PATH_policy.npy)."""
        if spec == "auto":
            return TeacherTargetCache.default_path(data_dir, teacher_sha256, kind)
        path = Path(spec)
        return path if kind == "reward" else path.with_name(f"{path.stem}_{kind}{path.suffix or '.npy'}")

    def lookup(self, rows: torch.Tensor) -> torch.Tensor:
        if self.table is not None:
            out = self.table[rows.to(self.device)]
            return out.unsqueeze(-1) if out.dim() == rows.dim() else out
        idx = rows.cpu().numpy()
        out = torch.from_numpy(np.asarray(self.values[idx.reshape(-1)]).reshape(*idx.shape, self.columns)).to(rows.device)
        self._lookups += 1
        if self.release_every and self._lookups % self.release_every == 0:
            self.release_pages()
        return out

    def release_pages(self) -> None:
        """Drop this process's resident pages of the memory map (random lookups otherwise let
        the resident set grow towards the cache's size: 4 bytes per dataset row)."""
        try:
            self.values._mmap.madvise(mmap.MADV_DONTNEED)
        except (AttributeError, OSError, ValueError):
            pass

    def check(self, store, teacher_sha256: str | None = None) -> None:
        m = self.meta
        if m["num_rows"] != store.num_rows or m["num_episodes"] != store.num_episodes:
            raise ValueError(f"teacher cache {self.path} was built for {m['num_rows']} rows / {m['num_episodes']} "
                             f"episodes, the dataset has {store.num_rows} / {store.num_episodes}; rebuild it")
        if teacher_sha256 is not None and m["teacher_sha256"] != teacher_sha256:
            raise ValueError(f"teacher cache {self.path} was computed by teacher sha256 "
                             f"{m['teacher_sha256'][:12]}, not {teacher_sha256[:12]}")

    @classmethod
    def build(cls, teacher: Teacher, store, path: str | os.PathLike, batch_size: int = 4096,
              precision: str = "auto", tolerance: float = 0.02, progress: bool = True,
              flush_every: int = 64, flush_s: float = 60.0, kind: str = "reward", wait: bool = False
              ) -> "TeacherTargetCache":
        """Compute (or finish) the cache of `kind`; an interrupted build resumes from its last
        flush (see the module docstring), in chunks of the batch_size it started with. While
        another process builds it: OutputBusyError, or with `wait` (a training run that needs the
        cache) wait for that process and use what it built."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the teacher cache folder {path.parent} ({e.strerror}); "
                             f"pass a writable cache path instead of 'auto'") from None
        with OutputLock(path, "teacher cache", wait=wait):  # one builder per cache file
            try:
                return cls._build_locked(teacher, store, path, batch_size, precision, tolerance, progress,
                                         flush_every, flush_s, kind)
            except KeyboardInterrupt as e:  # Ctrl-C / SIGTERM: what was flushed stays valid
                raise type(e)(f"the teacher cache {path} was being built and keeps the rows of its last flush; "
                              f"rerun the same command to continue it") from None

    @classmethod
    def _build_locked(cls, teacher: Teacher, store, path: Path, batch_size: int, precision: str, tolerance: float,
                      progress: bool, flush_every: int, flush_s: float, kind: str) -> "TeacherTargetCache":
        from tqdm.auto import tqdm

        meta_path = cls.meta_path(path)
        n = store.num_rows
        cols = kind_columns(teacher, kind)
        shape = (n,) if cols == 1 else (n, cols)
        meta = _read_progress(meta_path) if path.is_file() else None
        same = meta is not None and meta.get("teacher_sha256") == teacher.sha256 and \
            meta.get("num_rows") == n and meta.get("num_episodes") == store.num_episodes and \
            meta.get("kind", "reward") == kind
        if same and meta.get("complete"):
            return cls(path)
        values = None
        if same:
            try:
                values = np.lib.format.open_memmap(path, mode="r+")
            except (OSError, ValueError):  # a file cut short before its header was written
                values = None
            if values is not None and (values.shape != shape or values.dtype != np.float32):
                values = None
        if values is None:
            meta = {"format": CACHE_FORMAT, "kind": kind, "teacher_path": teacher.path, "teacher_sha256": teacher.sha256,
                    "teacher_size": teacher.model.cfg.size, "teacher_weight_dtype": str(teacher.dtype),
                    "data": str(store.root), "num_rows": n, "num_episodes": store.num_episodes,
                    "convention": f"value[r] = teacher {kind} for (obs[r], action[r+1]); NaN at episode ends",
                    "chunk_rows": int(batch_size), "rows_done": 0, "complete": False}
            meta.update(cls._choose_precision(teacher, store, precision, tolerance, batch_size, kind))
            # The progress record of this build goes first: a kill while the new .npy is being
            # made must not leave an older record (of another teacher, say) beside it.
            _write_json(meta_path, meta)
            values = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        # Chunks of the size the build started with: the same teacher calls on the same rows,
        # so a resumed build writes the bytes an uninterrupted one would.
        chunk = int(meta.get("chunk_rows", batch_size))  # records of older builds lack it
        if "chunk_rows" in meta and meta["rows_done"] % chunk and meta["rows_done"] != n:
            raise ValueError(f"teacher cache progress {meta_path} is inconsistent (rows_done {meta['rows_done']} is "
                             f"not a multiple of chunk_rows {chunk}); delete {path} and its .json to rebuild")
        bf16 = meta["precision"] == "bf16"
        start, last_flush = meta["rows_done"], time.perf_counter()
        bar = tqdm(total=n, initial=start, desc="teacher cache", unit="row", unit_scale=True, disable=not progress)
        for i, lo in enumerate(range(start, n, chunk)):
            hi = min(lo + chunk, n)
            obs, action, task = _store_rows(store, lo, hi)
            r = kind_values(teacher, obs, action, task, kind, bf16, np.arange(lo, hi)).numpy()
            r = r.squeeze(-1) if cols == 1 else r
            valid = valid_rows(store, lo, hi)
            values[lo:hi] = np.where(valid if cols == 1 else valid[:, None], r, np.nan)
            bar.update(hi - lo)
            if (i + 1) % flush_every == 0 or hi == n or time.perf_counter() - last_flush >= flush_s:
                values.flush()  # msync: the chunks are on disk before the record counts them
                _drop_mapped_pages(values)
                store.release_pages()
                meta["rows_done"] = hi
                meta["complete"] = hi == n
                meta["build_s"] = meta.get("build_s", 0.0) + time.perf_counter() - last_flush
                _write_json(meta_path, meta)
                last_flush = time.perf_counter()
        bar.close()
        if n == start:  # an empty store, or every chunk counted but the flag not yet set
            meta["complete"] = True
            _write_json(meta_path, meta)
        del values
        return cls(path)

    @staticmethod
    def _choose_precision(teacher: Teacher, store, precision: str, tolerance: float, batch_size: int,
                          kind: str = "reward") -> dict:
        """bf16 where accurate: compare bf16 with fp32 on a spread-out check batch of rows."""
        if precision == "fp32" or teacher.dtype != torch.float32:
            return {"precision": "fp32" if teacher.dtype == torch.float32 else str(teacher.dtype)}
        rows = np.linspace(0, store.num_rows - 2, num=min(batch_size, store.num_rows - 1)).astype(np.int64)
        rows = rows[row_has_next(store, rows)]
        obs, task = store.gather(rows, ("obs", "task"))
        (action,) = store.gather(rows + 1, ("action",))
        args = torch.from_numpy(obs), torch.from_numpy(action), torch.from_numpy(task.astype(np.int64))
        ref = kind_values(teacher, *args, kind, False, rows)
        err = (kind_values(teacher, *args, kind, True, rows) - ref).abs()
        check = {"bf16_check_rows": int(rows.size), "bf16_max_abs_err": float(err.max()),
                 "bf16_mean_abs_err": float(err.mean()), "tolerance": tolerance}
        accurate = float(err.max()) <= tolerance
        return {"precision": "bf16" if precision == "bf16" or accurate else "fp32", **check}


def find_complete_cache(store, data_dir, teacher_path: str, spec: str, device="cpu",
                        kind: str = "reward") -> TeacherTargetCache | None:
    """The finished cache of `kind` of this teacher file for this dataset (spec 'auto' or a
    path), or None. Needs only the teacher file's sha256, not the teacher model."""
    from ..checkpoint import cached_file_sha256

    if spec is None or not Path(teacher_path).is_file():
        return None
    sha = cached_file_sha256(teacher_path)  # once per process: every cache kind asks for it
    path = TeacherTargetCache.path_of(spec, data_dir, sha, kind)
    meta_path = TeacherTargetCache.meta_path(path)
    meta = _read_progress(meta_path)
    if not (path.is_file() and meta is not None and meta.get("complete") and meta.get("kind", "reward") == kind):
        return None
    cache = TeacherTargetCache(path, device)
    cache.check(store, sha)
    return cache


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_json(path, obj)


def _read_progress(path: Path) -> dict | None:
    """The build record, or None when there is none (or it is unreadable: start again)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _drop_mapped_pages(arr: np.memmap) -> None:
    """Unmap this process's pages of a flushed memory map (they stay in the page cache): the
    resident set would otherwise grow by 4 bytes per row built (1.4 GB for MT30)."""
    try:
        arr._mmap.madvise(mmap.MADV_DONTNEED)
    except (AttributeError, OSError, ValueError):
        pass
