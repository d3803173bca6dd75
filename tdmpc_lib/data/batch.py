"""The training batch: B sub-trajectories of H+1 consecutive rows of one episode each,
time-major (official tdmpc2/common/buffer.py)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """obs (H+1, B, O); action (H, B, A) and reward (H, B, 1) are a_t, r_t taken at obs[t]
    (dataset rows 1..H of the slice: row 0's dummy action/reward is never used);
    task (B,) int64; rows (H+1, B) int64 global dataset row index of each obs (lets cached
    per-row teacher targets be looked up)."""
    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    task: torch.Tensor
    rows: torch.Tensor

    @property
    def horizon(self) -> int:
        return self.action.shape[0]

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in
                       (self.obs, self.action, self.reward, self.task, self.rows)))
