import torch

from tdmpc_lib import make_world_model
from tdmpc_lib.config import model_config
from tdmpc_lib.tasks import MT30, MT30_ACTION_DIMS, discount_for_episode_length
from tdmpc_lib.world_model import WorldModel

# Official code's total_params (tdmpc2/common/world_model.py): trainable, target Qs excluded.
MT30_COUNTS = {1: 1_426_427, 5: 5_241_066, 19: 16_031_210, 48: 48_242_410, 317: 317_316_889}
MT80_COUNTS = {1: 1_435_067, 5: 5_389_930, 19: 18_970_218, 48: 48_791_146, 317: 317_383_129}
MT30_1M_PARTS = {"task_emb": 2_880, "encoder": 64_640, "dynamics": 287_616, "reward": 276_965,
                 "pi": 240_396, "Qs": 553_930}


def _count_on_meta(size, task_set):
    with torch.device("meta"):
        return WorldModel(model_config(size, task_set)).total_params


def test_parameter_counts_match_reference_table_exactly():
    for size, n in MT30_COUNTS.items():
        assert _count_on_meta(size, "mt30") == n, size
    for size, n in MT80_COUNTS.items():
        assert _count_on_meta(size, "mt80") == n, size


def test_component_counts_and_task_dim_rule():
    m = make_world_model(1)
    assert m.component_params() == MT30_1M_PARTS
    assert model_config(5, "mt30").task_dim == 64 and model_config(317, "mt30").task_dim == 96
    assert model_config(5, "mt80").task_dim == 96 and model_config(5, None).task_dim == 0
    assert model_config(19, "mt30").latent_dim == 512 and model_config(19, "mt80").latent_dim == 768


def test_target_qs_are_frozen_copies_and_not_counted():
    m = make_world_model(1, seed=0)
    for p, pt in zip(m._Qs.parameters(), m._target_Qs.parameters()):
        assert torch.equal(p, pt) and not pt.requires_grad
    assert torch.count_nonzero(m._reward[-1].weight) == 0
    assert torch.count_nonzero(m._Qs.params[-1].weight) == 0


def test_shapes_simnorm_and_masks():
    m = make_world_model(1, seed=0).eval()
    B = 7
    task = torch.tensor([4, 0, 6, 29, 16, 17, 26])  # reacher-easy (2 dims), walker, acrobot (1), ...
    obs = torch.randn(B, 24)
    z = m.encode(obs, task)
    assert z.shape == (B, 128)
    assert torch.allclose(z.view(B, 16, 8).sum(-1), torch.ones(B, 16), atol=1e-5)
    a, info = m.pi(z, task)
    assert a.shape == (B, 6) and set(info) >= {"mean", "log_std", "entropy", "scaled_entropy"}
    for i, t in enumerate(task.tolist()):
        assert torch.all(a[i, MT30_ACTION_DIMS[t]:] == 0)  # masked dims are tanh(0) = 0
    assert m.next(z, a, task).shape == (B, 128)
    assert m.reward(z, a, task).shape == (B, 101)
    assert m.Q(z, a, task, return_type="all").shape == (2, B, 101)
    assert m.Q(z, a, task, return_type="min").shape == (B, 1)
    # time-major input with per-batch task ids (training layout)
    zt = torch.rand(4, B, 128)
    assert m.reward(zt, torch.zeros(4, B, 6), task).shape == (4, B, 101)
    assert m.encode(obs, 3).shape == (B, 128)  # an int task broadcasts


def test_task_embedding_rows_are_renormalised_to_unit_norm_on_use():
    m = make_world_model(1, seed=0)
    with torch.no_grad():
        m._task_emb.weight[3] = 5.0
    m.encode(torch.zeros(1, 24), torch.tensor([3]))
    assert torch.allclose(m._task_emb.weight[3].norm(), torch.tensor(1.0), atol=1e-5)


def test_q_dropout_only_in_train_mode_or_when_emulating_old_code():
    m = make_world_model(1, seed=0)
    with torch.no_grad():
        for p in m._Qs.parameters():
            p.normal_()
    z, a = torch.rand(64, 128), torch.rand(64, 6)
    m.eval()
    assert torch.equal(m.Q(z, a, 0, "all"), m.Q(z, a, 0, "all"))
    m.set_q_dropout_at_inference(True)
    assert not torch.equal(m.Q(z, a, 0, "all"), m.Q(z, a, 0, "all"))


def test_policy_entropy_scaled_by_active_action_dims():
    from tdmpc_lib.math import gaussian_logprob
    m = make_world_model(1, seed=0).eval()
    z, task = torch.rand(5, 128), torch.tensor([6, 6, 4, 0, 16])  # 1, 1, 2, 6, 5 active dims
    torch.manual_seed(0)
    _, info = m.pi(z, task)
    torch.manual_seed(0)  # pi draws exactly one randn_like(mu): regenerate it
    mask = m._action_masks[task]
    eps = torch.randn(5, 6) * mask
    assert torch.all(info["log_std"][0, 1:] == 0)
    g = gaussian_logprob(eps, info["log_std"])  # per-dim constant counted for all 6 dims
    active = mask.sum(-1, keepdim=True)
    assert torch.allclose(info["scaled_entropy"], -active * g, atol=1e-4)


def test_discounts_follow_the_episode_length_heuristic():
    assert discount_for_episode_length(500) == 0.99
    assert discount_for_episode_length(100) == 0.95
    assert discount_for_episode_length(1000) == 0.995
    m = make_world_model("tiny")
    assert torch.allclose(m.discount(torch.tensor([0, 29]), "cpu"), torch.full((2, 1), 0.99))
    assert len(MT30) == 30 and MT30.obs_dim == 24 and MT30.action_dim == 6
