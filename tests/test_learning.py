"""Learning tests: the one-liner really trains. Slow (seconds each), run in CI too."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env

pytestmark = pytest.mark.slow


def first_step_solved(returns: list[float], lengths: list[int], window: int, threshold: float):
    """Env steps collected when the mean of the last `window` episodes first reaches `threshold`."""
    steps = np.cumsum(lengths)
    for end in range(window, len(returns) + 1):
        if np.mean(returns[end - window : end]) >= threshold:
            return int(steps[end - 1])
    return None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_liner_solves_cartpole_within_150k_steps(seed, tmp_path, repo_root):
    env = gym.make("CartPole-v1")
    ppo = ppo_for_env(env, seed=seed, device="cpu")
    runner = AsyncPPO(env=env, ppo=ppo, num_envs=32, steps=150_000, progress_bar=False)
    returns = runner.run()

    solved_at = first_step_solved(returns, runner.episode_lengths, window=32, threshold=475)
    assert solved_at is not None and solved_at <= 150_000 + 32 * 500, (
        f"seed {seed}: never reached a mean of 475 over 32 episodes; last means "
        f"{[round(np.mean(returns[i : i + 32])) for i in range(0, len(returns), 32)][-5:]}"
    )

    if seed == 0:  # save, then load and play in a fresh process
        ppo.save_weights(tmp_path / "weights")
        played = subprocess.run(
            [
                sys.executable,
                "play.py",
                "--weights",
                str(tmp_path / "weights"),
                "--env",
                "CartPole-v1",
                "--episodes",
                "5",
            ],
            cwd=repo_root,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        mean_line = played.stdout.strip().splitlines()[-1]
        assert mean_line.startswith("mean return")
        assert float(mean_line.split()[-1]) >= 475, played.stdout


def test_pendulum_improves_clearly_over_random():
    env = gym.make("Pendulum-v1")
    ppo = ppo_for_env(env, seed=0, device="cpu", gamma=0.9)
    runner = AsyncPPO(env=env, ppo=ppo, num_envs=32, steps=120_000, progress_bar=False)
    returns = runner.run()
    first, last = np.mean(returns[:32]), np.mean(returns[-32:])
    # A random policy scores about -1200 on Pendulum-v1.
    assert first < -900, f"the untrained policy should score like a random one, got {first:.0f}"
    # Seed 0 reaches about -190 (its 32-episode mean passes -600 at about 61k steps).
    assert last > -400, f"mean of the last 32 episodes after 120k steps: {last:.0f}"


@pytest.mark.parametrize("seed", [0, 1000])
def test_mountaincar_with_rnd_reaches_the_flag(seed):
    """MountainCar-v0 pays -1 a step until the car reaches the flag (within 200 steps); an
    episode shorter than 200 steps reached it. With RND (and normalised observations and
    rewards) a car gets there within 100k steps, and later episodes keep getting there."""
    env = gym.make("MountainCar-v0")
    ppo = ppo_for_env(env, seed=seed, device="cpu", use_RND=True, normalize_obs=True, normalize_reward=True)
    runner = AsyncPPO(env=env, ppo=ppo, num_envs=32, steps=100_000, progress_bar=False)
    runner.run()
    reached = np.array(runner.episode_lengths) < 200
    assert reached.any(), "no car reached the flag in 100k steps"
    assert reached[-64:].mean() > 0.5, f"only {reached[-64:].mean():.0%} of the last 64 episodes reached it"
    assert ppo.stats["intrinsic_reward"] > 0
