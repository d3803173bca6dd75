"""Collecting small real datasets offline: roll out a policy on MT30 tasks and write the
episodes both as a public-format chunk file and into a memory-mapped store.

Policies: 'plan' (MPPI with a checkpoint's world model), 'prior' (its policy prior), 'random'
(uniform actions in [-1, 1] on the task's action dims, one generator per episode seeded from
(seed, task id, k); no checkpoint needed). `explore` samples the planner's / policy's own
exploration noise; `action_noise` adds Gaussian noise of that std to every executed action
(drawn from the episode's generator, then clipped to [-1, 1]), which degrades a competent policy
into the mixed-quality episodes a replay buffer holds. All episodes of
a run step in lockstep, one batched planner call per agent step (as in tdmpc_lib.evaluate).
Episode k of a task starts from make_env(task, seed, episode=k)'s initial state, so episodes
differ and a run is reproducible.

API:
    collect(out_dir, tasks='walker-walk,cheetah-run', episodes=2, policy='random', model=None,
            seed=1, device='cpu', precision='fp32', max_steps=None, chunk_file=None)
        -> {'chunk_file', 'store', 'segment', 'returns': {task: [return per episode]}}
    The chunk file is a TensorDict, batch [N, T+1] (T = max_steps or 500), keys obs (N, T+1, O),
    action (N, T+1, A), reward (N, T+1), task int32 (N, T+1), row 0 action/reward = NaN
    (as newer official code writes); readable by read_chunk / convert_chunks.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checkpoint import atomic_torch_save, file_sha256
from ..choices import CollectPolicy, check_choice, options
from ..device import resolve_device
from ..files import OutputLock, check_output_dir, check_output_path, removed_if_left_empty
from ..evaluate import set_seed
from ..planner import BatchedPlanner, PlannerConfig
from ..rollout import Step, action_dims, lockstep, open_envs, reset_all
from ..typed import PATH_TYPES, check_argument
from ..tasks import DMC_EPISODE_LENGTH, get_task_set
from .chunks import append_episodes
from .store import DataError, new_manifest, read_manifest

POLICIES = options(CollectPolicy)  # the choices as a tuple (declared once in tdmpc_lib.choices)


@dataclasses.dataclass(frozen=True)
class Takeover:
    """Student-then-teacher episodes: `student` (a WorldModel) plans the first steps[k] agent steps of
    episode k, then the teacher takes over (see rollout)."""
    student: object
    steps: tuple[int, ...]


def _default_chunk_file(out: Path) -> Path:
    folder = out / "chunks"
    k = 0
    while (folder / f"chunk_{k}.pt").exists():
        k += 1
    return folder / f"chunk_{k}.pt"


def rollout(tasks: list[str], episodes: int, policy: str, model=None, seed: int = 1, device="cpu",
            precision: str = "fp32", max_steps: int | None = None, explore: bool = False,
            task_set: str = "mt30", progress: bool = True, action_noise: float = 0.0,
            planner: PlannerConfig | None = None, env_workers: int = 0, takeover: Takeover | None = None
            ) -> dict[str, np.ndarray]:
    """Run len(tasks) * episodes episodes in lockstep; returns chunk-shaped numpy arrays
    obs (N, T+1, O), action (N, T+1, A), reward (N, T+1), task (N, T+1) int32, N ordered
    task-major (all episodes of tasks[0] first). env_workers > 0 steps the environments in
    that many worker processes (tdmpc_lib.rollout.EnvWorkers; identical arrays).

    takeover: student-then-teacher episodes (DAgger's data, Ross et al. 2011): in episode k the
    student plans (MPPI, eval mode) for its first takeover.steps[k] agent steps, then `policy`
    with `model` (the teacher) acts from the state the student reached, its warm start reset at
    the switch; `episodes` must equal len(takeover.steps)."""
    from ..envs import make_env  # dm_control is imported only when environments are needed

    ts = get_task_set(task_set)
    steps = DMC_EPISODE_LENGTH if max_steps is None else int(max_steps)
    if not (np.isfinite(action_noise) and action_noise >= 0):
        raise ValueError(f"action_noise must be a finite number >= 0, got {action_noise}")
    if not 1 <= steps <= DMC_EPISODE_LENGTH:
        raise ValueError(f"max_steps must lie in [1, {DMC_EPISODE_LENGTH}], got {max_steps}")
    if takeover is not None and (policy == "random" or len(takeover.steps) != episodes):
        raise ValueError(f"a takeover needs a teacher policy ('plan' or 'prior', not {policy!r}) and one episode "
                         f"per takeover step ({len(takeover.steps)}), not {episodes}")
    if takeover is not None and not all(0 <= k <= steps for k in takeover.steps):
        raise ValueError(f"takeover steps {takeover.steps} must lie in [0, {steps}] (the episode's agent steps)")
    pairs = [(t, k) for t in tasks for k in range(episodes)]
    n, O, A = len(pairs), ts.obs_dim, ts.action_dim
    obs = np.zeros((n, steps + 1, O), np.float32)
    action = np.zeros((n, steps + 1, A), np.float32)
    reward = np.zeros((n, steps + 1), np.float32)
    task = np.repeat(np.array([ts.index(t) for t, _ in pairs], np.int32)[:, None], steps + 1, axis=1)
    action[:, 0], reward[:, 0] = np.nan, np.nan  # row 0: dummy action/reward
    # Built in this process or in workers (picklable constructors, the same seeds either way).
    with open_envs([functools.partial(make_env, t, seed, episode=k) for t, k in pairs], env_workers) as envs:
        dims = action_dims(envs)
        obs[:, 0] = reset_all(envs, ts.obs_dim)
        # random actions: one generator per episode, so an episode does not depend on the others
        rngs = [np.random.Generator(np.random.PCG64([seed, ts.index(t), k])) for t, k in pairs]
        agent = None
        if policy != "random":
            dev = resolve_device(device)
            model = model.to(dev).eval()
            set_seed(seed)
            agent = BatchedPlanner(model, dataclasses.replace(planner or PlannerConfig(), mpc=policy == "plan"),
                                   eval_mode=not explore, precision=precision)
            task_ids = torch.from_numpy(task[:, 0].astype(np.int64)).to(dev)
        if takeover is not None:
            student = BatchedPlanner(takeover.student.to(dev).eval(), dataclasses.replace(
                planner or PlannerConfig(), mpc=True), eval_mode=True, precision=precision)
            switch = torch.tensor([takeover.steps[k] for _, k in pairs], device=dev)

        def act(o: np.ndarray, t: int) -> np.ndarray:
            """(n, A) actions, clipped to [-1, 1] and zero beyond each task's action dims (as stored)."""
            if agent is None:
                raw = np.stack([r.uniform(-1.0, 1.0, size=A) for r in rngs]).astype(np.float32)
            else:
                t0 = torch.full((n,), t == 0, device=task_ids.device)
                if takeover is None:
                    raw = agent.act(torch.from_numpy(o), task_ids, t0).float().cpu().numpy()
                else:  # each planner only while one of its episodes is still to act
                    own = (t < switch).cpu().numpy()
                    raw = np.zeros((n, A), np.float32)
                    if own.any():
                        raw[own] = student.act(torch.from_numpy(o), task_ids, t0).float().cpu().numpy()[own]
                    if not own.all():
                        raw[~own] = agent.act(torch.from_numpy(o), task_ids, t0 | (t == switch)
                                              ).float().cpu().numpy()[~own]
                if action_noise > 0:
                    raw = raw + action_noise * np.stack([r.standard_normal(A) for r in rngs]).astype(np.float32)
            out = np.zeros((n, A), np.float32)
            for i, d in enumerate(dims):
                out[i, :d] = np.clip(raw[i, :d], -1.0, 1.0)
            return out

        bar = tqdm(total=steps, desc=f"collect ({policy})", unit="step", disable=not progress, file=sys.stderr)

        def record(step: Step) -> None:
            obs[:, step.t + 1], action[:, step.t + 1], reward[:, step.t + 1] = step.obs, step.actions, step.rewards
            bar.update(1)

        lockstep(envs, act, obs[:, 0].copy(), steps=steps, on_step=record)
        bar.close()
    return {"obs": obs, "action": action, "reward": reward, "task": task}


def save_chunk(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> Path:
    """Write chunk-shaped arrays as a public-format chunk: a TensorDict, batch [N, T+1]."""
    try:
        from tensordict import TensorDict
    except ImportError:
        raise DataError("writing chunk files needs the `tensordict` package: pip install tensordict") from None
    n, length = arrays["obs"].shape[:2]
    td = TensorDict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
                    batch_size=[n, length])
    atomic_torch_save(td, path)
    return Path(path)


def collect(out: str | os.PathLike, tasks="walker-walk", episodes: int = 1, policy: str = "random",
            model=None, seed: int = 1, device="cpu", precision: str = "fp32", max_steps: int | None = None,
            chunk_file: str | os.PathLike | None = None, explore: bool = False, progress: bool = True,
            action_noise: float = 0.0, planner: PlannerConfig | None = None, env_workers: int = 0,
            takeover: Takeover | None = None) -> dict:
    """Roll out `policy` and write the episodes as a chunk file and a new store segment
    (env_workers, takeover: see rollout)."""
    check_argument("collect", "out", out, PATH_TYPES, "the store folder's path")
    check_argument("collect", "episodes", episodes, int, "a whole number of episodes per task")
    check_choice("policy", policy, CollectPolicy)
    if policy != "random" and model is None:
        raise ValueError(f"policy {policy!r} needs a checkpoint (model); only 'random' runs without one")
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    task_set = "mt30"
    if model is not None:
        if not model.cfg.multitask:
            raise ValueError("collect needs a multi-task (MT30/MT80) checkpoint: task ids index its task set")
        task_set = model.cfg.task_set
    names = get_task_set("mt30").resolve(tasks)  # environments exist for the MT30 tasks only
    out = check_output_dir(out)  # before the rollout, not after it
    if chunk_file is not None:
        check_output_path(chunk_file)
    with OutputLock(out, "store"):  # held from before the rollout: a second writer fails at once
        return _collect_locked(out, names, episodes, policy, model, seed, device, precision, max_steps, chunk_file,
                               explore, progress, action_noise, planner, env_workers, task_set, takeover)


def _collect_locked(out: Path, names, episodes, policy, model, seed, device, precision, max_steps, chunk_file,
                    explore, progress, action_noise, planner, env_workers, task_set, takeover) -> dict:
    arrays = rollout(names, episodes, policy, model, seed, device, precision, max_steps, explore,
                     task_set, progress, action_noise, planner, env_workers, takeover)
    chunk = Path(chunk_file) if chunk_file else _default_chunk_file(out)
    with removed_if_left_empty(out, chunk.parent):
        save_chunk(arrays, chunk)
        out.mkdir(parents=True, exist_ok=True)
        try:
            return _add_collected(out, chunk, arrays, names, episodes, policy, model, seed, precision, explore,
                                  action_noise, planner, task_set, takeover)
        except OSError:  # a full disk: the default chunk goes too, the output is left as it was
            if chunk_file is None:
                chunk.unlink(missing_ok=True)
            raise


def _checkpoint_path(model) -> str | None:
    return (getattr(model, "checkpoint_info", None) or {}).get("path")


def _add_collected(out: Path, chunk: Path, arrays, names, episodes, policy, model, seed, precision, explore,
                   action_noise, planner, task_set, takeover=None) -> dict:
    length = arrays["obs"].shape[1]
    manifest = read_manifest(out)
    if manifest is None:
        manifest = new_manifest(task_set, length)  # written when the segment commits
    elif manifest["task_set"] != task_set or manifest["episode_length"] != length:
        raise DataError(f"{out} holds {manifest['task_set']} episodes of {manifest['episode_length']} rows; "
                        f"cannot add {task_set} episodes of {length} rows (chunk kept at {chunk})")
    source = {"source": chunk.name, "source_sha256": file_sha256(chunk), "source_bytes": chunk.stat().st_size,
              "collected": {"policy": policy, "seed": seed, "tasks": names, "episodes": episodes,
                            "explore": explore, "action_noise": action_noise, "precision": precision,
                            "planner": dataclasses.asdict(planner) if planner else None,
                            "checkpoint": _checkpoint_path(model)}}
    if takeover is not None:
        source["collected"]["takeover"] = {"student": _checkpoint_path(takeover.student),
                                           "steps": list(takeover.steps)}
    seg = append_episodes(out, manifest, arrays, arrays["obs"].shape[0], source, progress=False)
    rets = arrays["reward"][:, 1:].sum(axis=1).reshape(len(names), episodes)  # task-major order
    returns = {t: [round(float(r), 4) for r in rets[i]] for i, t in enumerate(names)}
    return {"chunk_file": str(chunk), "store": str(out), "segment": seg["name"], "returns": returns}
