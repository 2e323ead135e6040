"""backend="envpool": task ids, the Atari game scores, the collector contract and the one-liner
(skipped where envpool is not installed; requirements-test.txt installs it)."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.collectors import make_collector

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("envpool") is None, reason="envpool is not installed"
)


def test_ids_name_envpools_tasks():
    from AsyncTools.envpool_backend import envpool_task_id

    assert envpool_task_id("ALE/Pong-v5") == envpool_task_id("PongNoFrameskip-v4") == "Pong-v5"
    assert envpool_task_id("HalfCheetah-v5") == "HalfCheetah-v5"
    with pytest.raises(ValueError, match=r"env: EnvPool has no task 'NoSuchGame-v0'"):
        envpool_task_id("NoSuchGame-v0")


def test_envpool_needs_an_env_id():
    with pytest.raises(TypeError, match="env: backend='envpool' builds the copies itself from an env id"):
        make_collector(gym.make("CartPole-v1"), ppo_for_env("CartPole-v1"), 2, backend="envpool", seed=0)


def test_game_scores_add_the_unclipped_rewards_of_whole_games():
    """A fake EnvPool Atari pool of two copies: copy 0 loses a life (terminated, game goes on),
    then its game ends (info terminated), then its next game; copy 1 is cut by the time limit."""
    from AsyncTools.envpool_backend import EnvPoolVectorEnv

    class FakePool(gym.vector.VectorEnv):
        num_envs = 2
        single_observation_space = observation_space = gym.spaces.Box(0, 1, (2, 1))
        single_action_space = action_space = gym.spaces.Discrete(2)
        script = [  # rewards (unclipped), terminated, truncated, game over
            ([3.0, 10.0], [False, False], [False, False], [0, 0]),
            ([-2.0, 5.0], [True, False], [False, False], [0, 0]),
            ([4.0, 1.0], [True, False], [False, True], [1, 0]),
            ([0.0, 0.0], [False, False], [False, False], [0, 0]),
            ([7.0, 2.0], [True, False], [False, False], [1, 0]),
        ]

        def reset(self, *, seed=None, options=None):
            assert seed is None, "EnvPool seeds its copies when the pool is made"
            self.t = 0
            return np.zeros((2, 1)), {}

        def step(self, actions):
            rewards, terminated, truncated, over = self.script[self.t]
            self.t += 1
            info = {"reward": np.array(rewards), "terminated": np.array(over)}
            return (np.zeros((2, 1)), np.sign(rewards), np.array(terminated), np.array(truncated), info)

    pool = EnvPoolVectorEnv(FakePool(), report_games=True)
    pool.reset(seed=5)
    reported = []
    for _ in range(5):
        *_, info = pool.step(np.zeros(2))
        reported.append(np.where(info["_episode"], info["episode"]["r"], np.nan))
    np.testing.assert_array_equal(reported[2], [5.0, 16.0])  # 3 - 2 + 4; 10 + 5 + 1
    np.testing.assert_array_equal(reported[4], [7.0, np.nan])  # copy 0's next game: 0 + 7
    assert np.isnan(np.concatenate([reported[0], reported[1], reported[3]])).all()


@pytest.mark.parametrize("rollout", ["steps", "episodes"])
def test_the_envpool_collector_keeps_the_contract(rollout):
    from test_collectors import NUM_ENVS, NUM_STEPS, SEED, check_round

    ppo = ppo_for_env("CartPole-v1", seed=0, device="cpu")
    collector = make_collector(
        "CartPole-v1", ppo, NUM_ENVS, backend="envpool", seed=SEED, rollout=rollout, num_steps=NUM_STEPS
    )
    try:
        assert collector.env.backend_name == "VectorEnvBackend"
        for _ in range(3):
            check_round(*collector.collect(ppo), rollout)
        assert collector.random_observations(5).shape[1:] == (4,)
    finally:
        collector.close()
        collector.close()


@pytest.mark.slow
def test_the_one_liner_learns_cartpole_on_envpool():
    ppo = ppo_for_env("CartPole-v1", seed=0, device="cpu")
    runner = AsyncPPO("CartPole-v1", ppo, steps=60_000, backend="envpool", progress_bar=False)
    try:
        runner.run()
    finally:
        runner.close()
    assert np.mean(runner.episode_returns[-32:]) > 200
    assert np.mean(runner.evaluate(episodes=3)) > 200  # on a gymnasium copy of the same task


@pytest.mark.slow
def test_atari_on_envpool_reports_real_game_scores():
    """Pong: a game ends at 21 points either way, so a whole game's real score lies in
    [-21, 21] and is an integer, while the learner sees clipped per-point rewards."""
    ppo = ppo_for_env("Pong-v5", device="cpu", seed=0)
    runner = AsyncPPO(
        "Pong-v5", ppo, num_envs=8, num_steps=128, steps=8 * 128 * 5, backend="envpool", progress_bar=False
    )
    try:
        assert runner.env.observation_space.shape == (4, 84, 84)
        while not runner.game_returns and runner.total_steps < 8 * 128 * 40:
            runner.train_round()
    finally:
        runner.close()
    assert runner.game_returns, "no Pong game finished"
    assert all(-21 <= score <= 21 and score == int(score) for score in runner.game_returns)
    assert min(runner.game_returns) <= -15  # an untrained player loses most points
