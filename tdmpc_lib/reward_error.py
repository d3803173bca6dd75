"""How well a world model's reward head predicts rewards on stored episodes: the mechanism
that reward distillation acts on, measured without any planning.

For every transition of a store (row r of an episode holds obs_r; row r+1 holds the action taken
at obs_r and the reward received for it, official tdmpc2/common/buffer.py) the model predicts

    r_hat(obs_r, a_r) = two_hot_inv(reward(encode(obs_r), a_r))        (real reward units)

which is exactly the quantity the paper's distillation loss compares between teacher and
student (first step of a sub-trajectory, decoded scalar rewards). `reward_predictions` returns
the predictions and the true rewards; `reward_error` reduces them to

    mse_true     mean (r_hat - r)^2 over all transitions         (accuracy against the environment)
    mae_true     mean |r_hat - r|
    mse_teacher  mean (r_hat - r_hat_teacher)^2                  (agreement with the teacher's head)
    per_task     {task: {mse_true, mse_teacher, transitions}}

Use held-out episodes (a store no student trained on) to measure generalisation, not recall.
"""
from __future__ import annotations

import numpy as np
import torch

from .world_model import WorldModel


@torch.no_grad()
def reward_predictions(model: WorldModel, store, batch_size: int = 4096, device="cpu") -> dict[str, np.ndarray]:
    """Predicted and true rewards of every transition of `store` (an EpisodeStore).

    Returns {'predicted' (N,), 'reward' (N,), 'task' (N,) int}: N = rows - episodes."""
    model = model.to(device).eval()
    starts = np.asarray(store.episode_starts)
    rows = np.concatenate([np.arange(s, e - 1) for s, e in zip(starts[:-1], starts[1:])]).astype(np.int64)
    predicted = np.empty(len(rows), np.float32)
    for lo in range(0, len(rows), batch_size):
        r = rows[lo:lo + batch_size]
        obs, task = store.gather(r, ("obs", "task"))
        (action,) = store.gather(r + 1, ("action",))
        task_t = torch.as_tensor(task, dtype=torch.long, device=device)
        z = model.encode(torch.as_tensor(obs, device=device), task_t)
        logits = model.reward(z, torch.as_tensor(action, device=device), task_t)
        predicted[lo:lo + len(r)] = model.decode(logits).squeeze(-1).float().cpu().numpy()
    reward, task = store.gather(rows + 1, ("reward",))[0], store.gather(rows, ("task",))[0]
    return {"predicted": predicted, "reward": np.asarray(reward, np.float32), "task": np.asarray(task)}


def reward_error(model: WorldModel, store, teacher_predicted: np.ndarray | None = None,
                 task_names: list[str] | None = None, batch_size: int = 4096, device="cpu") -> dict:
    """Reward-prediction error of `model` on `store` against the true rewards and, when given,
    against a teacher's predictions on the same transitions (from `reward_predictions`)."""
    p = reward_predictions(model, store, batch_size, device)
    err = p["predicted"] - p["reward"]
    out = {"transitions": int(len(err)), "mse_true": float(np.mean(err ** 2)), "mae_true": float(np.mean(np.abs(err)))}
    gap = None
    if teacher_predicted is not None:
        if len(teacher_predicted) != len(err):
            raise ValueError(f"teacher predictions cover {len(teacher_predicted)} transitions, the store {len(err)}: "
                             "compute them on the same store")
        gap = p["predicted"] - teacher_predicted
        out["mse_teacher"] = float(np.mean(gap ** 2))
    per_task = {}
    for t in np.unique(p["task"]):
        sel = p["task"] == t
        name = task_names[int(t)] if task_names else str(int(t))
        per_task[name] = {"transitions": int(sel.sum()), "mse_true": float(np.mean(err[sel] ** 2))}
        if gap is not None:
            per_task[name]["mse_teacher"] = float(np.mean(gap[sel] ** 2))
    out["per_task"] = per_task
    return out
