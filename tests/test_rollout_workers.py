"""Environment workers (tdmpc_lib.rollout.EnvWorkers, evaluate's env_workers): the same
returns as stepping in-process, and no worker process outlives its owner."""
import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from tdmpc_lib import make_world_model, save_checkpoint
from tdmpc_lib.envs import make_env
from tdmpc_lib.evaluate import EvalConfig, evaluate, main
from tdmpc_lib.rollout import EnvWorkers, Step, lockstep, open_envs, reset_all

# a stock task, a custom task (own XML and reward) and one with a 6-dim action
TASKS = "cartpole-swingup,cup-spin,cheetah-run"


def _children() -> list[psutil.Process]:
    """Live child processes, less multiprocessing's resource tracker (one per parent, started
    with the first 'spawn' worker; it is not a worker and exits with the parent)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _fns(pairs, seed=1):
    return [functools.partial(make_env, t, seed, episode=k) for t, k in pairs]


def test_evaluate_with_workers_gives_bit_identical_returns():
    model = make_world_model("tiny", seed=0)
    cfg = EvalConfig(tasks=TASKS, episodes=2, seed=3, protocol="paper", policy="prior")
    serial = evaluate(model, cfg, progress=False)
    parallel = evaluate(model, EvalConfig(**{**cfg.__dict__, "env_workers": 2}), progress=False)
    assert parallel["tasks"] == serial["tasks"]  # every return, exactly (the JSON rounds to 1e-4)
    assert parallel["timing"]["agent_steps"] == serial["timing"]["agent_steps"] == 6 * 500
    assert not _children()


def test_lockstep_steps_are_identical_in_workers():
    """Every observation and reward of every step, unrounded, with uneven worker slices and
    environments of different action sizes."""
    pairs = [("cartpole-swingup", 0), ("cup-spin", 1), ("cheetah-run", 0), ("walker-walk", 2), ("cup-spin", 0)]
    obs_dim, A = 24, 6

    def run(envs):
        rng = np.random.Generator(np.random.PCG64(7))
        seen = []

        def act(obs, t):
            return rng.uniform(-1, 1, (len(obs), A)).astype(np.float32)

        def record(step: Step):
            seen.append((step.obs.copy(), step.rewards.copy(), step.done.copy()))

        first = reset_all(envs, obs_dim)
        returns = lockstep(envs, act, first.copy(), steps=40, on_step=record)
        return first, returns, seen

    with open_envs(_fns(pairs), 0) as envs:
        a = run(envs)
    with open_envs(_fns(pairs), 3) as envs:
        assert isinstance(envs, EnvWorkers) and envs.workers == 3 and len(envs) == 5
        assert envs.action_dims == [1, 2, 6, 6, 2]
        b = run(envs)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and len(a[2]) == len(b[2]) == 40
    for (oa, ra, da), (ob, rb, db) in zip(a[2], b[2]):
        assert np.array_equal(oa, ob) and np.array_equal(ra, rb) and np.array_equal(da, db)
    assert not _children()


def test_errors_close_the_workers():
    # an environment that cannot be built: the worker's error, in one line, in the parent
    with pytest.raises(RuntimeError, match="environment worker 1 failed: ValueError: unknown task 'walker-fly'"):
        EnvWorkers(_fns([("cartpole-balance", 0), ("walker-fly", 0)]), 2)
    assert not _children()
    # an error in the caller's policy half-way through an episode
    with pytest.raises(ZeroDivisionError):
        with open_envs(_fns([("cartpole-balance", 0), ("reacher-easy", 0)]), 2) as envs:
            lockstep(envs, lambda obs, t: np.zeros((2, 6), np.float32) if t < 3 else 1 / 0,
                     reset_all(envs, 24))
    assert not _children()
    envs.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        envs.reset()
    with pytest.raises(ValueError, match="env_workers must be >= 0"):
        EvalConfig(env_workers=-1).validate()


def test_workers_die_with_a_killed_parent(tmp_path):
    code = ("import functools, os, time\n"
            "from tdmpc_lib.envs import make_env\n"
            "from tdmpc_lib.rollout import EnvWorkers\n"
            "w = EnvWorkers([functools.partial(make_env, 'cartpole-balance', 1)] * 2, 2)\n"
            "print(' '.join(str(p.pid) for p in w._procs), flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel must end the workers
    proc.wait()
    deadline = time.time() + 30  # a wait, not a timing assertion: the kernel acts at once
    alive = pids
    while alive and time.time() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    assert not alive, f"env workers {alive} outlived their parent"


def test_cli_env_workers(tmp_path):
    save_checkpoint(make_world_model("tiny", seed=0), tmp_path / "tiny.pt")
    outs = []
    for workers in ("0", "2"):
        out = tmp_path / f"r{workers}.json"
        main(["--checkpoint", str(tmp_path / "tiny.pt"), "--tasks", "pendulum-swingup,cup-catch", "--episodes", "1",
              "--policy", "prior", "--env-workers", workers, "--output", str(out)])
        outs.append(json.loads(out.read_text()))
    assert outs[0]["tasks"] == outs[1]["tasks"] and outs[1]["eval_config"]["env_workers"] == 2
    with pytest.raises(SystemExit) as e:
        main(["--checkpoint", str(tmp_path / "tiny.pt"), "--env-workers", "-1"])
    assert e.value.code == 2
    assert not _children()


def test_collect_with_workers_gives_the_same_arrays():
    from tdmpc_lib.data.collect import rollout

    a, b = (rollout(["cup-spin", "walker-walk"], 2, "random", seed=4, max_steps=30, progress=False, env_workers=w)
            for w in (0, 2))
    for key in ("obs", "action", "reward", "task"):
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    assert not _children()
