"""AsyncPPO: space checks, action bounds from the env, run() accounting and reproducibility."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ActionRecorderEnv, CounterEnv, DictObsEnv

from AsyncTools.AsyncPPO import AsyncPPO, check_spaces, ppo_for_env
from PPO import PPO


def small_ppo(is_continuous=False, observ_dim=4, action_dim=2, **options):
    defaults = dict(batch_size=256, mini_batch_size=128, k_epochs=2, seed=0, device="cpu")
    return PPO(is_continuous, observ_dim, action_dim, **{**defaults, **options})


# ------------------------------------------------------------ space checks
def test_observ_dim_mismatch(cartpole):
    with pytest.raises(ValueError, match="observ_dim"):
        AsyncPPO(cartpole, small_ppo(observ_dim=3), num_envs=2, steps=10, progress_bar=False)


def test_discrete_env_with_continuous_ppo(cartpole):
    with pytest.raises(ValueError, match="is_continuous"):
        AsyncPPO(cartpole, small_ppo(is_continuous=True), num_envs=2, steps=10, progress_bar=False)


def test_continuous_env_with_discrete_ppo():
    env = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match="is_continuous"):
        AsyncPPO(env, small_ppo(observ_dim=3, action_dim=1), num_envs=2, steps=10, progress_bar=False)


def test_action_dim_mismatch_discrete(cartpole):
    with pytest.raises(ValueError, match="action_dim"):
        AsyncPPO(cartpole, small_ppo(action_dim=3), num_envs=2, steps=10, progress_bar=False)


def test_action_dim_mismatch_continuous():
    env = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match="action_dim"):
        AsyncPPO(env, small_ppo(True, observ_dim=3, action_dim=2), num_envs=2, steps=10, progress_bar=False)


def test_dict_observation_space_is_flattened_for_a_hand_built_learner():
    runner = AsyncPPO(DictObsEnv(), small_ppo(), num_envs=2, steps=10, progress_bar=False)
    assert runner.collector.observation_space == gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    assert len(runner.run()) >= 10  # one-step episodes
    with pytest.raises(ValueError, match=r"observ_dim: the PPO was built with observ_dim=3.*\(4,\)"):
        AsyncPPO(DictObsEnv(), small_ppo(observ_dim=3), num_envs=2, steps=10, progress_bar=False)


def test_check_spaces_accepts_matching_spaces_only(cartpole):
    assert check_spaces(cartpole.observation_space, cartpole.action_space, small_ppo()) is None
    with pytest.raises(
        ValueError,
        match=r"action_dim: the PPO was built with action_dim=2, but "
        r"the env's action space is Discrete\(3\)",
    ):
        check_spaces(cartpole.observation_space, gym.spaces.Discrete(3), small_ppo())


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_envs"):
        AsyncPPO(CounterEnv(), small_ppo(observ_dim=2), num_envs=0, steps=10)
    with pytest.raises(ValueError, match="steps"):
        AsyncPPO(CounterEnv(), small_ppo(observ_dim=2), num_envs=2, steps=0)
    with pytest.raises(TypeError, match="ppo"):
        AsyncPPO(CounterEnv(), object(), num_envs=2, steps=10)


# ----------------------------------------------------------- action bounds
def test_continuous_ppo_gets_pendulum_bounds():
    env = gym.make("Pendulum-v1")
    ppo = small_ppo(True, observ_dim=3, action_dim=1)
    np.testing.assert_array_equal(ppo.policy.action_center.numpy(), [0.0])
    np.testing.assert_array_equal(ppo.policy.action_half_range.numpy(), [1.0])
    AsyncPPO(env, ppo, num_envs=2, steps=10, progress_bar=False)
    np.testing.assert_allclose(ppo.policy.action_center.numpy(), [0.0])
    np.testing.assert_allclose(ppo.policy.action_half_range.numpy(), [2.0])
    assert ppo.action_bounds_given
    low, high = env.action_space.low, env.action_space.high
    np.testing.assert_allclose(ppo.policy.action_center.numpy(), (low + high) / 2)
    np.testing.assert_allclose(ppo.policy.action_half_range.numpy(), (high - low) / 2)


def test_continuous_ppo_gets_asymmetric_bounds():
    ppo = small_ppo(True, observ_dim=2, action_dim=2)
    AsyncPPO(
        ActionRecorderEnv(low=(-1.0, 0.0), high=(1.0, 2.0)), ppo, num_envs=2, steps=10, progress_bar=False
    )
    np.testing.assert_allclose(ppo.policy.action_center.numpy(), [0.0, 1.0])
    np.testing.assert_allclose(ppo.policy.action_half_range.numpy(), [1.0, 1.0])
    # A deterministic action of a fresh policy sits near the centre of the range.
    action = ppo.get_action(np.zeros((1, 2), dtype=np.float32), deterministic=True)
    np.testing.assert_allclose(action, [[0.0, 1.0]], atol=0.05)


def test_given_action_scaling_is_kept():
    env = gym.make("Pendulum-v1")
    ppo = small_ppo(True, observ_dim=3, action_dim=1, action_scaling=0.5)
    AsyncPPO(env, ppo, num_envs=2, steps=10, progress_bar=False)
    np.testing.assert_allclose(ppo.policy.action_center.numpy(), [0.0])
    np.testing.assert_allclose(ppo.policy.action_half_range.numpy(), [0.5])


def test_ppo_for_env_fits_the_env():
    ppo = ppo_for_env(gym.make("Pendulum-v1"), seed=0, device="cpu")
    assert ppo.is_continuous and ppo.observ_dim == 3 and ppo.action_dim == 1
    np.testing.assert_allclose(ppo.policy.action_half_range.numpy(), [2.0])
    ppo = ppo_for_env(gym.make("CartPole-v1"), seed=0, device="cpu")
    assert not ppo.is_continuous and ppo.observ_dim == 4 and ppo.action_dim == 2
    ppo = ppo_for_env(DictObsEnv(), device="cpu")  # flattened, and recorded as such
    assert ppo.observ_dim == 4 and ppo.observation_space == {
        "type": "Dict",
        "spaces": [["x", {"type": "Box", "shape": [4], "dtype": "float32"}]],
    }


# -------------------------------------------------------------------- run
def test_run_stops_after_steps_and_returns_episode_returns():
    num_envs = 4
    runner = AsyncPPO(
        gym.make("CartPole-v1"),
        small_ppo(),
        num_envs=num_envs,
        steps=600,
        progress_bar=False,
        rollout="episodes",
    )
    returns = runner.run()
    assert runner.total_steps >= 600
    assert returns is runner.episode_returns
    assert len(returns) > 0 and len(returns) % num_envs == 0
    assert len(runner.episode_lengths) == len(returns)
    assert sum(runner.episode_lengths) == runner.total_steps
    # Stops after the round that crosses `steps`: one round has at most num_envs * 500 steps,
    # and the rounds before it came to less than `steps`.
    last_round = sum(runner.episode_lengths[-num_envs:])
    assert runner.total_steps - last_round < 600
    # CartPole pays 1 per step, so each return equals its episode's length.
    np.testing.assert_array_equal(returns, runner.episode_lengths)
    assert all(1 <= length <= 500 for length in runner.episode_lengths)
    # learn() ran: 600 steps > batch_size 256.
    assert runner.ppo.stats["num_samples"] >= 256
    runner.close()


def test_run_counts_exact_steps_on_counter_env():
    # Every episode lasts exactly 5 steps: 3 envs -> 15 steps per round, 4 rounds for 50 steps.
    ppo = small_ppo(observ_dim=2, batch_size=16, mini_batch_size=8)
    runner = AsyncPPO(
        CounterEnv(episode_length=5), ppo, num_envs=3, steps=50, progress_bar=False, rollout="episodes"
    )
    returns = runner.run()
    assert runner.total_steps == 60
    assert runner.episode_lengths == [5] * 12
    assert returns == [1.0 + 2 + 3 + 4 + 5] * 12
    assert "policy_loss" in ppo.stats
    # run() again continues from where it stopped: nothing to do.
    assert runner.run() == returns
    runner.steps = 75
    runner.run()
    assert runner.total_steps == 75 and len(runner.episode_returns) == 15


def test_fixed_horizon_run_counts_transitions_not_reset_rows():
    # num_steps=6 on 5-step episodes: 5 transitions and 1 autoreset row per env and round.
    ppo = small_ppo(observ_dim=2, batch_size=16, mini_batch_size=8)
    runner = AsyncPPO(
        CounterEnv(episode_length=5),
        ppo,
        num_envs=3,
        steps=50,
        progress_bar=False,
        rollout="steps",
        num_steps=6,
    )
    returns = runner.run()
    assert runner.total_steps == 60
    assert runner.episode_lengths == [5] * 12
    assert returns == [1.0 + 2 + 3 + 4 + 5] * 12
    assert ppo.stats["num_samples"] >= 16


def test_one_liner_defaults_use_the_native_backend_and_fixed_horizon():
    runner = AsyncPPO(gym.make("CartPole-v1"), small_ppo(), num_envs=4, steps=10, progress_bar=False)
    assert runner.rollout == "steps" and runner.num_steps == 64
    assert runner.env.backend_name == "VectorEnvBackend"
    with pytest.raises(ValueError, match="rollout"):
        AsyncPPO(gym.make("CartPole-v1"), small_ppo(), num_envs=4, rollout="episode")


def _episode_returns(seed: int) -> list[float]:
    ppo = PPO(False, 4, 2, batch_size=256, mini_batch_size=128, k_epochs=2, seed=seed, device="cpu")
    runner = AsyncPPO(gym.make("CartPole-v1"), ppo, num_envs=4, steps=2000, progress_bar=False)
    returns = list(runner.run())
    weights = {k: v.clone() for k, v in ppo.policy.state_dict().items()}
    runner.close()
    return returns, weights


def test_same_seed_same_run_on_cpu():
    (a, wa), (b, wb), (c, _) = _episode_returns(3), _episode_returns(3), _episode_returns(4)
    assert len(a) >= 4 and a == b
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert a != c


def test_explicit_seed_overrides_ppo_seed():
    def first_states(seed, ppo_seed):
        runner = AsyncPPO(
            gym.make("CartPole-v1"),
            small_ppo(seed=ppo_seed),
            num_envs=3,
            steps=10,
            seed=seed,
            progress_bar=False,
        )
        return runner.env.reset()[0]

    np.testing.assert_array_equal(first_states(11, 0), first_states(11, 1))
    assert not np.array_equal(first_states(11, 0), first_states(12, 0))
    # Default: the PPO's seed.
    np.testing.assert_array_equal(first_states(None, 5), first_states(5, 0))
