import torch

from tdmpc_lib import make_world_model
from tdmpc_lib.planner import BatchedPlanner, PlannerConfig, TaskBoundModel


def _model(size="tiny", seed=0):
    m = make_world_model(size, seed=seed)
    with torch.no_grad():  # non-trivial heads (fresh reward/Q heads output constants)
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def test_task_bound_heads_equal_the_model_forward():
    m = _model(1)
    E, S = 3, 10
    task = torch.tensor([4, 6, 16])
    z = torch.softmax(torch.randn(E, S, 128).view(E, S, 16, 8), -1).view(E, S, 128)
    a = torch.rand(E, S, 6) * 2 - 1
    task_s = task[:, None].expand(E, S)
    heads = TaskBoundModel(m, task)
    with torch.no_grad():
        assert torch.allclose(heads.next(z, a), m.next(z, a, task_s), atol=1e-5)
        assert torch.allclose(heads.reward(z, a), m.reward(z, a, task_s), atol=1e-4)
        torch.manual_seed(3)
        a1, i1 = heads.pi(z, task_s)
        torch.manual_seed(3)
        a2, i2 = m.pi(z, task_s)
        assert torch.allclose(a1, a2, atol=1e-5) and torch.allclose(i1["scaled_entropy"], i2["scaled_entropy"], atol=1e-3)
        # num_q = 2: the two drawn members are always both members
        assert torch.allclose(heads.q_avg(z, a), m.Q(z, a, task_s, return_type="avg"), atol=1e-4)


def test_planner_actions_shape_bounds_masks_and_determinism():
    m = _model()
    task = torch.tensor([0, 4, 6, 16])  # 6, 2, 1, 5 action dims
    obs = torch.randn(4, 24)
    t0 = torch.ones(4, dtype=torch.bool)
    torch.manual_seed(0)
    a = BatchedPlanner(m, eval_mode=True).act(obs, task, t0)
    torch.manual_seed(0)
    b = BatchedPlanner(m, eval_mode=True).act(obs, task, t0)
    assert a.shape == (4, 6) and torch.equal(a, b)
    assert a.abs().max() <= 1
    for i, dims in enumerate([6, 2, 1, 5]):
        assert torch.all(a[i, dims:] == 0)


def test_warm_start_shifts_the_previous_mean_and_t0_resets_it():
    m = _model()
    p = BatchedPlanner(m, PlannerConfig(iterations=1), eval_mode=True)
    obs, task = torch.randn(2, 24), torch.tensor([0, 1])
    p.act(obs, task, torch.ones(2, dtype=torch.bool))
    prev = p._prev_mean.clone()
    assert prev.shape == (3, 2, 6) and prev.abs().sum() > 0
    mean = p._warm_start(2, torch.tensor([True, False]), "cpu", prev)
    assert torch.all(mean[:, 0] == 0)
    assert torch.equal(mean[:-1, 1], prev[1:, 1]) and torch.all(mean[-1, 1] == 0)


def test_exploration_noise_only_outside_eval_mode():
    m = _model()
    obs, task, t0 = torch.randn(1, 24), torch.tensor([0]), torch.ones(1, dtype=torch.bool)
    torch.manual_seed(1)
    clean = BatchedPlanner(m, eval_mode=True).act(obs, task, t0)
    torch.manual_seed(1)
    noisy = BatchedPlanner(m, eval_mode=False).act(obs, task, t0)
    assert not torch.equal(clean, noisy)


def test_policy_prior_mode_returns_the_tanh_mean_in_eval():
    m = _model()
    obs, task = torch.randn(3, 24), torch.tensor([0, 4, 7])
    a = BatchedPlanner(m, PlannerConfig(mpc=False), eval_mode=True).act(obs, task, torch.ones(3, dtype=torch.bool))
    with torch.no_grad():
        _, info = m.pi(m.encode(obs, task), task)
    assert torch.allclose(a, info["mean"])


def test_bf16_planning_runs_and_stays_close_in_value():
    m = _model()
    obs, task, t0 = torch.randn(2, 24), torch.tensor([0, 3]), torch.ones(2, dtype=torch.bool)
    a = BatchedPlanner(m, precision="bf16").act(obs, task, t0)
    assert a.dtype == torch.float32 and a.shape == (2, 6) and torch.isfinite(a).all()


def test_env_groups_plan_each_environment_as_if_alone():
    """CPU planning in groups of environments: the first group's plan is what planning those
    environments alone gives (same RNG draws; equal up to the encoder's float summation order,
    which depends on the batch size), and the warm-start mean covers all envs."""
    m = _model()
    obs, task, t0 = torch.randn(4, 24), torch.tensor([0, 4, 6, 16]), torch.ones(4, dtype=torch.bool)  # A = 6, 2, 1, 5
    grouped = BatchedPlanner(m, PlannerConfig(envs_per_group=2), eval_mode=True)
    torch.manual_seed(3)
    a = grouped.act(obs, task, t0)
    torch.manual_seed(3)
    alone = BatchedPlanner(m, PlannerConfig(envs_per_group=2), eval_mode=True).act(obs[:2], task[:2], t0[:2])
    assert torch.allclose(a[:2], alone, atol=1e-5), (a[:2] - alone).abs().max()  # encoder batch size differs
    assert grouped._prev_mean.shape == (3, 4, 6)
    b = grouped.act(obs, task, ~t0)
    assert b.shape == (4, 6) and torch.all(b[1, 2:] == 0)
    assert BatchedPlanner(m).group_size(30, torch.device("cpu")) == 2
    assert BatchedPlanner(m).group_size(30, torch.device("meta")) == 30
