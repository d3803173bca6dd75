"""What a run records besides the model: RNG states (saved in every checkpoint so a resumed
run draws exactly the same numbers) and the metrics files (JSONL + CSV rows that a resumed run
truncates back to its checkpoint)."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import torch

from ..files import write_error


def rng_state(device: torch.device) -> dict:
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class MetricsLog:
    """Rows appended to NAME.jsonl and NAME.csv (CSV columns fixed by the first row), flushed per
    row; `position()` / `truncate()` let a resumed run drop rows written after its checkpoint."""

    def __init__(self, run_dir: Path, name: str):
        self.jsonl, self.csv = run_dir / f"{name}.jsonl", run_dir / f"{name}.csv"
        self.columns: list[str] | None = None
        if self.csv.is_file() and self.csv.stat().st_size:
            with open(self.csv, newline="") as f:
                self.columns = next(csv.reader(f), None)

    def write(self, row: dict) -> None:
        """Append `row` to both files (a row cut short by a full disk is cut back on resume, as
        every row after the checkpoint is)."""
        path = self.jsonl
        try:
            with open(path, "a") as f:
                f.write(json.dumps(row) + "\n")
            new = self.columns is None
            if new:
                self.columns = list(row)
            path = self.csv
            with open(path, "a", newline="") as f:
                w = csv.DictWriter(f, self.columns, extrasaction="ignore")
                if new:
                    w.writeheader()
                w.writerow(row)
        except OSError as e:
            raise write_error(e, path) from None

    def last(self) -> dict | None:
        """The last complete row written (None when there is none)."""
        if not self.jsonl.is_file():
            return None
        lines = self.jsonl.read_text().splitlines()
        return json.loads(lines[-1]) if lines else None

    def position(self) -> dict:
        return {str(p.name): (p.stat().st_size if p.is_file() else 0) for p in (self.jsonl, self.csv)}

    def truncate(self, position: dict) -> None:
        for p in (self.jsonl, self.csv):
            size = position.get(p.name, 0)
            if p.is_file() and p.stat().st_size > size:
                with open(p, "r+b") as f:
                    f.truncate(size)
        if self.csv.is_file() and self.csv.stat().st_size == 0:
            self.columns = None
