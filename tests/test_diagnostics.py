"""Student diagnostics on a small synthetic store: the Monte-Carlo return against a hand-written
discounted sum, Q's action sensitivity (0 for a Q that ignores the action), prior saturation,
determinism, and the figure."""
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from tdmpc_lib.data.benchmark_support import make_synthetic_store
from tdmpc_lib.diagnostics import KEYS, heldout_states, student_diagnostics
from tdmpc_lib.tasks import get_task_set
from tdmpc_lib.world_model import make_world_model

EPISODE = 12  # rows per episode: 11 agent steps


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_synthetic_store(tmp_path_factory.mktemp("diag") / "s", rows=8 * EPISODE, episode_length=EPISODE,
                                progress=False)


def random_q_model(seed=1):
    """A fresh model's Q output layer is zero (every Q equal): randomise it."""
    model = make_world_model("tiny", seed=seed)
    with torch.no_grad():
        model._Qs.params[-1].weight.normal_(0, 0.3)
    return model


def test_monte_carlo_return_is_the_discounted_sum_of_the_rest_of_the_episode(store):
    model = make_world_model("tiny", seed=1)
    s = heldout_states(model, store, max_step=5)
    assert len(s["row"]) == store.num_episodes * 5 and s["step"].max() == 4
    e = 2
    first = int(store.episode_starts[e])
    task = int(store.task[first])
    gamma = get_task_set(store.task_set).discounts[task]
    rewards = np.asarray(store.reward[first + 1:first + EPISODE], np.float64)  # r_t is stored in row t+1
    for t in range(5):
        want = 0.0
        for k, r in enumerate(rewards[t:]):
            want += gamma ** k * r
        got = s["mc_return"][(s["episode"] == e) & (s["step"] == t)]
        assert s["row"][(s["episode"] == e) & (s["step"] == t)][0] == first + t
        assert s["reward"][(s["episode"] == e) & (s["step"] == t)][0] == rewards[t]
        assert got[0] == pytest.approx(want, rel=1e-6)


def test_q_that_ignores_the_action_has_zero_action_std(store):
    model = random_q_model()
    assert student_diagnostics(model, store, num_actions=16)["mean"]["q_action_std"] > 1e-3
    cfg = model.cfg
    with torch.no_grad():  # first-layer input is [z, task_emb, action]: cut the action columns
        model._Qs.params[0].weight[:, :, cfg.latent_dim + cfg.task_dim:] = 0
    d = student_diagnostics(model, store, num_actions=16)
    assert d["mean"]["q_action_std"] == pytest.approx(0, abs=1e-5)
    assert d["mean"]["q_action_range"] == pytest.approx(0, abs=1e-5)


def test_saturated_prior(store):
    model = make_world_model("tiny", seed=1)
    assert student_diagnostics(model, store, num_actions=2)["mean"]["prior_saturated"] < 0.1
    with torch.no_grad():  # the _pi output is [mu, log_std]: push every mu far past tanh's knee
        model._pi[-1].bias[:model.cfg.action_dim] = 10.0
    d = student_diagnostics(model, store, num_actions=2)
    assert d["mean"]["prior_saturated"] > 0.99
    assert all(v["prior_saturated"] > 0.99 for v in d["per_task"].values())


def test_json_and_deterministic(store):
    model = random_q_model()
    model.train()
    before = torch.random.get_rng_state()
    a = student_diagnostics(model, store, num_actions=8, seed=3, batch_size=17)
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is untouched
    assert model.training  # mode restored
    b = student_diagnostics(model, store, num_actions=8, seed=3, batch_size=17)
    assert json.dumps(a, allow_nan=False) == json.dumps(b, allow_nan=False)
    assert student_diagnostics(model, store, num_actions=8, seed=4, batch_size=17) != a
    assert set(a) == {"per_task", "mean", "max_step", "num_actions"}
    assert set(a["mean"]) == set(KEYS) | {"states"}
    names = get_task_set(store.task_set).tasks
    assert set(a["per_task"]) == {names[int(t)] for t in store.episode_task}
    assert a["mean"]["states"] == sum(v["states"] for v in a["per_task"].values()) == store.num_episodes * 11
    v = next(iter(a["per_task"].values()))
    assert v["q_over_return"] == pytest.approx(v["q_mean"] / v["mc_return_mean"])


def test_figure():
    import matplotlib.pyplot as plt

    from tdmpc_lib.study.plots import DIAGNOSTIC_PANELS, RATIO_PANELS, diagnostics_figure

    rows = [{"arm": arm, "task": task, "q_over_return": 1 + 0.1 * s, "q_action_std": 0.5 + s,
             "q_rank_vs_teacher": 0.1 * s, "prior_saturated": 0.2 * s, "own_q_over_return": 1 + 4 * s,
             "own_q_over_teacher": 0.9 + s, "own_reward_bias": 0.5 * s}
            for arm in ("scratch", "d_coef 0.4") for task in ("walker-run", "cup-catch")
            for s in range(3)]
    fig = diagnostics_figure(rows, "diagnostics")
    # Q / return, Q rank and planning-value rank vs teacher, Q spread, prior saturation, the
    # teacher's value of prior and plan; on its own episodes Q / return, Q / the teacher's Q and
    # the reward head's bias
    assert len(fig.axes) == 10
    # the ratios that can reach 9 are on a symmetric-log axis, the others linear
    scales = {col: ax.get_yscale() for ax, (col, _) in zip(fig.axes, DIAGNOSTIC_PANELS)}
    assert {c for c, s in scales.items() if s == "symlog"} == set(RATIO_PANELS)
    assert scales["q_action_std"] == "linear"
    plt.close(fig)


def test_q_rank_against_a_teacher_is_one_for_the_model_itself(tmp_path):
    import torch
    from tdmpc_lib.data.benchmark_support import make_synthetic_store
    from tdmpc_lib.data import open_store
    from tdmpc_lib.diagnostics import spearman, student_diagnostics
    from tdmpc_lib.world_model import make_world_model
    make_synthetic_store(tmp_path / "s", rows=400, episode_length=40, progress=False)
    model = make_world_model("tiny", seed=1)
    with torch.no_grad():
        model._Qs.params[-1].weight.normal_(0, 0.3)
    d = student_diagnostics(model, open_store(tmp_path / "s"), max_step=5, num_actions=16, teacher=model)
    assert all(v["q_rank_vs_teacher"] == pytest.approx(1.0) for v in d["per_task"].values())
    assert all(v["g_rank_vs_teacher"] == pytest.approx(1.0) for v in d["per_task"].values())
    a = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    r = spearman(a, -a)
    assert r[0].item() == pytest.approx(-1.0) and torch.isnan(r[1])


def test_precomputed_teacher_action_values_give_the_same_ranking(tmp_path):
    import torch
    from tdmpc_lib.data.benchmark_support import make_synthetic_store
    from tdmpc_lib.data import open_store
    from tdmpc_lib.diagnostics import action_values, student_diagnostics
    from tdmpc_lib.world_model import make_world_model
    make_synthetic_store(tmp_path / "s", rows=400, episode_length=40, progress=False)
    store = open_store(tmp_path / "s")
    student, teacher = make_world_model("tiny", seed=1), make_world_model("tiny", seed=2)
    with torch.no_grad():
        for m in (student, teacher):
            m._Qs.params[-1].weight.normal_(0, 0.3)
    direct = student_diagnostics(student, store, max_step=5, num_actions=16, teacher=teacher)
    values = action_values(teacher, store, max_step=5, num_actions=16)
    assert values.shape == (16, direct["mean"]["states"])
    cached = student_diagnostics(student, store, max_step=5, num_actions=16, teacher_action_values=values)
    # the planning-value ranking needs the teacher model; everything else is the same
    assert all(v["g_rank_vs_teacher"] is None for v in cached["per_task"].values())
    for part in (cached["mean"], *cached["per_task"].values()):
        part.pop("g_rank_vs_teacher")
    for part in (direct["mean"], *direct["per_task"].values()):
        assert part.pop("g_rank_vs_teacher") < 0.99  # another random model ranks differently
    assert cached == direct
    with pytest.raises(ValueError, match="same store and arguments"):
        student_diagnostics(student, store, max_step=5, num_actions=8, teacher_action_values=values)


def test_the_teacher_values_the_actions_of_the_students_planner_and_prior(tmp_path):
    """plan_adv_teacher / prior_adv_teacher: the teacher's advantage (in stds of its Q over the
    state's random actions) of the student's MPPI action and prior mean, checked by hand."""
    import dataclasses

    from tdmpc_lib.data import open_store
    from tdmpc_lib.diagnostics import action_values
    from tdmpc_lib.planner import PlannerConfig

    make_synthetic_store(tmp_path / "s", rows=400, episode_length=40, progress=False)
    store = open_store(tmp_path / "s")
    student, teacher = random_q_model(1), random_q_model(2)
    planner = PlannerConfig(num_samples=16, num_elites=4, num_pi_trajs=4, iterations=1)
    before = torch.random.get_rng_state()
    d = student_diagnostics(student, store, max_step=5, num_actions=16, teacher=teacher, planner=planner)
    assert torch.equal(before, torch.random.get_rng_state())  # MPPI's draws are seeded, the RNG restored
    assert d == student_diagnostics(student, store, max_step=5, num_actions=16, teacher=teacher, planner=planner)
    assert all(np.isfinite(v["plan_adv_teacher"]) and np.isfinite(v["prior_adv_teacher"])
               for v in d["per_task"].values())
    # acting without MPPI is acting with the prior's mean: both measures are the prior's
    prior_only = student_diagnostics(student, store, max_step=5, num_actions=16, teacher=teacher,
                                     planner=dataclasses.replace(planner, mpc=False))
    assert prior_only["mean"]["plan_adv_teacher"] == pytest.approx(prior_only["mean"]["prior_adv_teacher"])
    # by hand: the prior's mean action at every state, the teacher's Q there and at the random actions
    states = heldout_states(student, store, max_step=5)
    q_rand = torch.from_numpy(action_values(teacher, store, max_step=5, num_actions=16))
    obs, task = store.gather(states["row"], ("obs", "task"))
    obs, task = torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(task, dtype=torch.long)
    student.eval(), teacher.eval()  # no dropout in Q, as the diagnostics see it
    with torch.no_grad():
        mean = student.pi(student.encode(obs, task), task)[1]["mean"]
        zt = teacher.encode(obs, task)
        q = teacher.decode(teacher.Q(zt, mean, task, return_type="all")).mean(0).squeeze(-1).double()
    adv = ((q - q_rand.mean(0)) / q_rand.std(0, correction=0)).numpy()
    names = get_task_set(store.task_set).tasks
    for t in np.unique(states["task"]):
        want = float(adv[states["task"] == t].mean())
        assert d["per_task"][names[int(t)]]["prior_adv_teacher"] == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_sequence_values_are_the_discounted_rewards_of_the_latent_rollout_then_q():
    """G = r(z0,a0) + g r(z1,a1) + g^2 r(z2,a2) + g^3 Q(z3, prior mean), recomputed one sequence
    at a time through WorldModel.pi's own mean action."""
    from tdmpc_lib.diagnostics import sequence_values

    model = random_q_model(3).eval()
    gen = torch.Generator().manual_seed(0)
    n, K, H = 3, 4, 3
    obs = torch.randn(n, model.cfg.obs_dim, generator=gen)
    task = torch.tensor([0, 5, 17])
    actions = torch.rand(H, K, n, model.cfg.action_dim, generator=gen) * 2 - 1
    G = sequence_values(model, obs, task, actions)
    assert G.shape == (K, n) and G.dtype == torch.float64
    with torch.no_grad():
        for k in range(K):
            for i in range(n):
                t = task[i:i + 1]
                z, total = model.encode(obs[i:i + 1], t), 0.0
                gamma = float(model.discount(t, "cpu"))
                for h in range(H):
                    a = actions[h, k, i:i + 1]
                    total += gamma ** h * float(model.decode(model.reward(z, a, t)))
                    z = model.next(z, a, t)
                _, info = model.pi(z, t)
                q = model.decode(model.Q(z, info["mean"], t, return_type="all")).mean()
                total += gamma ** H * float(q)
                assert G[k, i].item() == pytest.approx(total, rel=1e-5, abs=1e-5)


def test_own_episode_values_compare_q_with_the_return_earned_and_the_teachers_q(tmp_path):
    """On a model's own episodes: mean Q / mean discounted return of the first max_step steps and
    the reward head's bias (recomputed here from the stored rows), and the same numbers against
    a teacher that is the model itself."""
    import numpy as np
    import torch
    from tdmpc_lib.data import collect, open_store
    from tdmpc_lib.diagnostics import _q_mean, own_episode_values
    from tdmpc_lib.planner import PlannerConfig
    from tdmpc_lib.world_model import make_world_model
    model = make_world_model("tiny", seed=1)
    with torch.no_grad():
        model._Qs.params[-1].weight.normal_(0, 0.3)
    collect(tmp_path / "own", "cartpole-balance,reacher-easy", 1, "plan", model, seed=3, max_steps=30,
            planner=PlannerConfig(num_samples=16, num_elites=4, num_pi_trajs=2, iterations=1), progress=False)
    store = open_store(tmp_path / "own")
    v = own_episode_values(model, store, model, max_step=10)
    assert set(v) == {"cartpole-balance", "reacher-easy"}
    start = int(store.episode_starts[0])  # cartpole-balance's episode
    obs, task = store.gather(np.arange(start, start + 10), ("obs", "task"))
    action, = store.gather(np.arange(start + 1, start + 11), ("action",))
    reward, = store.gather(np.arange(start + 1, start + 31), ("reward",))
    task_t = torch.as_tensor(task, dtype=torch.long)
    gamma = float(model.discount(task_t[:1], "cpu"))
    g = [sum(gamma ** k * reward[t + k] for k in range(30 - t)) for t in range(10)]
    with torch.no_grad():
        q = _q_mean(model, model.encode(torch.as_tensor(obs), task_t), torch.as_tensor(action), task_t)
    assert v["cartpole-balance"]["own_q_over_return"] == pytest.approx(q.double().mean().item() / np.mean(g), rel=1e-4)
    # the reward head's bias on the same steps: predicted minus the reward stored in row t + 1
    with torch.no_grad():
        r_hat = model.decode(model.reward(model.encode(torch.as_tensor(obs), task_t), torch.as_tensor(action), task_t))
    bias = float(np.mean(r_hat.squeeze(-1).double().numpy() - reward[:10]))
    assert v["cartpole-balance"]["own_reward_bias"] == pytest.approx(bias, rel=1e-4, abs=1e-6)
    assert all(x["own_q_over_teacher"] == pytest.approx(1.0) for x in v.values())
    assert all(x["own_reward_bias_teacher"] == x["own_reward_bias"] for x in v.values())
    alone = own_episode_values(model, store)["reacher-easy"]
    assert alone["own_q_over_teacher"] is None and alone["own_reward_bias_teacher"] is None
    # the same from one call that rolls the model out itself, leaving the global generators as they were
    from tdmpc_lib.diagnostics import own_episode_diagnostics
    rng = torch.get_rng_state(), np.random.get_state()[1].copy()
    one = own_episode_diagnostics(model, model, "cartpole-balance,reacher-easy", seed=3, max_steps=30,
                                  max_step=10, planner=PlannerConfig(num_samples=16, num_elites=4, num_pi_trajs=2,
                                                                     iterations=1))
    assert one == v
    assert torch.equal(torch.get_rng_state(), rng[0]) and np.array_equal(np.random.get_state()[1], rng[1])
