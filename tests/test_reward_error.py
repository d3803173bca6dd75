"""The mechanism metric: a world model's reward head on stored episodes, checked against a
hand-rolled computation of the same transitions (obs_r with the action and reward stored in row
r+1), and the teacher-agreement term (zero for the teacher itself)."""
import numpy as np
import pytest
import torch

from tdmpc_lib import make_world_model
from tdmpc_lib.data import collect, open_store
from tdmpc_lib.reward_error import reward_error, reward_predictions
from tdmpc_lib.tasks import MT30


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("heldout") / "s"
    collect(out, "cartpole-balance,reacher-easy", 2, "random", seed=7, max_steps=5, progress=False)
    return open_store(out)


def test_predictions_are_the_decoded_reward_of_obs_and_next_rows_action(store):
    model = make_world_model("tiny", "mt30", seed=0)
    with torch.no_grad():  # non-trivial rewards: a random output layer
        model._reward[-1].weight.normal_(0, 0.3)
    p = reward_predictions(model, store, batch_size=7)  # batches that cut episodes
    assert len(p["predicted"]) == store.num_rows - store.num_episodes == 4 * 5
    e, r = 1, 2  # episode 1, row 2 of it: obs_2 with the action and reward stored in row 3
    row = int(store.episode_starts[e]) + r
    obs, act = torch.as_tensor(store.obs[row:row + 1]), torch.as_tensor(store.action[row + 1:row + 2])
    task = torch.as_tensor(store.task[row:row + 1]).long()
    with torch.no_grad():
        want = model.decode(model.reward(model.encode(obs, task), act, task)).item()
    k = e * 5 + r
    assert p["predicted"][k] == pytest.approx(want, abs=1e-5)  # batched matmul summation order
    assert p["reward"][k] == store.reward[row + 1] and p["task"][k] == store.task[row]
    assert np.isfinite(p["reward"]).all()  # no row-0 dummies


def test_errors_against_truth_and_teacher(store):
    model = make_world_model("tiny", "mt30", seed=0)
    mine = reward_predictions(model, store)
    err = reward_error(model, store, mine["predicted"], list(MT30.tasks))
    assert err["mse_teacher"] == 0.0  # a model agrees with itself
    assert err["mse_true"] == pytest.approx(float(np.mean((mine["predicted"] - mine["reward"]) ** 2)))
    assert set(err["per_task"]) == {"cartpole-balance", "reacher-easy"}
    assert sum(v["transitions"] for v in err["per_task"].values()) == err["transitions"] == 20
    other = make_world_model("tiny", "mt30", seed=1)
    with torch.no_grad():  # TD-MPC2 zero-initialises the reward output layer: every fresh model predicts 0
        other._reward[-1].weight.normal_(0, 0.3)
    assert reward_error(other, store, mine["predicted"])["mse_teacher"] > 0
    with pytest.raises(ValueError, match="compute them on the same store"):
        reward_error(model, store, mine["predicted"][:-1])
