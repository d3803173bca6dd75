"""Value and policy distillation (beyond the paper): each term is zero for a teacher identical to
the student (the value term with the reward term: tests/test_train.py), the teacher-target caches
of every kind equal the online teacher, and a cached run trains without loading the teacher."""
import copy

import numpy as np
import pytest
import torch

from tdmpc_lib.train import DistillConfig, Distiller, Learner, Teacher, TeacherTargetCache, TrainConfig, train
from tdmpc_lib.train.distill import policy_distill_loss, value_distill_loss
from tdmpc_lib.world_model import make_world_model

from test_train import batch_of, cfg_for, one_thread, randomized, store, store_dir, teacher_ckpt  # noqa: F401


def test_identical_teacher_gives_zero_policy_term(store):
    """The prior of a teacher with the student's weights is the student's prior (the same
    function, no draw). In an update the policy step follows the world-model step, which moves
    the task embedding, so there the term is near 0 (< 1e-4 here) rather than exactly 0."""
    from tdmpc_lib.train.losses import encode, policy_values, task_rows
    student = randomized(make_world_model("tiny", seed=3), 4)
    dcfg = DistillConfig(teacher="same-weights", d_coef=0.0, pi_coef=1.0)
    distiller = Distiller(dcfg, Teacher(copy.deepcopy(student), keep=Teacher.keep_for(dcfg)), student.cfg.latent_dim)
    b = batch_of(store)
    targets = distiller.targets(b, 3)
    with torch.no_grad():
        zs = encode(student, b.obs[:1], task_rows(student, b.task))  # the training forward's encoder
        _, info = policy_values(student, zs, b.task)
    assert distiller.policy_loss(targets, info).item() == 0.0
    learner = Learner(student, TrainConfig(data="x", distill=dcfg), distiller)
    distiller.teacher.model.load_state_dict(student.state_dict(), strict=False)
    assert learner.update(b, 0)["distill_policy_loss"].item() < 1e-4


def test_value_and_policy_losses_are_the_documented_formulas():
    qs, qt = torch.tensor([[[10.0]], [[-3.0]]]), torch.tensor([[[100.0]], [[-3.0]]])
    expect = ((np.log1p(10) - np.log1p(100)) ** 2 + 0.0) / 2
    assert value_distill_loss(qs, qt).item() == pytest.approx(expect, rel=1e-6)
    ms, mt = torch.tensor([[[0.5, 0.0]]]), torch.tensor([[[-0.5, 0.0]]])
    ls, lt = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[-1.0, 0.0]]])
    assert policy_distill_loss(ms, ls, mt, lt).item() == pytest.approx(1.0 / 2 + 4.0 / 2)


def test_value_and_policy_terms_train_the_heads_not_the_encoder_when_detached(store):
    teacher_model = randomized(make_world_model("tiny", seed=7), 8)
    dcfg = DistillConfig(teacher="t", d_coef=0.0, q_coef=1.0, pi_coef=1.0, detach_encoder=True)
    teacher = Teacher(teacher_model, keep=Teacher.keep_for(dcfg))
    student = randomized(make_world_model("tiny", seed=11), 12)  # non-zero Q outputs: gradients flow
    distiller = Distiller(dcfg, teacher, student.cfg.latent_dim)
    b = batch_of(store)
    targets = distiller.targets(b, 3)
    assert targets["value"].shape == (1, 16, 1) and targets["pi_mean"].shape == (1, 16, student.cfg.action_dim)
    from tdmpc_lib.train.losses import model_losses
    rollout = {}
    with torch.no_grad():
        next_z = student.encode(b.obs[1:], b.task)
    _, zs, reward_logits = model_losses(student, b.obs, b.action, b.reward, b.task, next_z,
                                        torch.zeros_like(b.reward), 0.5, outputs=rollout)
    terms = distiller.losses(targets, student, zs, b.action, rollout["task_rows"], reward_logits, rollout["q_logits"])
    assert terms["distill_value"] > 0
    terms["distill_value"].backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in student._encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in student._Qs.parameters())
    # without detach, the value term reaches the encoder
    student.zero_grad(set_to_none=True)
    attached = Distiller(DistillConfig(teacher="t", d_coef=0.0, q_coef=1.0), teacher, student.cfg.latent_dim)
    rollout = {}
    _, zs, reward_logits = model_losses(student, b.obs, b.action, b.reward, b.task, next_z,
                                        torch.zeros_like(b.reward), 0.5, outputs=rollout)
    attached.losses(targets, student, zs, b.action, rollout["task_rows"], reward_logits,
                    rollout["q_logits"])["distill_value"].backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in student._encoder.parameters())


@pytest.mark.parametrize("kind", ["value", "policy", "value_random3"])
def test_value_and_policy_caches_equal_the_online_teacher(store, teacher_ckpt, tmp_path, kind):
    from tdmpc_lib.train.cache import contrast_actions
    teacher = Teacher.load(str(teacher_ckpt), "cpu", keep=("pi", "Q"))
    cache = TeacherTargetCache.build(teacher, store, tmp_path / f"{kind}.npy", batch_size=1000, precision="fp32",
                                     progress=False, kind=kind)
    assert cache.kind == kind and cache.meta["complete"]
    ends = store.episode_starts[1:] - 1
    assert np.isnan(cache.values[ends]).all() and np.isfinite(np.delete(cache.values, ends, axis=0)).all()
    b = batch_of(store, seed=3, batch_size=64)
    # the random actions as training draws them: a function of the row, the task's inactive dims zeroed
    a = contrast_actions(b.rows[:3], 3, b.action.shape[-1])
    a = a * teacher.model.action_mask(b.task, a)
    online = teacher.predict(b.obs[:3], b.action[:3], b.task, reward=False, value=True, policy=True, value_actions=a)
    want = {"value": online["value"], "policy": torch.cat([online["pi_mean"], online["pi_log_std"]], -1),
            "value_random3": online["value_random"].squeeze(-1).permute(1, 2, 0)}[kind]
    assert torch.allclose(cache.lookup(b.rows[:3]), want, atol=1e-5)
    with pytest.raises(ValueError, match="holds"):
        Distiller(DistillConfig(teacher="t", d_coef=0.4), None, 32, {"reward": cache})


def test_teacher_loaded_without_a_network_refuses_its_targets(store, teacher_ckpt):
    teacher = Teacher.load(str(teacher_ckpt), "cpu")
    b = batch_of(store)
    with pytest.raises(ValueError, match="without its Q"):
        teacher.predict(b.obs[:1], b.action[:1], b.task, value=True)


def test_cached_value_and_policy_run_equals_the_online_run(store_dir, teacher_ckpt, tmp_path):
    runs = {}
    for name, cache in (("online", None), ("cached", "auto")):
        dcfg = DistillConfig(teacher=str(teacher_ckpt), d_coef=0.4, q_coef=0.5, pi_coef=0.5, q_random_actions=2,
                             cache=cache, cache_precision="fp32", detach_encoder=True)
        summary = train(cfg_for(store_dir, tmp_path / name, distill=dcfg))
        runs[name] = summary["metrics"]
    for term in ("distill_reward_loss", "distill_value_loss", "distill_policy_loss", "total_loss", "pi_loss"):
        assert runs["online"][term] == pytest.approx(runs["cached"][term], rel=1e-4), term
        assert runs["online"][term] != 0
    again = train(cfg_for(store_dir, tmp_path / "again", distill=DistillConfig(
        teacher=str(teacher_ckpt), d_coef=0.4, q_coef=0.5, pi_coef=0.5, q_random_actions=2, cache="auto",
        cache_precision="fp32")))
    assert set(again["teacher"]["cache"]["kinds"]) == {"reward", "value", "policy", "value_random2"}
    assert "params" not in again["teacher"]  # every target cached: the teacher was not loaded


def test_cache_only_builds_every_table_the_terms_read(store_dir, teacher_ckpt, tmp_path, capsys):
    from tdmpc_lib.train.__main__ import main
    info = main(["--data", str(store_dir), "--teacher", str(teacher_ckpt), "--teacher-cache", str(tmp_path / "t.npy"),
                 "--d-coef", "0.4", "--q-coef", "1", "--pi-coef", "1", "--q-random-actions", "2", "--cache-only",
                 "--no-progress"])
    assert set(info["kinds"]) == {"reward", "value", "policy", "value_random2"}
    for kind, path in info["kinds"].items():
        cache = TeacherTargetCache(path)
        assert cache.kind == kind and cache.meta["complete"]
    assert '"kinds"' in capsys.readouterr().out


def test_cache_kinds_are_checked():
    from tdmpc_lib.train.cache import random_actions_of
    assert [random_actions_of(k) for k in ("reward", "policy", "value_random8")] == [0, 0, 8]
    for bad in ("values", "value_random", "value_random0", "value_randomx"):
        with pytest.raises(ValueError, match="unknown teacher-target kind"):
            random_actions_of(bad)


def test_contrast_actions_are_a_function_of_the_row():
    from tdmpc_lib.train.cache import contrast_actions
    rows = torch.tensor([[5, 9, 5]])
    a = contrast_actions(rows, 4, 6)
    assert a.shape == (4, 1, 3, 6) and a.min() >= -1 and a.max() < 1
    assert torch.equal(a[:, :, 0], a[:, :, 2]) and not torch.equal(a[:, :, 0], a[:, :, 1])
    assert torch.equal(contrast_actions(torch.tensor([9]), 4, 6)[:, 0], a[:, 0, 1])  # same row, same actions
    assert a.std() > 0.5  # spread over [-1, 1) (uniform: 0.577)


def test_value_at_random_actions_is_zero_for_an_identical_teacher_and_runs_in_training(store, store_dir,
                                                                                    teacher_ckpt, tmp_path):
    student = randomized(make_world_model("tiny", seed=3, dropout=0.0), 4)
    dcfg = DistillConfig(teacher="same", d_coef=0.0, q_coef=1.0, q_random_actions=3)
    distiller = Distiller(dcfg, Teacher(copy.deepcopy(student), keep=Teacher.keep_for(dcfg)), student.cfg.latent_dim)
    b = batch_of(store)
    targets = distiller.targets(b, 3)
    assert targets["value_random"].shape == (3, 1, 16, 1)
    from tdmpc_lib.train.losses import model_losses
    rollout = {}
    with torch.no_grad():
        next_z = student.encode(b.obs[1:], b.task)
    _, zs, rl = model_losses(student, b.obs, b.action, b.reward, b.task, next_z, torch.zeros_like(b.reward), 0.5,
                             outputs=rollout)
    assert distiller.losses(targets, student, zs, b.action, rollout["task_rows"], rl, rollout["q_logits"])[
        "distill_value"].item() == pytest.approx(0.0, abs=1e-10)
    summary = train(cfg_for(store_dir, tmp_path / "rand", distill=DistillConfig(
        teacher=str(teacher_ckpt), d_coef=0.0, q_coef=1.0, q_random_actions=2, cache="auto", cache_precision="fp32")))
    assert summary["metrics"]["distill_value_loss"] > 0


# ------------------------------------------------------------------ the teacher's Q as the TD target
def test_teacher_td_target_is_the_documented_mix():
    from tdmpc_lib.train.distill import teacher_td_target
    td, teacher = torch.tensor([[[1.0]], [[2.0]], [[3.0]]]), torch.tensor([[[11.0]]])
    assert teacher_td_target(td, teacher, 1.0).flatten().tolist() == [11.0, 2.0, 3.0]  # t = 0 only (paper)
    assert teacher_td_target(td, teacher, 0.25).flatten().tolist() == [3.5, 2.0, 3.0]
    every = torch.tensor([[[10.0]], [[20.0]], [[30.0]]])  # all_steps: every step
    assert teacher_td_target(td, every, 0.5).flatten().tolist() == [5.5, 11.0, 16.5]


def test_q_target_mix_trains_the_student_q_on_the_teacher_q(store, store_dir, teacher_ckpt, tmp_path):
    """With q_target_mix = 1 the student's Q target is the teacher's Q at every horizon step (also
    without all_steps, which keeps the reward term at the first step); the random-action term is
    TD-MPC2's cross-entropy against the teacher's Q; a cached run trains."""
    student = randomized(make_world_model("tiny", seed=3, dropout=0.0), 4)
    dcfg = DistillConfig(teacher="same", d_coef=0.45, q_coef=1.0, q_target_mix=1.0, q_random_actions=2)
    teacher = Teacher(copy.deepcopy(randomized(make_world_model("tiny", seed=8), 2)), keep=Teacher.keep_for(dcfg))
    distiller = Distiller(dcfg, teacher, student.cfg.latent_dim)
    b = batch_of(store)
    targets = distiller.targets(b, 3)
    teacher_q = targets["value"]
    assert teacher_q.shape == (3, 16, 1) and targets["value_random"].shape == (2, 3, 16, 1)
    assert targets["reward"].shape == (1, 16, 1)
    out = Learner(student, TrainConfig(data="x", distill=dcfg), distiller).update(b, 0)
    assert out["td_target"].item() == pytest.approx(teacher_q.mean().item(), rel=1e-6)
    assert out["distill_value_loss"].item() > 0
    summary = train(cfg_for(store_dir, tmp_path / "mix", distill=DistillConfig(
        teacher=str(teacher_ckpt), d_coef=0.0, q_coef=1.0, q_target_mix=0.5, q_random_actions=2, cache="auto",
        cache_precision="fp32")))
    assert summary["metrics"]["distill_value_loss"] > 0


@pytest.mark.parametrize("kw, message", [({"q_target_mix": 1.5, "q_coef": 1.0}, "share in \\[0, 1\\]"),
                                         ({"q_target_mix": 0.5}, "needs value distillation on")])
def test_q_target_mix_is_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        DistillConfig(teacher="t.pt", **kw).validate()
