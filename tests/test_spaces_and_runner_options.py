"""The one-liner with the newer options: the spaces ppo_for_env understands (images,
MultiDiscrete) and the ones it refuses, RND's warm-up, LR annealing over `steps`, and the
statistics shown in the progress bar."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from AsyncTools.AsyncPPO import AsyncPPO, check_spaces, format_stats, ppo_for_env, space_options
from PPO import PPO
from PPO.ActorCritic import NatureCNN


class SpacesEnv(gym.Env):
    """Random observations of any Box space and any action space; episodes of 8 steps.
    Records the actions it receives."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space, self.action_space = observation_space, action_space
        self.received: list = []
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self.received.append(np.asarray(action))
        self.t += 1
        return self.observation_space.sample(), 1.0, self.t >= 8, False, {}


FRAMES = gym.spaces.Box(0, 255, shape=(4, 84, 84), dtype=np.uint8)
VECTOR = gym.spaces.Box(-1, 1, shape=(3,), dtype=np.float32)


def test_space_options_for_every_supported_space():
    assert space_options(VECTOR, gym.spaces.Discrete(4)) == dict(
        observ_dim=3, is_continuous=False, action_dim=4
    )
    assert space_options(FRAMES, gym.spaces.MultiDiscrete([3, 2])) == dict(
        observ_dim=4 * 84 * 84,
        observation_shape=(4, 84, 84),
        is_continuous=False,
        action_dim=5,
        action_nvec=(3, 2),
    )
    float_cube = gym.spaces.Box(0, 1, shape=(2, 3, 4), dtype=np.float32)  # not frames: flattened
    assert space_options(float_cube, gym.spaces.Box(-1, 1, (2,))) == dict(
        observ_dim=24, is_continuous=True, action_dim=2
    )


@pytest.mark.parametrize(
    "action_space",
    [
        gym.spaces.MultiBinary([2, 2]),
        gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3))),
        gym.spaces.Box(-1, 1, shape=(2, 2)),
        gym.spaces.MultiDiscrete([[2, 3], [4, 5]]),
    ],
)
def test_unsupported_action_spaces_are_named(action_space):
    with pytest.raises(
        TypeError,
        match=r"action_space: only Discrete, 1-D MultiDiscrete, 1-D "
        r"MultiBinary and 1-D Box",
    ):
        ppo_for_env(SpacesEnv(VECTOR, action_space), device="cpu")
    with pytest.raises(
        TypeError,
        match=str(action_space)
        .replace("(", r"\(")
        .replace(")", r"\)")
        .replace("[", r"\[")
        .replace("]", r"\]"),
    ):
        ppo_for_env(SpacesEnv(VECTOR, action_space), device="cpu")


def test_unsupported_observation_space_is_named():
    obs = gym.spaces.Text(5)
    with pytest.raises(TypeError, match=r"observation_space: only Box observations.*got Text"):
        ppo_for_env(SpacesEnv(obs, gym.spaces.Discrete(2)), device="cpu")
    vector = gym.vector.SyncVectorEnv(
        [lambda: SpacesEnv(gym.spaces.Dict({"a": VECTOR}), gym.spaces.Discrete(2))] * 2
    )
    with pytest.raises(TypeError, match=r"VectorEnv must flatten its own.*got Dict"):
        ppo_for_env(vector, device="cpu")


def test_multidiscrete_env_trains_and_receives_valid_actions():
    env = SpacesEnv(VECTOR, gym.spaces.MultiDiscrete([3, 2, 4]))
    ppo = ppo_for_env(env, seed=0, device="cpu", batch_size=64, mini_batch_size=32)
    assert ppo.action_nvec == (3, 2, 4) and ppo.action_dim == 9
    runner = AsyncPPO(env, ppo, num_envs=4, steps=128, progress_bar=False, backend="loop")
    runner.run()
    received = np.stack([a for copy in runner.env.envs for a in copy.received])
    assert received.shape[1] == 3 and len(received) >= 128
    assert all(env.action_space.contains(a.astype(np.int64)) for a in received)
    assert ppo.stats["num_samples"] >= 64


def test_image_env_gets_the_cnn_and_trains():
    env = SpacesEnv(FRAMES, gym.spaces.Discrete(3))
    ppo = ppo_for_env(env, seed=0, device="cpu", batch_size=32, mini_batch_size=16, k_epochs=1)
    assert isinstance(ppo.policy.torso, NatureCNN) and ppo.observation_shape == (4, 84, 84)
    runner = AsyncPPO(env, ppo, num_envs=2, steps=32, progress_bar=False, backend="loop", num_steps=16)
    runner.run()
    assert ppo.stats["num_samples"] >= 32 and np.isfinite(ppo.stats["value_loss"])


def test_check_spaces_names_a_multidiscrete_mismatch():
    ppo = PPO(False, 3, 5, action_nvec=[2, 3], device="cpu")
    check_spaces(VECTOR, gym.spaces.MultiDiscrete([2, 3]), ppo)
    with pytest.raises(
        ValueError,
        match=r"action_dim: the PPO was built with action_dim=5, "
        r"action_nvec=\[2, 3\], but the env's action space",
    ):
        check_spaces(VECTOR, gym.spaces.MultiDiscrete([3, 2]), ppo)
    with pytest.raises(ValueError, match="action_dim"):
        check_spaces(VECTOR, gym.spaces.Discrete(5), ppo)


def test_rnd_observation_statistics_are_warmed_up_before_the_first_round():
    env = gym.make("MountainCar-v0")
    ppo = ppo_for_env(env, use_RND=True, seed=0, device="cpu", batch_size=64, mini_batch_size=32)
    runner = AsyncPPO(env, ppo, num_envs=4, steps=64, num_steps=16, rnd_warmup_steps=10, progress_bar=False)
    runner.train_round()
    # 4 reset observations + 10 random steps of 4 copies (every copy valid: no episode ends
    # in 10 steps), then the round's 64 next-states scored in learn()
    assert float(ppo.rnd.obs_normalizer.count) == 4 + 40 + 64
    assert runner.total_steps == 64  # warm-up steps are not training steps
    with pytest.raises(ValueError, match="rnd_warmup_steps"):
        AsyncPPO(env, ppo, num_envs=2, rnd_warmup_steps=-1)


def test_anneal_lr_runs_over_the_runners_steps():
    env = gym.make("CartPole-v1")
    ppo = ppo_for_env(env, anneal_lr=True, lr=1e-3, seed=0, device="cpu", batch_size=64, mini_batch_size=64)
    runner = AsyncPPO(env, ppo, num_envs=4, num_steps=32, steps=512, progress_bar=False)
    assert ppo.total_steps == 512
    rates, learned = [], 0
    while runner.total_steps < 512:
        runner.train_round()
        rates.append(ppo.stats["learning_rate"])
        np.testing.assert_allclose(rates[-1], 1e-3 * (1 - learned / 512))
        learned += int(ppo.stats["num_samples"])
    assert rates[0] == 1e-3 and rates[-1] < 0.3e-3


def test_format_stats_shows_the_learning_statistics():
    text = format_stats(
        dict(
            policy_loss=-0.01234,
            value_loss=12.5,
            entropy=0.6931,
            approx_kl=0.00456,
            clip_fraction=0.125,
            explained_variance=0.91,
            num_samples=2048.0,
        )
    )
    assert text == "pi=-0.012 v=12.5 ent=0.693 kl=0.0046 clip=0.12 ev=0.91"
    assert "int=" in format_stats(dict(intrinsic_reward=0.5))


def test_deterministic_actions_are_clipped_to_the_bounds_sampled_ones_are_not():
    ppo = ppo_for_env(gym.make("Pendulum-v1"), seed=0, device="cpu", log_std_init=1.0)
    with torch.no_grad():
        ppo.policy.actor[-1].bias.fill_(5.0)  # a mean far outside [-2, 2]
    states = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    deterministic = ppo.get_action(states, deterministic=True)
    assert deterministic.min() >= -2.0 and deterministic.max() <= 2.0
    assert np.any(deterministic == 2.0)
    assert ppo.get_action(states).max() > 2.0  # the learner scores exactly what it sampled


def test_a_gymnasium_vector_env_is_used_as_the_collector():
    for mode in ("sync", "vector_entry_point"):
        vector_env = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode=mode)
        ppo = ppo_for_env(vector_env, seed=0, device="cpu", batch_size=128, mini_batch_size=64)
        assert (ppo.observ_dim, ppo.action_dim) == (4, 2)  # one copy's spaces
        runner = AsyncPPO(vector_env, ppo, steps=300, num_steps=32, progress_bar=False)
        assert runner.num_envs == 4 and runner.env.backend.vector_env is vector_env
        runner.run()
        assert runner.total_steps >= 300 and runner.episode_returns
        assert len(runner.evaluate(episodes=1)) == 1  # a single copy made from the spec
        runner.close()


def test_a_vector_env_that_does_not_fit_is_a_clear_error():
    vector_env = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    ppo = ppo_for_env(vector_env, seed=0, device="cpu")
    with pytest.raises(
        ValueError,
        match=r"num_envs: the VectorEnv passed as env has 4 copies, "
        r"but num_envs=8",
    ):
        AsyncPPO(vector_env, ppo, num_envs=8, progress_bar=False)
    with pytest.raises(ValueError, match="leave backend='auto', got 'loop'"):
        AsyncPPO(vector_env, ppo, backend="loop", progress_bar=False)
    same_step = gym.make_vec(
        "CartPole-v1",
        num_envs=2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )
    with pytest.raises(ValueError, match="only gymnasium's default NEXT_STEP is supported"):
        AsyncPPO(same_step, ppo, progress_bar=False)


class SwitchesEnv(gym.Env):
    """Three switches (MultiBinary actions): reward = how many match the target (1, 0, 1)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiBinary(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        reward = float(np.sum(np.asarray(action) == np.array([1, 0, 1])))
        return np.zeros(2, np.float32), reward, False, self.t >= 8, {}


def test_multibinary_actions_are_independent_on_off_choices_and_learn():
    assert space_options(VECTOR, gym.spaces.MultiBinary(3)) == dict(
        observ_dim=3, is_continuous=False, action_dim=6, action_nvec=(2, 2, 2)
    )
    ppo = ppo_for_env(SwitchesEnv(), seed=0, device="cpu", batch_size=256, mini_batch_size=64, lr=1e-2)
    runner = AsyncPPO(
        SwitchesEnv, ppo, num_envs=8, num_steps=32, steps=6000, progress_bar=False, backend="loop"
    )
    runner.run()
    np.testing.assert_array_equal(
        ppo.get_action(np.zeros((1, 2), np.float32), deterministic=True), [[1, 0, 1]]
    )
    assert runner.episode_returns[-1] >= 20  # 8 steps x up to 3 matches
