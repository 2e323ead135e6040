"""The Collector contract, one suite over every way of stepping the copies: the in-process loop,
gymnasium's native vector env, a VectorEnv passed in, subprocess workers, Ray actors (slow) and
EnvPool (where installed). Every collector hands back rounds in the same format; the subprocess
workers hand back exactly the loop's data (Ray workers do too when acting deterministically, as
their own policy copies sample from their own generators: tests/test_ray_backend.py)."""
from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
import torch

from AsyncTools.AsyncPPO import ppo_for_env
from AsyncTools.collectors import Collector, LocalCollector, make_collector

NUM_ENVS, NUM_STEPS, SEED = 4, 16, 3
KEYS = {"states", "actions", "rewards", "terminated", "truncated", "final_states", "env_ids",
        "episode_starts"}
BACKENDS = [
    "loop", "native", "subprocess", "vector_env",
    pytest.param("ray", marks=[pytest.mark.slow, pytest.mark.skipif(
        importlib.util.find_spec("ray") is None, reason="ray is not installed")]),
]


@pytest.fixture(scope="module")
def ray_instance():
    if importlib.util.find_spec("ray") is None:
        yield None
        return
    from AsyncTools.ray_backend import import_ray, init_local_ray
    init_local_ray(num_cpus=2)
    yield
    import_ray().shutdown()


def build(backend: str, rollout: str):
    env = gym.make("CartPole-v1")
    ppo = ppo_for_env(env, seed=0, device="cpu")
    if backend == "vector_env":
        env, backend = gym.make_vec("CartPole-v1", num_envs=NUM_ENVS, vectorization_mode="sync"), "auto"
    collector = make_collector(env, ppo, NUM_ENVS, backend=backend, seed=SEED, rollout=rollout,
                               num_steps=NUM_STEPS, ray_workers=2 if backend == "ray" else None)
    collector.sync(ppo)
    return collector, ppo


def check_round(trajectories: dict, collected, rollout: str) -> None:
    """The format every collector returns, and CartPole's own values (reward 1 per step)."""
    assert set(trajectories) == KEYS
    rows = len(trajectories["states"])
    assert rows == collected.steps > 0
    assert all(len(trajectories[key]) == rows for key in KEYS - {"final_states"})
    env_ids = trajectories["env_ids"]
    assert np.all(np.diff(env_ids) >= 0) and set(env_ids) <= set(range(NUM_ENVS))
    closing = trajectories["terminated"] | trajectories["truncated"]
    last_of_env = np.append(env_ids[1:] != env_ids[:-1], True)
    assert np.all(closing[last_of_env]), "every env's rows end with a closed trajectory"
    assert len(trajectories["final_states"]) == int(closing.sum())
    np.testing.assert_array_equal(trajectories["rewards"], np.ones(rows, np.float32))
    np.testing.assert_array_equal(collected.episode_returns, collected.episode_lengths)
    if rollout == "steps":
        assert rows <= NUM_ENVS * NUM_STEPS and np.bincount(env_ids).max() <= NUM_STEPS
    else:
        assert len(collected.episode_returns) == NUM_ENVS
        assert int(trajectories["terminated"].sum()) == NUM_ENVS  # CartPole: falls within 500


@pytest.mark.parametrize("rollout", ["steps", "episodes"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_collector_keeps_the_contract(backend, rollout, ray_instance):
    collector, ppo = build(backend, rollout)
    try:
        assert isinstance(collector, Collector)
        assert (collector.num_envs, collector.observation_space.shape) == (NUM_ENVS, (4,))
        assert collector.action_space == gym.spaces.Discrete(2)
        for _ in range(3):
            check_round(*collector.collect(ppo), rollout)
        observations = collector.random_observations(5)
        assert observations.shape[1:] == (4,) and NUM_ENVS * 5 <= len(observations) <= NUM_ENVS * 6
    finally:
        collector.close()
        collector.close()


@pytest.mark.parametrize("rollout", ["steps", "episodes"])
def test_subprocess_workers_return_the_loops_data(rollout):
    """Same seeds, same policy: the same rounds, array for array, including after new weights."""
    reference, reference_ppo = build("loop", rollout)
    other, ppo = build("subprocess", rollout)
    try:
        for round_ in range(3):
            if round_ == 2:  # new weights for both: the collector acts with them after sync
                for learner, collector in ((reference_ppo, reference), (ppo, other)):
                    with torch.no_grad():
                        learner.policy.actor[-1].weight.mul_(-3)
                    collector.sync(learner)
            expected, expected_round = reference.collect(reference_ppo)
            got, got_round = other.collect(ppo)
            for key in KEYS:
                np.testing.assert_array_equal(got[key], expected[key], err_msg=f"round {round_}: {key}")
            np.testing.assert_array_equal(got_round.episode_returns, expected_round.episode_returns)
    finally:
        reference.close(), other.close()


def test_local_collectors_step_an_env_vectorizer():
    collector, _ = build("subprocess", "steps")
    try:
        assert isinstance(collector, LocalCollector) and collector.env.backend_name == "SubprocessBackend"
    finally:
        collector.close()


def test_ray_options_without_ray_are_refused():
    with pytest.raises(ValueError, match="ray_workers and ray_address are for backend='ray', not 'loop'"):
        make_collector(gym.make("CartPole-v1"), ppo_for_env("CartPole-v1"), 2, backend="loop",
                       seed=0, ray_workers=2)
