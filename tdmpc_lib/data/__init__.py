"""Datasets: the public MT30/MT80 chunk files, a memory-mapped episode store, the training
batch sampler, and offline collection of small real datasets.

    from tdmpc_lib.data import open_store, SliceSampler
    store = open_store(DIR)           # EpisodeStore: task_set, num_rows, num_episodes, obs, ...
    sampler = SliceSampler(store, batch_size=256, horizon=3, device="cpu", seed=0)
    batch = sampler.sample()          # Batch: obs (H+1,B,O), action (H,B,A), reward (H,B,1),
                                      #        task (B,), rows (H+1,B)
    state = sampler.state_dict(); sampler.load_state_dict(state)

    convert_chunks([...chunk_K.pt], DIR, trust_pickle=True)   # public files -> store
    collect(DIR, tasks="walker-walk", episodes=2, policy="random")

CLI: python -m tdmpc_lib.data convert|collect|info|download (see __main__.py).
Modules: store (layout + reader), chunks (public files), sampler, collect, hub, benchmark_support.
"""
from .batch import Batch
from .chunks import convert_chunks, read_chunk
from .collect import Takeover, collect
from .hub import download_chunks
from .sampler import SliceSampler
from .store import DataError, EpisodeStore, RowArray, open_store

__all__ = ["Batch", "DataError", "EpisodeStore", "RowArray", "SliceSampler", "Takeover", "collect", "convert_chunks",
           "download_chunks", "open_store", "read_chunk"]
