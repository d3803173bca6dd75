"""What an RL researcher checks first on a learned (student) world model, on held-out episodes,
without planning: is its value head calibrated, does it look at the action, is its policy prior
saturated, and how well does its reward head predict.

For every held-out episode of an EpisodeStore and each of its first `max_step` agent steps t
(row s+t holds obs_t; row s+t+1 holds the action a_t taken at obs_t and the reward r_t received
for it, as in TD-MPC2's replay buffer):

    Q(z_t, a_t)      z_t = encode(obs_t), mean over ALL ensemble members of the decoded Q
    G_t              sum_{k>=0} gamma^k r_{t+k}: the discounted Monte-Carlo return of the rest
                     of the stored episode, gamma = the task's discount
    Q(z_t, a~U)      Q at `num_actions` uniform random actions in [-1, 1] (active dims only)
    tanh mu, log_std the policy prior's mean and log std, without drawing an action

and reduces them per task (`student_diagnostics`):

    q_mean, mc_return_mean        mean Q and mean G over the task's states
    q_over_return, q_rel_error    mean Q / mean G and |mean Q - mean G| / |mean G|
    q_action_std, q_action_range  mean over states of the std and of (max - min) of Q across
                                  the random actions (0: Q ignores the action)
    q_rank_vs_teacher             with a teacher: mean over states of the Spearman correlation of
                                  the student's and the teacher's Q across the same random actions
                                  (1: the student ranks MPPI's candidate actions as the teacher does)
    g_rank_vs_teacher             with a teacher model: the same for what MPPI actually compares,
                                  the planning value of whole action sequences (`sequence_values`:
                                  rewards along the model's own latent rollout, then Q), over
                                  `num_sequences` random sequences of the planner's horizon. It
                                  tests dynamics, reward and Q together: a student can rank single
                                  actions like the teacher and still plan differently
    prior_saturated               fraction of active action dims with |tanh mu| > 0.95
    prior_log_std                 mean log_std over active action dims
    plan_adv_teacher,             with a teacher and a planner: how the teacher values the action
    prior_adv_teacher             the student's MPPI takes at the state (its first action, planned
                                  afresh) and its prior's mean action: the teacher's advantage
                                  (Q_T(s, a) - mean_k Q_T(s, a_k)) / std_k Q_T(s, a_k) over the
                                  state's random actions a_k (0: as good as a random action in the
                                  teacher's eyes). A prior near the teacher's and a plan near 0
                                  say the student's planner discards what its prior learned.
    states                        number of (episode, step) states

On the model's own episodes (`own_episode_diagnostics` rolls it out; `own_episode_values` reads
a store `data.collect` filled with its planner): where a planner's errors compound, the states
a student drifts into and no dataset holds. Over the same first `max_step` steps:

    own_q_over_return             mean Q(z_t, a_t) / mean G_t of its own episodes: above 1, the
                                  student thinks better of where it is going than it turns out
    own_q_over_teacher            with a teacher: mean Q(z_t, a_t) / mean Q_T(s_t, a_t) at the
                                  same states and actions (the teacher's view of the same choices)
    own_reward_bias               mean over the steps of (predicted reward - true reward r_t) at
                                  (z_t, a_t), per agent step: above 0, it believes it earns reward
                                  it does not; with a planner, the planner has steered to where
                                  the reward head is wrong (model exploitation)
    own_reward_bias_teacher       with a teacher: the same for the teacher's reward head at the
                                  same states and actions (near 0: the states are predictable)

    diag = student_diagnostics(model, open_store("data/heldout"))
    diag["per_task"]["walker-run"]["q_over_return"], diag["mean"]["prior_saturated"]
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .planner import BatchedPlanner, PlannerConfig
from .reward_error import reward_error
from .tasks import get_task_set
from .train.distill import prior_moments
from .world_model import WorldModel

SATURATED = 0.95  # |tanh mu| above this: the prior's mean sits at the action bound
KEYS = ("q_mean", "mc_return_mean", "q_over_return", "q_rel_error", "q_action_std", "q_action_range",
        "q_rank_vs_teacher", "g_rank_vs_teacher", "prior_saturated", "prior_log_std", "plan_adv_teacher",
        "prior_adv_teacher")
OWN_KEYS = ("own_q_over_return", "own_q_over_teacher", "own_reward_bias", "own_reward_bias_teacher")


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks along dim 0 (ties broken by order; Q values are continuous)."""
    return x.argsort(0).argsort(0).double()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman correlation along dim 0 of a, b (K, n) -> (n,); NaN where either is constant."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(0), rb - rb.mean(0)
    denom = (ra.pow(2).sum(0) * rb.pow(2).sum(0)).sqrt()
    same = (a.amax(0) == a.amin(0)) | (b.amax(0) == b.amin(0))
    return torch.where(same, torch.nan, (ra * rb).sum(0) / denom.clamp(min=1e-12))


@torch.no_grad()
def heldout_states(model: WorldModel, store, max_step: int = 100) -> dict[str, np.ndarray]:
    """The (episode, step) states the diagnostics look at and their Monte-Carlo returns.

    Returns N-row arrays: 'row' (N,) int64 the global row of obs_t (a_t, r_t are in row + 1),
    'task' (N,) int64, 'episode' (N,) int64, 'step' (N,) int64 (t < max_step), 'reward' (N,)
    float64 r_t, 'mc_return' (N,) float64 G_t.

    The stored episodes end where the data collection stopped (a time limit, not a terminal
    state), so G_t is truncated: it omits gamma^(T-t) V(s_T) after the last stored step T-1,
    and a Q that is right about the infinite-horizon value reads as an overestimate, the more
    so the closer t is to T. With max_step well below T and gamma^(T-max_step) small (0.99 and
    500-step episodes: at most 0.018) the bias is small; keep it in mind for short episodes.
    """
    starts = np.asarray(store.episode_starts, np.int64)
    steps = np.diff(starts) - 1  # agent steps per episode (E,): its first row has no action
    episodes = np.flatnonzero(steps > 0)
    steps = steps[episodes]
    first = starts[episodes]
    (task,) = store.gather(first, ("task",))
    task = np.asarray(task, np.int64)
    # Per-episode discount: multitask models hold one per task, single-task models one in all.
    gamma = model.discount(torch.as_tensor(task), "cpu").double().reshape(-1).numpy()
    gamma = np.broadcast_to(gamma, task.shape)

    # All rewards of these episodes in one (E, T_max) matrix, zero after each episode's end, so
    # the backward recursion G_t = r_t + gamma G_{t+1} runs over all episodes at once (T_max
    # vectorised steps, not E x T Python ones). Held-out stores are small: E x T_max float64.
    T = int(steps.max()) if len(steps) else 0
    col = np.arange(T)
    valid = col[None, :] < steps[:, None]
    rewards = np.zeros((len(steps), T))
    rewards[valid] = store.gather((first[:, None] + 1 + col[None, :])[valid], ("reward",))[0]
    returns = np.zeros_like(rewards)
    g = np.zeros(len(steps))
    for t in range(T - 1, -1, -1):
        g = rewards[:, t] + gamma * g  # after an episode's end r = 0 and g stays 0
        returns[:, t] = g

    keep = valid & (col[None, :] < max_step)
    e_idx, t_idx = np.nonzero(keep)
    return {"row": first[e_idx] + t_idx, "task": task[e_idx], "episode": episodes[e_idx], "step": t_idx,
            "reward": rewards[e_idx, t_idx], "mc_return": returns[e_idx, t_idx]}


def _q_mean(model: WorldModel, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
    """The ensemble mean of the decoded Q: z (..., L), a (..., A) -> (...)."""
    return model.decode(model.Q(z, a, task, return_type="all")).mean(0).squeeze(-1)


@torch.no_grad()
def sequence_values(model: WorldModel, obs: torch.Tensor, task: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """The planning value MPPI ranks its candidates by (TD-MPC2's planner, `_estimate_value`):
    G = sum_{t<H} gamma^t r(z_t, a_t) + gamma^H Q(z_H, pi(z_H)), z_0 = encode(obs),
    z_{t+1} = d(z_t, a_t), with the decoded ensemble-mean Q and the prior's mean action at z_H
    (deterministic; the planner averages two random Q members and samples pi).
    obs (n, O), task (n,), actions (H, K, n, A) -> G (K, n) float64."""
    dtype = next(model.parameters()).dtype
    H, K, n, _ = actions.shape
    tasks = task.expand(K, n)
    z = model.encode(obs.to(dtype), task).expand(K, n, -1)
    gamma = model.discount(tasks, obs.device).squeeze(-1).double()  # (K, n), or () single-task
    G = torch.zeros(K, n, dtype=torch.float64, device=obs.device)
    discount = torch.ones_like(G)
    for t in range(H):
        a = actions[t].to(dtype)
        G = G + discount * model.decode(model.reward(z, a, tasks)).squeeze(-1).double()
        z = model.next(z, a, tasks)
        discount = discount * gamma
    mean, _ = prior_moments(model, model._pi(model.task_emb(z, tasks)), tasks)
    return G + discount * _q_mean(model, z, mean.to(dtype), tasks).double()


@torch.no_grad()
def _sequence_ranks(model: WorldModel, teacher: WorldModel, store, states: dict, horizon: int, num_sequences: int,
                    seed: int, batch_size: int, device) -> np.ndarray:
    """(N,) the Spearman correlation of `model`'s and `teacher`'s planning values over the same
    `num_sequences` uniform random action sequences (inactive action dims 0) at each state."""
    gen = torch.Generator().manual_seed(seed + 1)  # on the CPU: the same draws on any device
    per_call = max(1, batch_size // (num_sequences * horizon))  # latent rows per forward: about batch_size
    out = []
    for lo in range(0, len(states["row"]), per_call):
        obs, task = store.gather(states["row"][lo:lo + per_call], ("obs", "task"))
        obs = torch.as_tensor(obs, device=device, dtype=torch.float32)
        task = torch.as_tensor(task, dtype=torch.long, device=device)
        actions = (torch.rand((horizon, num_sequences, len(task), model.cfg.action_dim), generator=gen) * 2 - 1)
        actions = actions.to(device)
        mask = model.action_mask(task, obs)  # (n, A), None single-task
        if mask is not None:
            actions = actions * mask
        out.append(spearman(sequence_values(model, obs, task, actions), sequence_values(teacher, obs, task, actions)))
    return torch.cat(out).cpu().numpy() if out else np.zeros(0)


@torch.no_grad()
def _decisions(model: WorldModel, teacher: WorldModel, store, states: dict, planner: PlannerConfig,
               teacher_q_rand: np.ndarray, seed: int, batch_size: int, device) -> dict[str, np.ndarray]:
    """'plan_adv' and 'prior_adv' (N,): the teacher's advantage (see the module docstring) of the
    first action `model`'s MPPI takes at each state (planned afresh, eval mode) and of its prior's
    mean action; teacher_q_rand (num_actions, N) the teacher's Q at the states' random actions."""
    plan, prior = BatchedPlanner(model, planner), BatchedPlanner(model, dataclasses.replace(planner, mpc=False))
    per_call = max(1, batch_size // planner.num_samples)  # MPPI rows per forward: about batch_size
    dtype = next(teacher.parameters()).dtype
    out = {"plan_adv": [], "prior_adv": []}
    with torch.random.fork_rng(devices=[]):  # MPPI draws from the global RNG: seeded here, restored after
        torch.manual_seed(seed)
        for lo in range(0, len(states["row"]), per_call):
            obs, task = store.gather(states["row"][lo:lo + per_call], ("obs", "task"))
            obs = torch.as_tensor(obs, device=device, dtype=torch.float32)
            task = torch.as_tensor(task, dtype=torch.long, device=device)
            t0 = torch.ones(len(task), dtype=torch.bool, device=device)
            z = teacher.encode(obs.to(dtype), task)
            q_rand = torch.as_tensor(teacher_q_rand[:, lo:lo + per_call], device=device)
            for key, planner_ in (("plan_adv", plan), ("prior_adv", prior)):
                q = _q_mean(teacher, z, planner_.act(obs, task, t0).to(dtype), task).double()
                out[key].append((q - q_rand.mean(0)) / q_rand.std(0, correction=0).clamp(min=1e-6))
    return {k: torch.cat(v).cpu().numpy() if v else np.zeros(0) for k, v in out.items()}


@torch.no_grad()
def _per_state(model: WorldModel, store, states: dict, num_actions: int, seed: int, batch_size: int,
               device) -> dict[str, np.ndarray]:
    """Q, action sensitivity and prior moments at each state: arrays of shape (N,), and 'q_rand'
    (num_actions, N), the Q at each state's random actions (the same draws for any model)."""
    dtype = next(model.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same draws on any device
    A = model.cfg.action_dim
    # Q at (num_actions x chunk) state-action pairs per forward pass: about batch_size rows.
    chunk = max(1, batch_size // max(num_actions, 1))
    out = {k: [] for k in ("q", "q_std", "q_range", "q_rand", "saturated", "active", "log_std")}

    rows_all = states["row"]
    for lo in range(0, len(rows_all), batch_size):
        rows = rows_all[lo:lo + batch_size]
        obs, task = store.gather(rows, ("obs", "task"))
        (action,) = store.gather(rows + 1, ("action",))
        task = torch.as_tensor(task, dtype=torch.long, device=device)
        z = model.encode(torch.as_tensor(obs, device=device, dtype=dtype), task)  # (B, L)
        mask = model.action_mask(task, z)  # (B, A), None single-task
        if mask is None:
            mask = torch.ones(len(rows), A, device=device, dtype=dtype)
        # Stored actions are zero-padded in inactive dims already; masking makes that certain.
        a = torch.as_tensor(action, device=device, dtype=dtype) * mask
        out["q"].append(_q_mean(model, z, a, task))

        mean, log_std = prior_moments(model, model._pi(model.task_emb(z, task)), task)  # (B, A) each
        active = mask > 0
        out["saturated"].append(((mean.abs() > SATURATED) & active).sum(-1))
        out["active"].append(active.sum(-1))
        out["log_std"].append((log_std.float() * active).sum(-1))

        for c in range(0, len(rows), chunk):
            zc, tc, mc = z[c:c + chunk], task[c:c + chunk], mask[c:c + chunk]
            n = len(zc)
            rand = torch.rand((num_actions, n, A), generator=gen).to(device=device, dtype=dtype) * 2 - 1
            q = _q_mean(model, zc.expand(num_actions, n, -1), rand * mc, tc.expand(num_actions, n))  # (num_actions, n)
            out["q_std"].append(q.std(0, correction=0))
            out["q_range"].append(q.amax(0) - q.amin(0))
            out["q_rand"].append(q.t())  # (n, num_actions): concatenated over chunks, then transposed
    res = {k: torch.cat(v).double().cpu().numpy() if v else np.zeros(0) for k, v in out.items()}
    res["q_rand"] = res["q_rand"].T if res["q_rand"].size else np.zeros((num_actions, 0))
    return res


def action_values(model: WorldModel, store, *, max_step: int = 100, num_actions: int = 128, seed: int = 0,
                  batch_size: int = 4096, device="cpu") -> np.ndarray:
    """(num_actions, N) the ensemble-mean decoded Q of `model` at the random actions of every
    held-out state, the draws `student_diagnostics` makes with the same arguments: computed once
    for a teacher, it serves every student's `q_rank_vs_teacher` (`teacher_action_values`)."""
    was_training = model.training
    model = model.to(device).eval()
    try:
        states = heldout_states(model, store, max_step)
        return _per_state(model, store, states, num_actions, seed, batch_size, device)["q_rand"]
    finally:
        model.train(was_training)


def _reduce(p: dict, sel: np.ndarray) -> dict[str, float]:
    """Per-task numbers from the per-state arrays restricted to `sel` (N,) bool."""
    q, g = float(np.mean(p["q"][sel])), float(np.mean(p["mc_return"][sel]))
    active = float(np.sum(p["active"][sel]))
    return {"q_mean": q, "mc_return_mean": g,
            # Undefined (None) when the task's returns average to 0, e.g. sparse tasks never solved.
            "q_over_return": q / g if g != 0 else None,
            "q_rel_error": abs(q - g) / abs(g) if g != 0 else None,
            "q_action_std": float(np.mean(p["q_std"][sel])), "q_action_range": float(np.mean(p["q_range"][sel])),
            **{f"{k}_vs_teacher": (float(np.nanmean(p[k][sel])) if k in p and np.isfinite(p[k][sel]).any() else None)
               for k in ("q_rank", "g_rank")},
            **{f"{k}_teacher": float(np.mean(p[k][sel])) if k in p else None for k in ("plan_adv", "prior_adv")},
            "prior_saturated": float(np.sum(p["saturated"][sel])) / active,
            "prior_log_std": float(np.sum(p["log_std"][sel])) / active,
            "states": int(sel.sum())}


def task_means(per_task: dict[str, dict], keys) -> dict[str, float | None]:
    """{key: the unweighted mean over tasks of per_task[task][key]}, None entries (and tasks
    without the key) skipped; None when no task has a value."""
    out = {}
    for k in keys:
        vals = [v[k] for v in per_task.values() if v.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else None
    return out


def student_diagnostics(model: WorldModel, store, *, max_step: int = 100, num_actions: int = 128, seed: int = 0,
                        batch_size: int = 4096, device="cpu", teacher_predicted: np.ndarray | None = None,
                        teacher: WorldModel | None = None, teacher_action_values: np.ndarray | None = None,
                        planner: PlannerConfig | None = None, num_sequences: int = 16) -> dict:
    """Value calibration, action sensitivity and prior saturation of `model` on the episodes of
    `store` (an EpisodeStore; use one no student trained on). See the module docstring.

    The random actions come from a torch.Generator seeded with `seed` (the global RNG is
    untouched): the result is a deterministic function of (model, store, max_step, num_actions,
    seed, batch_size). `teacher_predicted` (transitions,) the teacher's reward predictions on the
    same store (`reward_error.reward_predictions`): adds 'reward_error'.

    Returns JSON-serialisable {'per_task': {task: {KEYS..., 'states'}}, 'mean': {KEYS...: the
    unweighted mean over tasks (None entries skipped), 'states': the total}, 'max_step',
    'num_actions'[, 'reward_error']}. `teacher` (a WorldModel of the same task set) or its
    `teacher_action_values` (from `action_values` with the same arguments): adds
    'q_rank_vs_teacher' (None without either). `teacher`: adds 'g_rank_vs_teacher' over
    `num_sequences` sequences of the planner's horizon. `teacher` and `planner` (the MPPI settings
    the student is evaluated with): adds 'plan_adv_teacher' and 'prior_adv_teacher' (MPPI seeded
    with `seed`; the global RNG is restored afterwards).
    """
    names = get_task_set(store.task_set).tasks
    was_training = model.training
    model = model.to(device).eval()  # no dropout: Q at inference as the planner sees it
    try:
        states = heldout_states(model, store, max_step)
        p = _per_state(model, store, states, num_actions, seed, batch_size, device)
    finally:
        model.train(was_training)
    p["mc_return"] = states["mc_return"]
    if teacher is not None and teacher_action_values is None:
        teacher_action_values = action_values(teacher, store, max_step=max_step, num_actions=num_actions, seed=seed,
                                              batch_size=batch_size, device=device)
    if teacher_action_values is not None:
        if teacher_action_values.shape != p["q_rand"].shape:
            raise ValueError(f"teacher_action_values has shape {teacher_action_values.shape}, the states' random "
                             f"actions {p['q_rand'].shape}: compute them with the same store and arguments")
        p["q_rank"] = spearman(torch.from_numpy(p["q_rand"]), torch.from_numpy(teacher_action_values)).numpy()
    if teacher is not None:
        teacher_was_training = teacher.training
        model.eval(), teacher.to(device).eval()
        try:
            horizon = (planner or PlannerConfig()).horizon
            p["g_rank"] = _sequence_ranks(model, teacher, store, states, horizon, num_sequences, seed, batch_size,
                                          device)
            if planner is not None:
                p.update(_decisions(model, teacher, store, states, planner, teacher_action_values, seed,
                                    batch_size, device))
        finally:
            model.train(was_training), teacher.train(teacher_was_training)

    per_task = {names[int(t)]: _reduce(p, states["task"] == t) for t in np.unique(states["task"])}
    mean = task_means(per_task, KEYS)
    mean["states"] = int(sum(v["states"] for v in per_task.values()))
    result = {"per_task": per_task, "mean": mean, "max_step": int(max_step), "num_actions": int(num_actions)}
    if teacher_predicted is not None:
        result["reward_error"] = reward_error(model, store, teacher_predicted, list(names), batch_size, device)
        model.train(was_training)  # reward_error leaves the model in eval mode
    return result


@torch.no_grad()
def _state_action_predictions(model: WorldModel, store, rows: np.ndarray, batch_size: int, device
                              ) -> tuple[np.ndarray, np.ndarray]:
    """(N,) the ensemble-mean decoded Q and (N,) the decoded predicted reward at (obs_t, a_t) of
    the states whose obs are `rows` (a_t in row + 1)."""
    dtype = next(model.parameters()).dtype
    q, r = [], []
    for lo in range(0, len(rows), batch_size):
        obs, task = store.gather(rows[lo:lo + batch_size], ("obs", "task"))
        (action,) = store.gather(rows[lo:lo + batch_size] + 1, ("action",))
        task = torch.as_tensor(task, dtype=torch.long, device=device)
        z = model.encode(torch.as_tensor(obs, device=device, dtype=dtype), task)
        a = torch.as_tensor(action, device=device, dtype=dtype)
        q.append(_q_mean(model, z, a, task).double())
        r.append(model.decode(model.reward(z, a, task)).squeeze(-1).double())
    if not q:
        return np.zeros(0), np.zeros(0)
    return torch.cat(q).cpu().numpy(), torch.cat(r).cpu().numpy()


def own_episode_values(model: WorldModel, store, teacher: WorldModel | None = None, *, max_step: int = 100,
                       batch_size: int = 4096, device="cpu") -> dict[str, dict[str, float | None]]:
    """{task: {'own_q_over_return', 'own_q_over_teacher', 'own_reward_bias', 'own_reward_bias_teacher'}}
    on `store`, the model's own episodes (see the module docstring; None where a task's returns
    average to 0, or without a teacher)."""
    names = get_task_set(store.task_set).tasks
    models = [m for m in (model, teacher) if m is not None]
    was_training = [m.training for m in models]
    for m in models:
        m.to(device).eval()
    try:
        states = heldout_states(model, store, max_step)
        q, r_hat = _state_action_predictions(model, store, states["row"], batch_size, device)
        q_t, r_hat_t = (_state_action_predictions(teacher, store, states["row"], batch_size, device)
                        if teacher is not None else (None, None))
    finally:
        for m, training in zip(models, was_training):
            m.train(training)
    reward = states["reward"]
    out = {}
    for t in np.unique(states["task"]):
        sel = states["task"] == t
        g, mean_q = float(np.mean(states["mc_return"][sel])), float(np.mean(q[sel]))
        mean_qt = float(np.mean(q_t[sel])) if q_t is not None else 0.0
        out[names[int(t)]] = {
            "own_q_over_return": mean_q / g if g != 0 else None,
            "own_q_over_teacher": mean_q / mean_qt if mean_qt != 0 else None,
            "own_reward_bias": float(np.mean(r_hat[sel] - reward[sel])),
            "own_reward_bias_teacher": float(np.mean(r_hat_t[sel] - reward[sel])) if r_hat_t is not None else None}
    return out


def own_episode_diagnostics(model: WorldModel, teacher: WorldModel | None, tasks: str | list[str], *,
                            episodes: int = 1, policy: str = "plan", planner: PlannerConfig | None = None,
                            seed: int = 1, precision: str = "fp32", max_steps: int | None = None,
                            max_step: int = 100, device="cpu") -> dict[str, dict[str, float | None]]:
    """`own_episode_values` on `episodes` episodes per task of `model` acting with `policy`
    ('plan': its MPPI with `planner`, or 'prior') in eval mode, cut at `max_steps` agent steps,
    collected into a temporary store. The rollout seeds the global random generators with `seed`;
    their states are restored afterwards."""
    import random
    import tempfile
    from pathlib import Path

    from .data import collect, open_store

    states = random.getstate(), np.random.get_state()
    with tempfile.TemporaryDirectory(prefix="own_episodes_") as tmp, torch.random.fork_rng(devices=[]):
        try:
            collect(Path(tmp) / "store", tasks, episodes, policy, model, seed=seed, device=device,
                    precision=precision, max_steps=max_steps, planner=planner, progress=False)
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
        store = open_store(Path(tmp) / "store")
        try:
            return own_episode_values(model, store, teacher, max_step=max_step, device=device)
        finally:
            store.close()
