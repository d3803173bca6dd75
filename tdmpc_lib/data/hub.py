"""Downloading the public MT30/MT80 chunk files from the Hugging Face hub (dataset repo nicklashansen/tdmpc2).

API:
    download_chunks(task_set='mt30', chunks=None, cache_dir=None, revision=None) -> [local paths]
        chunks: indices such as [0, 1] (None = all: 4 files for mt30, 20 for mt80). Files are
        cached by huggingface_hub (a second call does not download again); with
        HF_HUB_OFFLINE=1 only the cache is used and a missing file is a one-line DataError.
"""
from __future__ import annotations

import os

from .store import DataError

HUB_REPO = "nicklashansen/tdmpc2"
NUM_CHUNKS = {"mt30": 4, "mt80": 20}


def chunk_filenames(task_set: str, chunks=None) -> list[str]:
    """'mt30', [0, 1] -> ['mt30/chunk_0.pt', 'mt30/chunk_1.pt'] (checked against the chunk count)."""
    name = task_set.lower()
    if name not in NUM_CHUNKS:
        raise DataError(f"unknown task set {task_set!r}; choose one of {', '.join(NUM_CHUNKS)}")
    ids = list(range(NUM_CHUNKS[name])) if chunks is None else [int(c) for c in chunks]
    for c in ids:
        if not 0 <= c < NUM_CHUNKS[name]:
            raise DataError(f"{name} has chunks 0..{NUM_CHUNKS[name] - 1}, not {c}")
    return [f"{name}/chunk_{c}.pt" for c in ids]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def download_chunks(task_set: str = "mt30", chunks=None, cache_dir=None, revision: str | None = None) -> list[str]:
    """Fetch (or find in the cache) the chunk files; returns their local paths in order."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    paths = []
    for filename in chunk_filenames(task_set, chunks):
        try:
            paths.append(hf_hub_download(repo_id=HUB_REPO, repo_type="dataset", filename=filename,
                                         revision=revision, local_files_only=_offline(),
                                         cache_dir=None if cache_dir is None else str(cache_dir)))
        except LocalEntryNotFoundError:
            why = "HF_HUB_OFFLINE=1 is set" if _offline() else "the hub cannot be reached"
            raise DataError(f"{filename} of dataset {HUB_REPO} is not in the local Hugging Face cache and {why}; "
                            f"download it once with network access (unset HF_HUB_OFFLINE)") from None
    return paths
