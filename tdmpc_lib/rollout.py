"""The one lockstep rollout loop: E environments step together, one batched `act` per agent
step for all of them. The evaluator, data collection and the rollout viewer all run on it.

    obs = reset_all(envs, obs_dim)                      # (E, O), each observation zero-padded
    returns = lockstep(envs, act, obs, steps=None, on_step=None)

`act(obs (E, O), t) -> actions (E, A)` is called once per agent step with the padded
observations; environment i receives `actions[i, :action_dim_i]`. An environment that reports
done stops stepping (its row keeps its last observation); the loop ends when all are done or
after `steps` agent steps. `on_step(step)` sees every step as a `Step`: the observations after
it, the actions, the rewards, which environments stepped and which are done.

`envs` is a list of environments stepped one after the other in this process, or an
`EnvWorkers`: the same environments built and stepped in worker processes, each owning a
contiguous slice of them. Both give bit-identical observations, rewards and returns (same
constructors, same seeds, the same float32 actions, pickled exactly); workers pay off when the
physics of hundreds of environments would otherwise leave an accelerator waiting.

    with open_envs([partial(make_env, task, seed, episode=k) ...], workers=8) as envs:
        returns = lockstep(envs, act, reset_all(envs, obs_dim))
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

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


# ---------------------------------------------------------------------------- stepping
def _reset_each(envs: Sequence) -> list[np.ndarray]:
    return [env.reset() for env in envs]


def _step_each(envs: Sequence, actions: np.ndarray, active: np.ndarray) -> list[tuple | None]:
    """(obs, reward, done) of every active environment, None for the others. actions (n, A):
    each environment takes its row sliced to its own action_dim."""
    out: list[tuple | None] = []
    for i, env in enumerate(envs):
        if not active[i]:
            out.append(None)
            continue
        o, r, d, _ = env.step(actions[i, :env.action_dim])
        out.append((o, r, d))
    return out


def _die_with_the_parent(parent_pid: int) -> None:
    """The kernel (Linux) sends this worker SIGKILL when its parent dies, even by SIGKILL,
    so no worker outlives an evaluation (tdmpc_lib.study.runner does the same for its workers)."""
    if sys.platform.startswith("linux"):
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before the call: go now
        os._exit(1)


def _worker(conn, parent_pid: int) -> None:
    """Worker process: receive the environment constructors, build them, then answer
    ('reset',) and ('step', actions (n, A), active (n,)) until ('close',) or the pipe closes."""
    _die_with_the_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the parent handles it and closes the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Workers never render (the viewer renders in-process), so no OpenGL library is loaded:
    # dm_control reads MUJOCO_GL when first imported, which happens below when the
    # constructors are unpickled. Physics does not depend on the renderer.
    os.environ["MUJOCO_GL"] = "disable"
    try:
        env_fns = conn.recv()
        envs = [fn() for fn in env_fns]
        conn.send(("ok", [env.action_dim for env in envs]))
        while True:
            try:
                msg = conn.recv()
            except EOFError:  # the parent went away
                return
            if msg[0] == "reset":
                conn.send(("ok", _reset_each(envs)))
            elif msg[0] == "step":
                conn.send(("ok", _step_each(envs, msg[1], msg[2])))
            else:
                return
    except KeyboardInterrupt:
        return
    except BaseException as e:  # report to the parent, which raises it
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))


class EnvWorkers:
    """`len(env_fns)` environments built and stepped in `workers` child processes (at most one
    per environment), worker w owning a contiguous slice of them.

    env_fns: picklable zero-argument constructors (e.g. functools.partial(make_env, task, seed,
    episode=k)); each is called in its worker, so an environment is built exactly as in-process.
    Workers are started with 'spawn' (safe beside CUDA and torch's threads), die with this
    process (PR_SET_PDEATHSIG, daemon) and are stopped by close(), which a `with` block and
    every error here call. Attributes: action_dims (list of E ints)."""

    def __init__(self, env_fns: Sequence[Callable], workers: int, start_method: str = "spawn"):
        if workers < 1:
            raise ValueError(f"EnvWorkers needs at least 1 worker, got {workers} (0 = in-process: use a list)")
        if not env_fns:
            raise ValueError("EnvWorkers needs at least one environment")
        n = len(env_fns)
        workers = min(int(workers), n)
        bounds = [n * w // workers for w in range(workers + 1)]
        self._slices = [(bounds[w], bounds[w + 1]) for w in range(workers)]
        self._procs: list = []
        self._conns: list = []
        self._closed = False
        ctx = mp.get_context(start_method)
        try:
            for w, (lo, hi) in enumerate(self._slices):
                parent_end, child_end = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child_end, os.getpid()), daemon=True,
                                   name=f"env-worker-{w}")
                proc.start()
                child_end.close()
                self._procs.append(proc)
                self._conns.append(parent_end)
                parent_end.send(list(env_fns[lo:hi]))
            self.action_dims: list[int] = [d for w in range(workers) for d in self._recv(w)]
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return self._slices[-1][1]

    @property
    def workers(self) -> int:
        return len(self._procs)

    def _recv(self, w: int):
        try:
            msg = self._conns[w].recv()
        except (EOFError, OSError):
            self._procs[w].join(timeout=1)
            raise RuntimeError(f"environment worker {w} died (exit code {self._procs[w].exitcode})") from None
        if msg[0] == "error":
            err = RuntimeError(f"environment worker {w} failed: {msg[1]}")
            err.add_note(f"worker traceback:\n{msg[2]}")
            raise err
        return msg[1]

    def _all(self, messages: list[tuple]) -> list:
        """Send one message to every worker, then collect the answers in order (the workers
        run meanwhile); any failure closes all workers."""
        if self._closed:
            raise RuntimeError("these environment workers are closed")
        try:
            for conn, msg in zip(self._conns, messages):
                conn.send(msg)
            return [item for w in range(self.workers) for item in self._recv(w)]
        except BaseException:
            self.close()
            raise

    def reset(self) -> list[np.ndarray]:
        """First observation (obs_dim_i,) of every environment."""
        return self._all([("reset",)] * self.workers)

    def step(self, actions: np.ndarray, active: np.ndarray) -> list[tuple | None]:
        """actions (E, A), active (E,) bool -> per environment (obs, reward, done) or None."""
        return self._all([("step", actions[lo:hi], active[lo:hi]) for lo, hi in self._slices])

    def close(self) -> None:
        """Stop every worker (asked first, killed if it does not exit); idempotent."""
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(("close",))
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()

    def __enter__(self) -> "EnvWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


@contextlib.contextmanager
def open_envs(env_fns: Sequence[Callable], workers: int = 0) -> Iterator[list | EnvWorkers]:
    """The environments of `env_fns` for `lockstep`: built here as a list (workers = 0) or in
    `workers` processes (an EnvWorkers, closed when the block exits, also on errors)."""
    if workers < 0:
        raise ValueError(f"env_workers must be >= 0 (0 = step the environments in this process), got {workers}")
    if workers == 0:
        yield [fn() for fn in env_fns]
        return
    with EnvWorkers(env_fns, workers) as envs:
        yield envs


def action_dims(envs: Sequence | EnvWorkers) -> list[int]:
    """Each environment's own action_dim (the padded action rows are sliced to it)."""
    return list(envs.action_dims) if isinstance(envs, EnvWorkers) else [env.action_dim for env in envs]


# ---------------------------------------------------------------------------- the loop
def reset_all(envs: Sequence | EnvWorkers, obs_dim: int) -> np.ndarray:
    """Reset every environment; (E, obs_dim) float32 first observations, zero-padded."""
    obs = np.zeros((len(envs), obs_dim), dtype=np.float32)
    first = envs.reset() if isinstance(envs, EnvWorkers) else _reset_each(envs)
    for i, o in enumerate(first):
        _put(obs, i, o)
    return obs


def lockstep(envs: Sequence | EnvWorkers, act: Callable[[np.ndarray, int], np.ndarray], obs: np.ndarray,
             steps: int | None = None, on_step: Callable[[Step], None] | None = None) -> np.ndarray:
    """Step every environment until done (or for `steps` agent steps); returns (E,) episode returns.
    `obs` (E, O) from `reset_all` is updated in place."""
    step_all = envs.step if isinstance(envs, EnvWorkers) else lambda a, m: _step_each(envs, a, m)
    done = np.zeros(len(envs), dtype=bool)
    returns = np.zeros(len(envs), dtype=np.float64)
    t = 0
    while not done.all() and (steps is None or t < steps):
        actions = act(obs, t)
        active = ~done
        rewards = np.zeros(len(envs), dtype=np.float64)
        for i, res in enumerate(step_all(actions, active)):
            if res is None:
                continue
            o, r, d = res
            _put(obs, i, o)
            rewards[i] = r
            returns[i] += r
            done[i] = d
        if on_step is not None:
            on_step(Step(t, obs, actions, rewards, active, done.copy()))
        t += 1
    return returns
