"""MT30 environments: dims, wrapper semantics, episode seeding, custom rewards and models."""
import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # before dm_control is imported: offscreen rendering

import math

import numpy as np
import pytest
from dm_control.suite import common
from lxml import etree

from tdmpc_lib import tasks
from tdmpc_lib.envs import make_env
from tdmpc_lib.envs.custom import CUSTOM_TASKS, models

SEED = 1


@pytest.fixture(scope="module")
def envs():
    """Every MT30 task's env, built once for the module (about 0.1 s each)."""
    return {task: make_env(task, SEED) for task in tasks.MT30_TASKS}


# --- dims, stepping and the episode ------------------------------------------------------------

@pytest.mark.parametrize("task", tasks.MT30_TASKS)
def test_dims_match_task_table_and_step_works(envs, task):
    env = envs[task]
    i = tasks.MT30_TASKS.index(task)
    assert (env.obs_dim, env.action_dim) == (tasks.MT30_OBS_DIMS[i], tasks.MT30_ACTION_DIMS[i])
    obs = env.reset()
    assert obs.shape == (env.obs_dim,) and obs.dtype == np.float32
    padded = np.zeros(max(tasks.MT30_ACTION_DIMS))  # a multi-task action, sliced by the env
    obs, reward, done, info = env.step(padded)
    assert obs.shape == (env.obs_dim,) and obs.dtype == np.float32
    assert isinstance(reward, float) and 0.0 <= reward <= 2.0
    assert done is False and info == {"success": 0.0, "terminated": 0.0}


def test_episode_ends_after_exactly_500_agent_steps():
    env = make_env("pendulum-swingup", SEED)
    env.reset()
    dones = [env.step(np.zeros(1))[2] for _ in range(500)]
    assert not any(dones[:-1]) and dones[-1]
    assert env.dm_env.physics.data.time == pytest.approx(1000 * 0.02)  # 1000 control steps
    assert env.dm_env.step(np.zeros(1)).first()  # dm_control's time limit ended there too
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(1))
    env.reset()
    assert env.step(np.zeros(1))[2] is False


def test_step_before_reset_is_an_error():
    with pytest.raises(RuntimeError, match="reset"):
        make_env("pendulum-spin", SEED).step(np.zeros(1))


def test_reward_is_sum_of_two_control_steps_with_the_same_action():
    env, manual = make_env("cheetah-jump", SEED), make_env("cheetah-jump", SEED)
    env.reset()
    manual.dm_env.reset()
    rng = np.random.default_rng(0)
    for _ in range(5):
        action = rng.uniform(-1, 1, 6)
        obs, reward, _, _ = env.step(action)
        first, second = manual.dm_env.step(action), manual.dm_env.step(action)
        assert reward == first.reward + second.reward and reward > 0
        manual_obs = np.concatenate([np.ravel(v) for v in second.observation.values()])
        np.testing.assert_array_equal(obs, manual_obs.astype(np.float32))


def test_padded_action_is_sliced_to_the_task_action():
    env, manual = make_env("pendulum-spin", SEED), make_env("pendulum-spin", SEED)
    env.reset()
    manual.dm_env.reset()
    obs, reward, _, _ = env.step(np.array([0.7, 1, 1, 1, 1, 1]))
    first, second = manual.dm_env.step(np.array([0.7])), manual.dm_env.step(np.array([0.7]))
    assert reward == first.reward + second.reward
    manual_obs = np.concatenate([np.ravel(v) for v in second.observation.values()])
    np.testing.assert_array_equal(obs, manual_obs.astype(np.float32))


@pytest.mark.parametrize("task", ["pendulum-swingup", "walker-walk", "cheetah-run-front",
                                  "reacher-three-hard", "cup-spin", "hopper-hop-backwards"])
def test_env_built_for_episode_k_starts_like_the_kth_sequential_episode(task):
    sequential = make_env(task, SEED)
    rng = np.random.default_rng(0)
    first_obs = []
    for _ in range(3):  # episodes 0, 1, 2 of one env, with some steps in each
        first_obs.append(sequential.reset())
        for _ in range(20):
            sequential.step(rng.uniform(-1, 1, sequential.action_dim))
    assert not np.array_equal(first_obs[0], first_obs[1])
    for k, expected in enumerate(first_obs):
        np.testing.assert_array_equal(make_env(task, SEED, episode=k).reset(), expected)


def test_unknown_task_is_a_value_error():
    for name in ("walker-fly", "mw-assembly", "cup_catch"):
        with pytest.raises(ValueError, match=f"unknown task '{name}'.*walker-stand"):
            make_env(name)


def test_render_returns_a_uint8_frame(envs):
    env = envs["cheetah-run"]
    env.reset()
    frame = env.render(width=64, height=64)
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 1


def test_random_actions_give_finite_returns_in_range_on_custom_tasks():
    rng = np.random.default_rng(0)
    for task in CUSTOM_TASKS:
        env = make_env(task, SEED)
        env.reset()
        rewards = [env.step(rng.uniform(-1, 1, env.action_dim))[1] for _ in range(500)]
        assert np.all(np.isfinite(rewards)), task
        assert min(rewards) >= 0 and max(rewards) <= 2 and 0 <= sum(rewards) <= 1000, task
        # dm_control's own time limit ended its episode with the same (1000th) control step, so
        # the next dm_env step starts a new episode.
        assert env.dm_env.step(np.zeros(env.action_dim)).first(), task


# --- custom rewards on constructed states (independent of the task code) ----------------------

def gaussian_tol(x, lower, upper, margin):
    """dm_control tolerance, gaussian sigmoid with value 0.1 at the margin."""
    if lower <= x <= upper:
        return 1.0
    d = (lower - x if x < lower else x - upper) / margin
    return 0.1 ** (d * d)


def linear_tol(x, lower, upper, margin, value_at_margin):
    """dm_control tolerance, linear sigmoid."""
    if lower <= x <= upper:
        return 1.0
    s = (lower - x if x < lower else x - upper) / margin * (1 - value_at_margin)
    return 1 - s if s < 1 else 0.0


def reward_at(env, qpos=None, qvel=None):
    """Task reward of one control step at a state: zero qpos/qvel except the named entries."""
    physics = env.physics
    physics.data.qpos[:] = 0
    physics.data.qvel[:] = 0
    for name, value in (qpos or {}).items():
        physics.named.data.qpos[name] = value
    for name, value in (qvel or {}).items():
        physics.named.data.qvel[name] = value
    physics.forward()
    return env.dm_env.task.get_reward(physics)


def walker_expected(height, upright_angle, vx, speed):
    standing = gaussian_tol(height, 1.2, math.inf, 0.6)
    stand = (3 * standing + (1 + math.cos(upright_angle)) / 2) / 4
    return stand * (5 * linear_tol(vx, -math.inf, -speed, speed / 2, 0.5) + 1) / 6


@pytest.mark.parametrize("task, speed", [("walker-walk-backwards", 1), ("walker-run-backwards", 8)])
def test_walker_backwards_reward(task, speed):
    env = make_env(task, SEED)
    env.reset()
    # Torso at its model height 1.3 + rootz; zz of its rotation is cos(rooty).
    assert reward_at(env, qvel={"rootx": -speed}) == pytest.approx(1.0)
    for rootz, rooty, vx in [(0, 0, -0.75 * speed), (-0.4, 0, -speed), (-0.4, 1.0, 0.0),
                             (0.2, 0.3, speed), (-0.6, 2.0, -1.2 * speed)]:
        got = reward_at(env, {"rootz": rootz, "rooty": rooty}, {"rootx": vx})
        assert got == pytest.approx(walker_expected(1.3 + rootz, rooty, vx, speed), rel=1e-12)
    assert reward_at(env, qvel={"rootx": -0.75 * speed}) == pytest.approx((5 * 0.75 + 1) / 6)


# Cheetah at zero joint angles: torso at 0.7 + rootz; the feet's body frames sit 0.39 (bfoot)
# and 0.42 (ffoot) below the torso (sums of the body offsets in cheetah.xml).
CHEETAH_TORSO, CHEETAH_FOOT_DROP = 0.7, {"bfoot": 0.39, "ffoot": 0.42}


def test_cheetah_run_backwards_reward():
    env = make_env("cheetah-run-backwards", SEED)
    env.reset()
    for speed, expected in [(-4, 0.5), (-8, 1.0), (-10, 1.0), (-2, 0.25), (0, 0.0), (3, 0.0)]:
        assert reward_at(env, qvel={"rootx": speed}) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("task, foot", [("cheetah-run-front", "bfoot"),
                                        ("cheetah-run-back", "ffoot")])
def test_cheetah_run_one_foot_reward(task, foot):
    env = make_env(task, SEED)
    env.reset()
    # Torso (1.7) and both feet (1.31, 1.28) above 1.2; speed 3 is half-way to 6.
    assert reward_at(env, {"rootz": 1.0}, {"rootx": 3}) == pytest.approx(3.5 / 6)
    for rootz, speed in [(0.0, 6.0), (0.3, 1.5), (0.6, 7.0), (0.0, -1.0)]:
        torso = CHEETAH_TORSO + rootz
        up = (3 * gaussian_tol(torso - CHEETAH_FOOT_DROP[foot], 1.2, math.inf, 0.6)
              + 2 * gaussian_tol(torso, 1.2, math.inf, 0.6)) / 5
        expected = up * (5 * linear_tol(speed, 6, math.inf, 6, 0) + 1) / 6
        got = reward_at(env, {"rootz": rootz}, {"rootx": speed})
        assert got == pytest.approx(expected, rel=1e-12)


def test_cheetah_jump_reward():
    env = make_env("cheetah-jump", SEED)
    env.reset()
    assert reward_at(env, {"rootz": 1.0}) == pytest.approx(1.0)
    for rootz, speed in [(0.0, 0.0), (0.2, 0.75), (0.5, -0.25), (0.1, 2.0)]:
        torso = CHEETAH_TORSO + rootz
        stands = [(5 * gaussian_tol(torso - CHEETAH_FOOT_DROP[f] / 2, 1.2, math.inf, 0.6)
                   + linear_tol(speed, -0.5, 0.5, 0.5, 0)) / 6 for f in ("bfoot", "ffoot")]
        got = reward_at(env, {"rootz": rootz}, {"rootx": speed})
        assert got == pytest.approx(sum(stands) / 2, rel=1e-12)


def test_hopper_hop_backwards_reward():
    env = make_env("hopper-hop-backwards", SEED)
    env.reset()
    reward_at(env)  # the straight pose: torso COM 0.6-2 above the foot COM, so "standing"
    data = env.physics.named.data
    assert 0.6 <= data.xipos["torso", "z"] - data.xipos["foot", "z"] <= 2
    for speed, expected in [(-1.5, 1.0), (-1.0, 1.0), (-0.75, 0.75), (-0.5, 0.5), (0.0, 0.0),
                            (1.0, 0.0)]:
        assert reward_at(env, qvel={"rootx": speed}) == pytest.approx(expected, abs=1e-12)
    # Folded at hip and knee: the torso COM under 0.6 above the foot's, so no reward at any speed.
    assert reward_at(env, {"hip": -2.5, "knee": 2.5}, {"rootx": -2.0}) == 0.0
    assert data.xipos["torso", "z"] - data.xipos["foot", "z"] < 0.6


@pytest.mark.parametrize("task, target_radius", [("reacher-three-easy", 0.05),
                                                  ("reacher-three-hard", 0.015)])
def test_reacher_three_reward(task, target_radius):
    env = make_env(task, SEED)
    env.reset()
    target = env.physics.named.model.geom_pos["target"]
    reach = target_radius + 0.01  # target + finger radius
    # All joints at 0: the finger is at (0.27, 0); shoulder0 = pi/2 turns it to (0, 0.27).
    for shoulder0, finger in [(0.0, (0.27, 0.0)), (math.pi / 2, (0.0, 0.27))]:
        for offset, expected in [(0.9 * reach, 1.0), (1.1 * reach, 0.0)]:
            target[:2] = finger[0] + offset * 0.6, finger[1] + offset * 0.8
            assert reward_at(env, {"shoulder0": shoulder0}) == expected


def test_cup_spin_reward():
    env = make_env("cup-spin", SEED)
    env.reset()
    # Cup joints at 0: the target box is centred at (x, z) = (0, 0.55); the ball at (0, 0.2) + qpos.
    assert reward_at(env, {"ball_z": 0.35}, {"ball_x": 8.0, "ball_z": 8.0}) == 0.0  # in the cup
    for ball_x, ball_z, vx, vz in [(0.0, 0.0, 3.0, -4.0), (0.6, 0.0, 6.0, 0.0),
                                   (0.1, 0.3, 0.0, 0.0), (-0.3, 0.6, -1.0, 2.0)]:
        dist = math.hypot(ball_x, 0.2 + ball_z - 0.55)
        expected = (linear_tol(dist, 0.5, math.inf, 0.25, 0.5)
                    + 2 * linear_tol(math.hypot(vx, vz), 6, math.inf, 3, 0.5)) / 3
        got = reward_at(env, {"ball_x": ball_x, "ball_z": ball_z}, {"ball_x": vx, "ball_z": vz})
        assert got == pytest.approx(expected, rel=1e-12)


def test_cup_spin_starts_mostly_with_the_ball_in_the_cup():
    env = make_env("cup-spin", SEED)
    in_cup = []
    for _ in range(100):
        env.reset()
        assert env.physics.data.ncon == 0
        in_cup.append(env.physics.in_target())
    assert 0.8 <= np.mean(in_cup) < 1.0  # 90% must start inside; the rest land anywhere


def test_pendulum_spin_reward():
    env = make_env("pendulum-spin", SEED)
    env.reset()
    for omega, expected in [(9, 1.0), (-9, 1.0), (12, 1.0), (4.5, 0.5), (-6.75, 0.75), (0, 0.0)]:
        assert reward_at(env, qvel={"hinge": omega}) == pytest.approx(expected, abs=1e-12)


# --- custom models vs stock --------------------------------------------------------------------

def attribute_differences(stock, custom):
    """{(tag, name, attribute)} where two structurally identical trees differ."""
    stock_elements, custom_elements = list(stock.iter()), list(custom.iter())
    assert [e.tag for e in stock_elements] == [e.tag for e in custom_elements]
    return {(s.tag, s.get("name"), key)
            for s, c in zip(stock_elements, custom_elements)
            for key in set(s.attrib) | set(c.attrib) if s.get(key) != c.get(key)}


@pytest.mark.parametrize("stock_file, build, geom, size", [
    ("walker.xml", models.walker_model, "floor", "500 .8 .2"),
    ("cheetah.xml", models.cheetah_model, "ground", "200 .8 .5"),
])
def test_walker_and_cheetah_models_differ_only_in_floor_size(stock_file, build, geom, size):
    stock = etree.fromstring(common.read_model(stock_file))
    xml, assets = build()
    custom = etree.fromstring(xml)
    assert attribute_differences(stock, custom) == {("geom", geom, "size")}
    assert custom.xpath(f".//geom[@name='{geom}']")[0].get("size") == size
    assert assets is common.ASSETS


def test_custom_tasks_use_the_custom_models(envs):
    def size(task, geom):
        return envs[task].physics.named.model.geom_size[geom].tolist()

    assert size("walker-run-backwards", "floor") == [500, .8, .2]
    assert size("walker-run", "floor") == [250, .8, .2]
    assert size("cheetah-jump", "ground") == [200, .8, .5]
    assert size("cheetah-run", "ground") == [100, .8, .5]
    assert envs["reacher-easy"].physics.model.nq == 2


def test_three_link_reacher_model(envs):
    model = envs["reacher-three-easy"].physics.model
    joints = [model.joint(i).name for i in range(model.njnt)]
    assert joints == ["shoulder0", "shoulder1", "wrist"]
    assert [model.actuator(i).name for i in range(model.nu)] == joints
    assert model.actuator_trnid[:, 0].tolist() == [0, 1, 2]
    assert model.jnt_limited.tolist() == [0, 1, 1]
    np.testing.assert_allclose(model.jnt_range[1:], np.deg2rad([[-80, 80], [-80, 80]]))
    # Everything but the arm chain and the motors is stock.
    stock = etree.fromstring(common.read_model("reacher.xml"))
    custom = etree.fromstring(models.reacher_three_links_model()[0])
    for root, arm in ((stock, "arm"), (custom, "arm0")):
        for element in root.xpath(f".//body[@name='{arm}'] | .//actuator"):
            element.getparent().remove(element)
    assert attribute_differences(stock, custom) == set()
