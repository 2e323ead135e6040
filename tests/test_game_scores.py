"""Atari scored for real: the whole-game, unclipped score that RecordEpisodeStatistics reports
inside the Atari stack is what the run reports (bar, progress.csv, games.csv, learning curve)
and what evaluate() returns; the clipped per-life returns stay in episodes.csv. Atari ids are
understood by AsyncPPO, ppo_for_env and train.py."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
from test_atari import FakeAtariGame, fake_stack

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.envs import atari_id, env_source
from AsyncTools.evaluation import evaluate, reports_games
from AsyncTools.train_cli import summary
from AsyncTools.vectorizer import game_returns

# The fake game loses a life every 4 frames and pays 5, 0, -3, 5, 0, -3, ... whatever the
# actions: 3 lives are 12 frames, so every game scores 4 * (5 + 0 - 3) = 8.
GAME_SCORE = 8.0


def fake_atari() -> gym.Env:
    return fake_stack(FakeAtariGame(lives=3, frames_per_life=4))


def read(file) -> list[dict]:
    with open(file, newline="") as handle:
        return list(csv.DictReader(handle))


def test_game_returns_reads_both_info_layouts():
    per_copy = [{}, {"episode": {"r": 7.0, "l": 3, "t": 0.1}}, {"lives": 2}]
    np.testing.assert_array_equal(game_returns(per_copy, np.array([0, 2, 5])), [np.nan, 7.0, np.nan])
    assert game_returns([{}, {}], np.arange(2)) is None
    vector = {"episode": {"r": np.array([0.0, 4.0, 9.0])}, "_episode": np.array([False, True, True])}
    np.testing.assert_array_equal(game_returns(vector, np.array([0, 2])), [np.nan, 9.0])
    assert game_returns({"lives": np.zeros(3)}, np.arange(3)) is None


def small_runner(tmp_path=None, **options) -> AsyncPPO:
    ppo = ppo_for_env(fake_atari(), seed=0, device="cpu", batch_size=64, mini_batch_size=64, k_epochs=1)
    return AsyncPPO(
        fake_atari,
        ppo,
        num_envs=2,
        num_steps=32,
        steps=256,
        progress_bar=False,
        backend="loop",
        log_dir=tmp_path,
        **options,
    )


def test_the_run_reports_whole_game_scores_and_keeps_the_clipped_lives(tmp_path):
    runner = small_runner(tmp_path, eval_every=128, eval_episodes=2)
    runner.run()
    assert runner.game_returns and set(runner.game_returns) == {GAME_SCORE}
    # the learner's episodes are single lives with sign-clipped rewards
    assert len(runner.episode_returns) >= 3 * len(runner.game_returns)
    assert max(runner.episode_returns) < GAME_SCORE
    assert runner.recent_returns() == runner.game_returns[-2:]
    progress = [row for row in read(runner.run_dir / "progress.csv") if row["mean_return"]]
    assert float(progress[-1]["mean_return"]) == GAME_SCORE
    assert float(progress[-1]["mean_episode_return"]) < GAME_SCORE
    games = read(runner.run_dir / "games.csv")
    assert [float(row["return"]) for row in games] == runner.game_returns
    assert len(read(runner.run_dir / "episodes.csv")) == len(runner.episode_returns)
    # the periodic evaluation plays whole games too
    assert runner.evaluation.last_return == GAME_SCORE
    assert summary(runner) == (
        f"trained {runner.total_steps} steps; mean return of the last 2 games (real scores): 8.0"
    )


def test_evaluate_plays_whole_games_through_lost_lives():
    ppo = ppo_for_env(fake_atari(), seed=0, device="cpu")
    env = fake_atari()
    assert reports_games(env) and not reports_games(gym.make("CartPole-v1"))
    assert evaluate(ppo, env, episodes=3, seed=0) == [GAME_SCORE] * 3


def test_resume_keeps_the_game_scores(tmp_path):
    first = small_runner(tmp_path)
    first.run()
    resumed = small_runner(resume=first.run_dir)
    assert resumed.game_returns == first.game_returns and resumed.game_end_steps == first.game_end_steps


def test_atari_ids_are_recognised_in_every_spelling():
    pytest.importorskip("ale_py")
    assert atari_id("ALE/Breakout-v5") == "ALE/Breakout-v5"
    assert atari_id("Breakout-v5") == "ALE/Breakout-v5"
    assert atari_id("BreakoutNoFrameskip-v4") == "BreakoutNoFrameskip-v4"
    assert atari_id("CartPole-v1") is None
    made = env_source("Breakout-v5")()
    assert made.observation_space.shape == (4, 84, 84) and reports_games(made)
    made.close()


def test_env_ids_work_in_the_api(tmp_path):
    ppo = ppo_for_env("CartPole-v1", seed=0, device="cpu")
    assert (ppo.observ_dim, ppo.action_dim) == (4, 2)
    runner = AsyncPPO("CartPole-v1", ppo, num_envs=2, steps=100, progress_bar=False, log_dir=tmp_path)
    assert runner.env_id == "CartPole-v1" and runner.run_dir.name.startswith("CartPole-v1_")
    assert runner.env.backend_name == "VectorEnvBackend"  # an id keeps the native backend
    assert len(runner.evaluate(episodes=1)) == 1
    runner.close()
