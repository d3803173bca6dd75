"""Training: the TD-MPC2 update terms, distillation, the teacher cache, checkpoints and an exact
resume after SIGKILL. Tiny models on a tiny synthetic store (one CPU thread: the runners share
two cores and multi-threaded BLAS slows down badly when oversubscribed)."""
import copy
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tdmpc_lib import math as tmath
from tdmpc_lib.checkpoint import load_checkpoint, save_checkpoint
from tdmpc_lib.data.benchmark_support import make_synthetic_store
from tdmpc_lib.data.sampler import SliceSampler
from tdmpc_lib.evaluate import EvalConfig
from tdmpc_lib.planner import PlannerConfig
from tdmpc_lib.train import (DistillConfig, Distiller, Learner, LatentProjection, RunningScale, Teacher,
                             TeacherTargetCache, TrainConfig, distill_coefficient, train)
from tdmpc_lib.train.losses import model_losses, td_targets
from tdmpc_lib.world_model import make_world_model

LOSS_KEYS = ("consistency_loss", "reward_loss", "value_loss", "total_loss", "pi_loss", "grad_norm", "pi_scale")


def randomized(model, seed):
    """Give the zero-initialised reward/Q output layers random weights (non-trivial outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (model._reward[-1].weight, model._Qs.params[-1].weight):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        model._target_Qs.load_state_dict(model._Qs.state_dict())
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module (restored afterwards): bit-exact comparisons with the
    single-threaded CLI runs, and no oversubscription of the shared cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "store"
    make_synthetic_store(path, rows=4000, episode_length=40, progress=False)
    return path


@pytest.fixture(scope="module")
def store(store_dir):
    from tdmpc_lib.data.store import open_store
    return open_store(store_dir)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(randomized(make_world_model("tiny", seed=7), 8), path)
    return path


def batch_of(store, seed=0, batch_size=16):
    return SliceSampler(store, batch_size, 3, "cpu", seed=seed).sample()


def cfg_for(store_dir, tmp, **kw):
    base = dict(data=str(store_dir), out=str(tmp), student_size="tiny", batch_size=16, steps=4, threads=1,
                log_freq=1, checkpoint_freq=100, progress=False)
    base.update(kw)
    return TrainConfig(**base)


# ------------------------------------------------------------------------------ update terms
def test_running_scale_matches_numpy_percentiles():
    x = torch.randn(257, 1) * 7
    s = RunningScale(tau=0.01)
    p5, p95 = np.percentile(x.numpy(), [5, 95])
    s.update(x)
    assert s.value.item() == pytest.approx(1 + 0.01 * (max(p95 - p5, 1) - 1), abs=1e-5)
    small = RunningScale(tau=0.5)
    small.update(torch.zeros(10, 1))  # range below 1 -> clamped to 1
    assert small.value.item() == 1.0
    assert torch.allclose(s(torch.ones(3)), torch.ones(3) / s.value)


def test_model_losses_match_the_reference_loop(store):
    """Vectorised losses == the official per-step loops of TDMPC2._update."""
    torch.manual_seed(0)
    model = randomized(make_world_model("tiny", seed=1), 2)
    b = batch_of(store)
    cfg, rho, H = model.cfg, 0.5, 3
    with torch.no_grad():
        next_z = model.encode(b.obs[1:], b.task)
        y = td_targets(model, next_z, b.reward, b.task)
    model.eval()  # no dropout: both computations see the same Q
    terms, zs, _ = model_losses(model, b.obs, b.action, b.reward, b.task, next_z, y, rho)
    z, cons, rew, val = model.encode(b.obs[0], b.task), 0.0, 0.0, 0.0
    for t in range(H):
        qs = model.Q(z, b.action[t], b.task, return_type="all")
        rew = rew + tmath.soft_ce(model.reward(z, b.action[t], b.task), b.reward[t], cfg.num_bins, cfg.vmin,
                                  cfg.vmax).mean() * rho ** t
        for q in qs:
            val = val + tmath.soft_ce(q, y[t], cfg.num_bins, cfg.vmin, cfg.vmax).mean() * rho ** t
        z = model.next(z, b.action[t], b.task)
        cons = cons + F.mse_loss(z, next_z[t]) * rho ** t
        assert torch.allclose(z, zs[t + 1], atol=1e-6)
    assert torch.allclose(terms["consistency"], cons / H, rtol=1e-5)
    assert torch.allclose(terms["reward"], rew / H, rtol=1e-5)
    assert torch.allclose(terms["value"], val / (H * cfg.num_q), rtol=1e-5)


def test_update_changes_only_what_it_should(store):
    torch.manual_seed(0)
    model = make_world_model("tiny", seed=1)
    learner = Learner(model, TrainConfig(data="x"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = learner.update(batch_of(store), 0)
    assert all(torch.isfinite(v).all() for v in out.values())
    after = model.state_dict()
    for prefix in ("_encoder", "_dynamics", "_reward", "_pi", "_Qs", "_target_Qs"):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(prefix)), prefix
    # Polyak: target moved by tau towards the updated online Qs
    k = "_Qs.params.0.weight"
    tgt = "_target_Qs.params.0.weight"
    assert torch.allclose(after[tgt], before[tgt] + 0.01 * (after[k] - before[tgt]), atol=1e-7)
    groups = learner.optim.param_groups
    assert groups[0]["lr"] == pytest.approx(3e-4 * 0.3) and all(g["lr"] == 3e-4 for g in groups[1:])
    assert learner.pi_optim.param_groups[0]["eps"] == 1e-5
    assert not model.training  # back in eval mode after the update


# ------------------------------------------------------------------------------ distillation
def test_distill_coefficient_schedules():
    assert distill_coefficient("constant", 0.45, 50, 100) == 0.45
    assert distill_coefficient("decrease", 0.4, 25, 100) == pytest.approx(0.3)
    assert distill_coefficient("decrease", 0.4, 200, 100) == 0.0
    assert distill_coefficient("increase", 0.4, 25, 100) == pytest.approx(0.1)
    assert distill_coefficient("increase", 0.4, 500, 100) == 0.4


# Value distillation compares the student's train-mode Q (with dropout) with the eval-mode teacher's:
# identical only without dropout.
@pytest.mark.parametrize("terms,dropout", [({}, 0.01), ({"q_coef": 1.0}, 0.0),
                                           ({"q_coef": 1.0, "detach_encoder": True}, 0.0)],
                         ids=["reward", "reward+value", "reward+value-detached"])
def test_distillation_from_identical_teacher_is_zero_and_leaves_gradients_unchanged(store, terms, dropout):
    student = randomized(make_world_model("tiny", seed=3, dropout=dropout), 4)
    plain, distilled = copy.deepcopy(student), copy.deepcopy(student)
    dcfg = DistillConfig(teacher="same-weights", d_coef=0.45, **terms)
    teacher = Teacher(copy.deepcopy(student), keep=Teacher.keep_for(dcfg))
    learners = [Learner(plain, TrainConfig(data="x")),
                Learner(distilled, TrainConfig(data="x", distill=dcfg),
                        Distiller(dcfg, teacher, student.cfg.latent_dim))]
    sampler = SliceSampler(store, 16, 3, "cpu", seed=5)
    for step in range(3):
        b = sampler.sample()
        with torch.no_grad():  # the teacher holds the student's current weights
            teacher.model.load_state_dict(distilled.state_dict(), strict=False)
        outs = []
        for learner in learners:
            torch.manual_seed(100 + step)  # same pi/Q-member/dropout draws for both
            outs.append(learner.update(b, step))
        distill_terms = [k for k in outs[1] if k.startswith("distill_")]
        assert len(distill_terms) == 1 + ("q_coef" in terms)
        assert all(outs[1][k].item() == 0.0 for k in distill_terms), distill_terms
        assert outs[0]["total_loss"].item() == outs[1]["total_loss"].item()
        for (name, p), q in zip(plain.named_parameters(), distilled.parameters()):
            assert (p.grad is None) == (q.grad is None), name
            if p.grad is not None:
                assert torch.equal(p.grad, q.grad), name
    for k, v in plain.state_dict().items():
        assert torch.equal(v, distilled.state_dict()[k]), k


def test_teacher_is_frozen_and_never_changes(store):
    raw = randomized(make_world_model("tiny", seed=9), 10)
    with torch.no_grad():
        raw._task_emb.weight.mul_(200)  # rows with norm > 1: max_norm would rewrite them on lookup
    teacher = Teacher(raw)
    snapshot = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    assert torch.all(snapshot["_task_emb.weight"].norm(dim=-1) <= 1.0 + 1e-6)
    student = make_world_model("tiny", seed=11)
    dcfg = DistillConfig(teacher="t", d_coef=0.45, all_steps=True, latent="linear")
    distiller = Distiller(dcfg, teacher, student.cfg.latent_dim)
    learner = Learner(student, TrainConfig(data="x", distill=dcfg), distiller)
    teacher_ids = {id(p) for p in teacher.model.parameters()}
    optim_ids = {id(p) for o in (learner.optim, learner.pi_optim) for g in o.param_groups for p in g["params"]}
    assert not teacher_ids & optim_ids
    assert all(not p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training
    proj_before = distiller.projection.linear.weight.clone()
    sampler = SliceSampler(store, 16, 3, "cpu", seed=1)
    for step in range(3):
        out = learner.update(sampler.sample(), step)
        assert out["distill_reward_loss"] > 0 and out["distill_latent_loss"] > 0
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    assert all(p.grad is None for p in teacher.model.parameters())
    assert not torch.equal(proj_before, distiller.projection.linear.weight)  # 'linear' trains jointly


def test_projections_frozen_linear_and_pca():
    frozen = LatentProjection("linear-frozen", 40, 16, seed=0)
    assert not any(p.requires_grad for p in frozen.parameters())
    assert torch.equal(frozen.linear.weight, LatentProjection("linear-frozen", 40, 16, seed=0).linear.weight)
    pca = LatentProjection("pca", 40, 16)
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(40, 16, generator=g))[0]
    data = 3.0 + torch.randn(2000, 16, generator=g) @ basis.T  # rank 16 around a non-zero mean
    pca.fit_pca(data)
    assert pca.explained_variance_ratio.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(pca.mean, data.mean(0), atol=1e-5)
    scores = pca(data)
    assert scores.mean(0).abs().max() < 1e-4  # centred
    recon = scores @ pca.components + pca.mean
    assert torch.allclose(recon, data, atol=1e-3)


def test_teacher_cache_equals_online_teacher(store, store_dir, teacher_ckpt, tmp_path):
    teacher = Teacher.load(str(teacher_ckpt), "cpu")
    path = tmp_path / "rewards.npy"
    cache = TeacherTargetCache.build(teacher, store, path, batch_size=1000, precision="fp32", progress=False)
    assert cache.meta["complete"] and cache.meta["teacher_sha256"] == teacher.sha256
    ends = store.episode_starts[1:] - 1
    assert np.isnan(cache.values[ends]).all() and np.isfinite(np.delete(cache.values, ends)).all()
    b = batch_of(store, seed=3, batch_size=64)
    online = teacher.predict(b.obs[:3], b.action[:3], b.task)["reward"]
    assert torch.allclose(cache.lookup(b.rows[:3]), online, atol=1e-5)
    # bf16 where accurate: the check batch's error is recorded; an interrupted build resumes.
    meta = json.loads(TeacherTargetCache.meta_path(path).read_text())
    meta.update(rows_done=2000, complete=False)
    TeacherTargetCache.meta_path(path).write_text(json.dumps(meta))
    np.lib.format.open_memmap(path, mode="r+")[2000:] = 0.0
    resumed = TeacherTargetCache.build(teacher, store, path, batch_size=1000, progress=False)
    assert np.array_equal(np.asarray(resumed.values), np.asarray(cache.values), equal_nan=True)
    auto = TeacherTargetCache.build(teacher, store, tmp_path / "auto.npy", batch_size=1000, progress=False)
    assert "bf16_max_abs_err" in auto.meta
    tol = 1e-5 if auto.meta["precision"] == "fp32" else auto.meta["tolerance"]
    assert torch.allclose(auto.lookup(b.rows[:3]), online, atol=tol)


def test_cached_and_online_distillation_give_the_same_run(store_dir, teacher_ckpt, tmp_path):
    runs = {}
    for name, cache in (("online", None), ("cached", "auto")):
        dcfg = DistillConfig(teacher=str(teacher_ckpt), d_coef=0.4, all_steps=True, cache=cache,
                             cache_precision="fp32")
        train(cfg_for(store_dir, tmp_path / name, distill=dcfg))
        runs[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(runs["online"], runs["cached"]):
        assert a["distill_reward_loss"] == pytest.approx(b["distill_reward_loss"], rel=1e-4)
        assert a["total_loss"] == pytest.approx(b["total_loss"], rel=1e-4)
    # a second cached run does not load the teacher at all
    summary = train(cfg_for(store_dir, tmp_path / "again", distill=DistillConfig(
        teacher=str(teacher_ckpt), d_coef=0.4, cache="auto", cache_precision="fp32")))
    assert summary["teacher"]["cache"]["path"].endswith(".npy") and "params" not in summary["teacher"]


@pytest.mark.parametrize("mode", ["linear-frozen", "pca"])
def test_latent_ablations_log_each_term(store_dir, teacher_ckpt, tmp_path, mode):
    dcfg = DistillConfig(teacher=str(teacher_ckpt), d_coef=0.4, latent=mode, latent_coef=0.5, pca_samples=300)
    summary = train(cfg_for(store_dir, tmp_path / mode, steps=2, distill=dcfg))
    row = summary["metrics"]
    assert row["distill_reward_loss"] > 0 and row["distill_latent_loss"] > 0 and row["d_coef"] == 0.4
    if mode == "pca":
        assert 0 < row["pca_explained_variance"] <= 1.0 + 1e-6


def test_bf16_autocast_update_runs(store):
    model = make_world_model("tiny", seed=1)
    out = Learner(model, TrainConfig(data="x", precision="bf16")).update(batch_of(store), 0)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_periodic_evaluation_does_not_change_training(store_dir, tmp_path):
    """Evaluation runs on a copy with its own seeding; the training RNG streams are restored."""
    train(cfg_for(store_dir, tmp_path / "plain", steps=2))
    evald = train(cfg_for(store_dir, tmp_path / "eval", steps=2, eval_freq=2,
                          eval=EvalConfig(tasks="cartpole-balance", episodes=1, policy="prior")))
    assert evald["eval"]["step"] == 2 and evald["eval"]["normalized_score"] >= 0
    assert (tmp_path / "eval" / "eval.csv").read_text().startswith("step,normalized_score")
    assert _losses(tmp_path / "plain") == _losses(tmp_path / "eval")


# ------------------------------------------------------------------------------ checkpoints and resume
def test_checkpoint_loads_and_resume_refuses_a_different_config(store_dir, tmp_path):
    cfg = cfg_for(store_dir, tmp_path / "run", steps=3, checkpoint_freq=2)
    summary = train(cfg)
    ckpt = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpt.glob("step_*")) == ["step_2.json", "step_2.pt", "step_3.json", "step_3.pt"]
    assert json.loads((ckpt / "step_2.json").read_text())["train_config"]["batch_size"] == 16
    model = load_checkpoint(ckpt / "latest.pt")
    final = load_checkpoint(summary["model"])
    for k, v in final.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    with pytest.raises(ValueError, match="already holds a run"):
        train(cfg)
    with pytest.raises(ValueError, match="batch_size"):
        train(cfg_for(store_dir, tmp_path / "run", steps=5, batch_size=8, resume=True))


def _cli(store_dir, out, steps, *extra):
    cmd = [sys.executable, "-m", "tdmpc_lib.train", "--data", str(store_dir), "--student-size", "tiny",
           "--teacher", str(extra[0]), "--d-coef", "0.45", "--batch-size", "16", "--steps", str(steps),
           "--device", "cpu", "--out", str(out), "--checkpoint-freq", "10", "--log-freq", "1", "--threads", "1",
           "--no-progress", *extra[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return cmd, env


def _losses(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], *(r.get(k) for k in LOSS_KEYS + ("distill_reward_loss",))) for r in rows]


def test_sigkill_and_resume_reproduces_the_uninterrupted_losses(store_dir, teacher_ckpt, tmp_path):
    steps = 60
    killed = tmp_path / "killed"
    cmd, env = _cli(store_dir, killed, steps, teacher_ckpt)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not (killed / "checkpoints" / "step_10.pt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model.pt").exists()  # it really died mid-run
    saved = max(int(p.stem.split("_")[1]) for p in (killed / "checkpoints").glob("step_*.pt"))
    assert saved < steps
    print("killed after checkpoint", saved, "metrics rows", len((killed / "metrics.jsonl").read_text().splitlines()))
    # resume the killed run through the CLI; run the same configuration uninterrupted in-process
    cmd_resume, _ = _cli(store_dir, killed, steps, teacher_ckpt, "--resume")
    done = subprocess.run(cmd_resume, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    reference = tmp_path / "reference"
    train(cfg_for(store_dir, reference, steps=steps, checkpoint_freq=10, seed=1, distill=DistillConfig(
        teacher=str(teacher_ckpt), d_coef=0.45)))
    resumed_summary = json.loads((killed / "summary.json").read_text())
    assert resumed_summary["resumed_from"] == saved
    a, b = _losses(killed), _losses(reference)
    assert [r[0] for r in a] == list(range(1, steps + 1))  # rows after the checkpoint were dropped
    assert a == b  # bit-identical on CPU fp32, before and after the kill


def test_a_member_trained_beside_another_equals_its_run_alone(store_dir, teacher_ckpt, tmp_path):
    """The study trains a sweep's members side by side, one process of one thread each, on one
    dataset whose teacher-target cache the first of them builds while the other waits
    (benchmarks/sweep_training.py measures what that gains): a member's weights must be those of
    the same member trained alone, on its own copy of the data and cache."""
    import shutil

    shutil.copytree(store_dir, tmp_path / "shared", ignore=_without_caches)
    shutil.copytree(store_dir, tmp_path / "own", ignore=_without_caches)
    steps = 12

    def member(data, out, seed):
        cmd, env = _cli(data, out, steps, teacher_ckpt, "--teacher-cache", "auto", "--seed", str(seed))
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    side_by_side = [member(tmp_path / "shared", tmp_path / f"pool{s}", s) for s in (1, 2)]
    alone = member(tmp_path / "own", tmp_path / "alone1", 1)
    for proc in (*side_by_side, alone):
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()[-2000:]
    for data in ("shared", "own"):  # each copy's cache was built once, from its own data
        assert len(list((tmp_path / data / "teacher_cache").glob("reward_*.npy"))) == 1
    weights = {name: load_checkpoint(tmp_path / name / "model.pt").state_dict() for name in ("pool1", "pool2", "alone1")}
    for k, v in weights["alone1"].items():
        assert torch.equal(v, weights["pool1"][k]), k
    assert not all(torch.equal(v, weights["pool2"][k]) for k, v in weights["alone1"].items())  # seeds differ


def _without_caches(folder, names):
    """copytree's ignore: a copy of the store without the teacher caches earlier tests built beside it."""
    return [n for n in names if n == "teacher_cache"]


def _record_failure(failed: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as e:  # noqa: BLE001 - reported by the test's assertion
        failed.append(repr(e))


def test_a_run_waits_for_a_cache_being_built_before_it_loads_its_teacher(store_dir, teacher_ckpt, tmp_path,
                                                                        monkeypatch, capfd):
    """A run whose cache another process is building waits for it without holding a teacher in
    memory (a 317M teacher per waiting sweep member otherwise), then loads it only to build."""
    import shutil
    import threading

    from tdmpc_lib.checkpoint import cached_file_sha256

    data = tmp_path / "data"
    shutil.copytree(store_dir, data, ignore=_without_caches)
    cache = TeacherTargetCache.path_of("auto", data, cached_file_sha256(teacher_ckpt), "reward")
    holder = subprocess.Popen([sys.executable, "-c", "import time; from tdmpc_lib.files import OutputLock; "
                               f"held = OutputLock({str(cache)!r}).acquire(); print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        loads, real = [], Teacher.load
        monkeypatch.setattr(Teacher, "load", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
        cfg = cfg_for(data, tmp_path / "run", steps=2, distill=DistillConfig(teacher=str(teacher_ckpt), d_coef=0.45,
                                                                               cache="auto"))
        failed = []
        run = threading.Thread(target=lambda: _record_failure(failed, train, cfg))
        run.start()
        err, deadline = "", time.monotonic() + 60
        while "waiting for" not in err:
            assert time.monotonic() < deadline and run.is_alive(), (err, failed)
            time.sleep(0.05)
            err += capfd.readouterr().err
        assert f"waiting for process {holder.pid}, which is writing the teacher cache {cache}" in err
        time.sleep(0.5)
        assert run.is_alive() and not loads  # waiting, with no teacher loaded
    finally:
        holder.kill()
        holder.wait()
    run.join(120)
    assert not run.is_alive() and not failed and loads == [str(teacher_ckpt)]  # then loaded once, to build the cache
    assert (tmp_path / "run" / "model.pt").is_file()


def test_resume_skips_a_truncated_newest_checkpoint(store_dir, tmp_path):
    """A damaged newest step file (a copy cut short, a full disk) falls back to the previous one."""
    cfg = cfg_for(store_dir, tmp_path / "run", steps=4, checkpoint_freq=2, keep_checkpoints=0)
    uninterrupted = train(cfg_for(store_dir, tmp_path / "ref", steps=6, checkpoint_freq=2))
    train(cfg)
    newest = tmp_path / "run" / "checkpoints" / "step_4.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint step_4.pt"):
        resumed = train(dataclasses.replace(cfg, steps=6, resume=True))
    assert resumed["resumed_from"] == 2
    a, b = load_checkpoint(resumed["model"]), load_checkpoint(uninterrupted["model"])
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k  # bit-identical to the run that was never damaged


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(store_dir, tmp_path, monkeypatch):
    from tdmpc_lib.train import NonFiniteLossError
    from tdmpc_lib.train.update import Learner

    real = Learner.update

    def poisoned(self, batch, step):  # from update 3 on, the weights blow up as with a diverging lr
        if step >= 2:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return real(self, batch, step)

    monkeypatch.setattr(Learner, "update", poisoned)
    cfg = cfg_for(store_dir, tmp_path / "run", steps=6, checkpoint_freq=2, log_freq=1)
    with pytest.raises(NonFiniteLossError, match=r"non-finite values in .* at update 3: training stopped, the last "
                                                 r"good checkpoint \(step_2.pt\) is kept"):
        train(cfg)
    ckpts = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert ckpts == ["step_2.pt"]
    good = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_2.pt")
    assert all(torch.isfinite(v).all() for v in good.state_dict().values())


@pytest.mark.parametrize("field, value", [("d_coef", float("nan")), ("d_coef", float("inf")),
                                          ("latent_coef", float("nan"))])
def test_non_finite_coefficients_are_refused_up_front(store_dir, tmp_path, field, value):
    cfg = cfg_for(store_dir, tmp_path / "run", distill=DistillConfig(teacher="x.pt", **{field: value}))
    with pytest.raises(ValueError, match=f"{field} must be a finite number >= 0, got {value}"):
        cfg.validate()


@pytest.mark.parametrize("field, value", [("steps", "10"), ("batch_size", 2.5), ("seed", True)])
def test_whole_number_fields_refuse_other_types(store_dir, tmp_path, field, value):
    with pytest.raises(ValueError, match=f"{field} must be a whole number, got {value!r}"):
        train(cfg_for(store_dir, tmp_path / "run", **{field: value}))


def test_a_boolean_is_not_a_model_size():
    from tdmpc_lib import make_world_model
    with pytest.raises(ValueError, match="unknown model size True"):
        make_world_model(True)


@pytest.mark.parametrize("kw, message", [({"threads": -1}, "threads must be >= 0"),
                                         ({"eval_freq": 2, "eval": EvalConfig(tasks="walker-fly")},
                                          "unknown task 'walker-fly'"),
                                         ({"eval": EvalConfig(device="cuda")}, "eval.device is 'cuda'")])
def test_run_settings_checked_before_any_update(store_dir, tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        train(cfg_for(store_dir, tmp_path / "run", **kw))
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize("k", [50, 3000, 10**6])  # numpy's two sampling methods, and k > valid rows
def test_pca_rows_are_drawn_without_an_array_of_every_row(k):
    """The PCA fit's rows: the same draw as choosing from the explicit list of valid rows
    (rows with a next row in their episode), computed from the episode starts alone."""
    from types import SimpleNamespace

    from tdmpc_lib.train.cache import valid_rows
    from tdmpc_lib.train.distill import _draw_valid_rows

    lengths = np.random.default_rng(0).integers(1, 40, size=7000)  # length-1 episodes have no valid row
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    store = SimpleNamespace(episode_starts=starts, num_rows=int(starts[-1]))
    candidates = np.flatnonzero(valid_rows(store))
    want = np.random.Generator(np.random.PCG64(3)).choice(candidates, size=min(k, candidates.size), replace=False)
    got = _draw_valid_rows(store, k, np.random.Generator(np.random.PCG64(3)))
    np.testing.assert_array_equal(got, want)


def test_a_run_config_saved_with_flat_eval_fields_still_loads():
    """config.json of runs saved before TrainConfig.eval held eval_tasks, eval_episodes, ...: they
    are read into `eval`, so such a run resumes."""
    old = TrainConfig(data="d").to_dict()
    old.pop("eval")
    old.update(eval_tasks="reacher-easy", eval_episodes=3, eval_protocol="paper", eval_policy="prior",
               eval_planner={**dataclasses.asdict(PlannerConfig()), "num_samples": 64})
    cfg = TrainConfig.from_dict(old)
    assert (cfg.eval.tasks, cfg.eval.episodes, cfg.eval.protocol, cfg.eval.policy) == ("reacher-easy", 3, "paper", "prior")
    assert cfg.eval.planner.num_samples == 64 and cfg.eval.seed == EvalConfig().seed
