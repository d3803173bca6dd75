"""Reading the public TD-MPC2 MT30/MT80 chunk files and converting them into a store
(Hugging Face dataset nicklashansen/tdmpc2).

A chunk file is a torch.save'd tensordict TensorDict with batch_size [N, L] (L = 501 rows
per MT30 episode, 101 per MT80 piece) and keys
    obs float32 (N, L, O), action float32 (N, L, A), reward float32 (N, L), task int32 (N, L);
row 0 of every episode holds a dummy action/reward (NaN or uninitialized memory).

API:
    read_chunk(path, trust_pickle=True) -> {'obs', 'action', 'reward', 'task'} torch tensors
    convert_chunks(paths, out_dir, trust_pickle=True, task_set=None, episode_length=None)
        -> manifest dict. Streams chunk by chunk (peak RAM about one chunk, less when the file
        can be memory-mapped), validates, and appends one store segment per chunk. Resumable:
        a chunk whose sha256 the manifest already records is skipped; a half-written segment
        of an interrupted run is deleted and redone.
"""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import file_sha256
from ..files import OutputLock, removed_if_left_empty
from ..tasks import TASK_SETS, get_task_set
from ..typed import PATH_TYPES, check_argument
from .store import ROW_KEYS, DataError, SegmentWriter, new_manifest, read_manifest

# Rows per episode in the public datasets: MT30 = 1 initial obs + 500 steps; MT80 = pieces of 101.
DEFAULT_EPISODE_LENGTH = {"mt30": 501, "mt80": 101}
BLOCK_ROWS = 1 << 20  # rows validated and written per step (~128 MB of float32 data)

TRUST_ERROR = ("refusing to unpickle {path}: chunk files are pickles, and loading a pickle runs "
               "arbitrary code; pass --trust-pickle (trust_pickle=True) only for files you trust, such "
               "as the official nicklashansen/tdmpc2 dataset")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]


def read_chunk(path: str | os.PathLike, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Unpickle one chunk file -> {'obs' (N, L, O), 'action' (N, L, A), 'reward' (N, L), 'task' (N, L)}.

    Tensors are memory-mapped from the file where torch can (zip format), otherwise loaded."""
    path = Path(path)
    if not trust_pickle:
        raise DataError(TRUST_ERROR.format(path=path))
    if not path.is_file():
        raise DataError(f"chunk file {path} does not exist")
    try:
        import tensordict  # noqa: F401  (the pickled class is tensordict's TensorDict)
    except ImportError:
        raise DataError("reading chunk files needs the `tensordict` package: pip install tensordict") from None
    # SECURITY: this is the ONE place in the project that calls torch.load with
    # weights_only=False. The public datasets are pickled TensorDict objects, which the safe
    # weights-only unpickler refuses; the caller must have opted in with trust_pickle=True.
    obj = None
    for mmap in (True, False):  # mmap needs the zip format; old (legacy) files load whole
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
            break
        except RuntimeError as e:
            if mmap and "mmap" in str(e).lower():
                continue
            raise DataError(f"cannot read chunk {path}: truncated or corrupt ({_first_line(e)})") from None
        except (EOFError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, ValueError, AttributeError,
                ModuleNotFoundError, TypeError, OverflowError, MemoryError, KeyError, IndexError, struct.error) as e:
            # Unpickling arbitrary bytes runs whatever opcodes they spell: a corrupt file can fail
            # in any of these ways (an OverflowError for a huge length field, a KeyError for a
            # memo id that was never stored, ...).
            raise DataError(f"cannot read chunk {path}: truncated, corrupt or not a dataset chunk "
                            f"({type(e).__name__}: {_first_line(e)})") from None
    try:
        data = {k: obj[k] for k in ROW_KEYS}
    except (KeyError, TypeError, IndexError):
        keys = list(obj.keys()) if hasattr(obj, "keys") else type(obj).__name__
        raise DataError(f"{path} is not a TD-MPC2 dataset chunk: expected keys {list(ROW_KEYS)}, "
                        f"found {keys}") from None
    for k, v in data.items():
        if not isinstance(v, torch.Tensor):
            raise DataError(f"{path}: key {k!r} holds a {type(v).__name__}, expected a tensor")
    return data


def check_chunk_shapes(data: dict[str, torch.Tensor], task_set: str, episode_length: int, name) -> int:
    """Shapes against the task set and episode length; returns N (episodes)."""
    ts = get_task_set(task_set)
    obs = data["obs"]
    if obs.ndim != 3:
        raise DataError(f"{name}: obs has shape {tuple(obs.shape)}, expected (episodes, rows, {ts.obs_dim})")
    n, length = obs.shape[:2]
    if length != episode_length:
        raise DataError(f"{name}: episodes have {length} rows, expected {episode_length} for {ts.name} "
                        f"(pass episode_length / --episode-length if this is intended)")
    if n == 0:
        raise DataError(f"{name}: the chunk holds no episodes")
    want = {"obs": (n, length, ts.obs_dim), "action": (n, length, ts.action_dim), "reward": (n, length),
            "task": (n, length)}
    for k, shape in want.items():
        got = tuple(data[k].shape)
        if k in ("reward", "task") and got == (*shape, 1):
            data[k] = data[k].squeeze(-1)
        elif got != shape:
            raise DataError(f"{name}: {k} has shape {got}, expected {shape} for task set {ts.name}")
        if k == "task" and data[k].is_floating_point():
            raise DataError(f"{name}: task ids are {data[k].dtype}, expected an integer dtype")
    return n


def validate_block(obs, action, reward, task, num_tasks: int, name, first: int) -> np.ndarray:
    """Check a block of n episodes (numpy, shapes as in a chunk); returns task ids (n,) int32.

    Task ids must be constant per episode and in [0, num_tasks); no NaN/inf anywhere except
    row 0's dummy action and reward."""
    if (task != task[:, :1]).any():
        e = first + int(np.nonzero((task != task[:, :1]).any(1))[0][0])
        raise DataError(f"{name}: episode {e} changes task id within the episode")
    ids = task[:, 0]
    bad = (ids < 0) | (ids >= num_tasks)
    if bad.any():
        e = int(np.nonzero(bad)[0][0])
        raise DataError(f"{name}: episode {first + e} has task id {int(ids[e])}, outside [0, {num_tasks})")
    for key, arr in (("obs", obs), ("action", action[:, 1:]), ("reward", reward[:, 1:])):
        finite = np.isfinite(arr)
        if not finite.all():
            where = np.argwhere(~finite)[0]
            row = int(where[1]) + (key != "obs")
            raise DataError(f"{name}: NaN/inf in {key} of episode {first + int(where[0])}, row {row} "
                            f"(only row 0's dummy action/reward may be NaN)")
    return ids.astype(np.int32)


def _prepare_store(out: Path, task_set: str | None, episode_length: int | None, first_chunk) -> dict:
    """Existing manifest (checked against the arguments) or a new one."""
    manifest = read_manifest(out)
    if manifest is not None:
        if task_set and task_set.lower() != manifest["task_set"]:
            raise DataError(f"{out} holds a {manifest['task_set']} store; cannot add {task_set} data")
        if episode_length and episode_length != manifest["episode_length"]:
            raise DataError(f"{out} holds episodes of {manifest['episode_length']} rows, not {episode_length}")
        return manifest
    if task_set is None:  # infer from the padded observation size of the first chunk
        obs_dim = first_chunk["obs"].shape[-1]
        matches = [n for n, ts in TASK_SETS.items() if ts.obs_dim == obs_dim]
        if not matches:
            raise DataError(f"cannot tell the task set of observations of size {obs_dim}; pass task_set")
        task_set = matches[0]
    task_set = get_task_set(task_set).name
    return new_manifest(task_set, episode_length or DEFAULT_EPISODE_LENGTH[task_set])


def convert_chunks(paths, out: str | os.PathLike, trust_pickle: bool = False, task_set: str | None = None,
                   episode_length: int | None = None, progress: bool = True) -> dict:
    """Convert chunk files into (or append them to) the store at `out`; returns its manifest."""
    check_argument("convert_chunks", "paths", paths, (list, tuple), "a list of chunk file paths")
    for p in paths:
        check_argument("convert_chunks", "each of paths", p, PATH_TYPES, "a chunk file path")
    check_argument("convert_chunks", "out", out, PATH_TYPES, "the store folder's path")
    paths, out = [Path(p) for p in paths], Path(out)
    if episode_length is not None and (isinstance(episode_length, bool) or not isinstance(episode_length, int)
                                       or episode_length < 2):
        raise DataError(f"episode_length {episode_length!r} is not a row count; give the rows per stored episode "
                        f"(at least 2: the first observation and one step), or leave it out for the task set's")
    if not trust_pickle:
        raise DataError(TRUST_ERROR.format(path=", ".join(map(str, paths)) or "the chunk files"))
    if not paths:
        raise DataError("no chunk files given")
    for p in paths:
        if p.is_dir():
            raise DataError(f"chunk file {p} is a folder; give the chunk files in it (e.g. {p}/*.pt)")
        if not p.is_file():
            raise DataError(f"chunk file {p} does not exist")
    # one writer at a time (a segment is added to the manifest it read); a failed first
    # conversion leaves no empty store behind
    with OutputLock(out, "store"), removed_if_left_empty(out):
        out.mkdir(parents=True, exist_ok=True)
        return _convert_locked(paths, out, task_set, episode_length, progress)


def _convert_locked(paths: list[Path], out: Path, task_set, episode_length, progress: bool) -> dict:
    manifest = read_manifest(out)
    for path in paths:
        sha = file_sha256(path)
        done = [s for s in (manifest or {}).get("segments", []) if s.get("source_sha256") == sha]
        if done:
            if progress:
                print(f"{path.name}: already converted as {done[0]['name']}, skipped")
            continue
        data = read_chunk(path, trust_pickle=True)
        manifest = _prepare_store(out, task_set, episode_length, data)  # written when a segment commits
        n = check_chunk_shapes(data, manifest["task_set"], manifest["episode_length"], path.name)
        append_episodes(out, manifest, data, n, {"source": path.name, "source_sha256": sha,
                                                  "source_bytes": path.stat().st_size}, progress)
        del data
    return manifest


def append_episodes(out: Path, manifest: dict, data, n: int, source: dict, progress: bool = True) -> dict:
    """Validate and write n episodes (`data`: chunk-shaped torch tensors or numpy arrays) as
    one new segment of the store at `out`; returns the segment's manifest entry."""
    L = manifest["episode_length"]
    writer = SegmentWriter(out, manifest, n)
    block = max(1, BLOCK_ROWS // L)
    bar = tqdm(total=n, desc=f"convert {source['source']}", unit="ep", disable=not progress)
    try:
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            obs, action, reward, task = (np.asarray(data[k][lo:hi]) for k in ROW_KEYS)
            ids = validate_block(obs, action, reward, task, len(manifest["tasks"]), source["source"], lo)
            writer.write(lo, obs.astype(np.float32, copy=False), action, reward, ids)
            bar.update(hi - lo)
        # every row went through validate_block: the manifest records it (a store made otherwise,
        # e.g. a synthetic one, has no such record)
        return writer.commit({**source, "rows_checked_finite": True})
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
