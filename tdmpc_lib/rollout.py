"""The one lockstep rollout loop: E environments step together, one batched `act` per agent
step for all of them. The evaluator, data collection and the rollout viewer all run on it.

    obs = reset_all(envs, obs_dim)                      # (E, O), each observation zero-padded
    returns = lockstep(envs, act, obs, steps=None, on_step=None)

`act(obs (E, O), t) -> actions (E, A)` is called once per agent step with the padded
observations; environment i receives `actions[i, :action_dim_i]`. An environment that reports
done stops stepping (its row keeps its last observation); the loop ends when all are done or
after `steps` agent steps. `on_step(step)` sees every step as a `Step`: the observations after
it, the actions, the rewards, which environments stepped and which are done.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass
class Step:
    t: int                # agent step index, from 0
    obs: np.ndarray       # (E, O) observations after the step (zero-padded)
    actions: np.ndarray   # (E, A) the actions act returned
    rewards: np.ndarray   # (E,) rewards of this step (0 for environments already done)
    active: np.ndarray    # (E,) bool: the environments that stepped
    done: np.ndarray      # (E,) bool: done after this step


def _put(obs: np.ndarray, i: int, o: np.ndarray) -> None:
    obs[i] = 0.0
    obs[i, :o.shape[0]] = o


def reset_all(envs: Sequence, obs_dim: int) -> np.ndarray:
    """Reset every environment; (E, obs_dim) float32 first observations, zero-padded."""
    obs = np.zeros((len(envs), obs_dim), dtype=np.float32)
    for i, env in enumerate(envs):
        _put(obs, i, env.reset())
    return obs


def lockstep(envs: Sequence, act: Callable[[np.ndarray, int], np.ndarray], obs: np.ndarray,
             steps: int | None = None, on_step: Callable[[Step], None] | None = None) -> np.ndarray:
    """Step every environment until done (or for `steps` agent steps); returns (E,) episode returns.
    `obs` (E, O) from `reset_all` is updated in place."""
    done = np.zeros(len(envs), dtype=bool)
    returns = np.zeros(len(envs), dtype=np.float64)
    t = 0
    while not done.all() and (steps is None or t < steps):
        actions = act(obs, t)
        active = ~done
        rewards = np.zeros(len(envs), dtype=np.float64)
        for i, env in enumerate(envs):
            if done[i]:
                continue
            o, r, d, _ = env.step(actions[i, :env.action_dim])
            _put(obs, i, o)
            rewards[i] = r
            returns[i] += r
            done[i] = d
        if on_step is not None:
            on_step(Step(t, obs, actions, rewards, active, done.copy()))
        t += 1
    return returns
