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
from PPO import Rollout

NUM_ENVS, NUM_STEPS, SEED = 4, 16, 3
FIELDS = (
    "states",
    "actions",
    "rewards",
    "terminated",
    "truncated",
    "valid",
    "final_states",
    "episode_starts",
    "log_probs",
)
BACKENDS = [
    "loop",
    "native",
    "subprocess",
    "vector_env",
    pytest.param("process", marks=pytest.mark.slow),
    pytest.param(
        "ray",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed"),
        ],
    ),
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
    in_child_process = backend == "process"  # a loop collector in a child process
    collector = make_collector(
        env,
        ppo,
        NUM_ENVS,
        backend="loop" if in_child_process else backend,
        seed=SEED,
        rollout=rollout,
        num_steps=NUM_STEPS,
        ray_workers=2 if backend == "ray" else None,
        in_child_process=in_child_process,
    )
    collector.sync(ppo)
    return collector, ppo


def check_round(rollout: Rollout, collected, mode: str) -> None:
    """The format every collector returns (a time-major Rollout, column n for copy n, with the
    behaviour log-probs) and CartPole's own values (reward 1 per step)."""
    assert isinstance(rollout, Rollout)
    num_steps, num_envs = rollout.shape
    assert num_envs == NUM_ENVS and rollout.states.shape == (num_steps, NUM_ENVS, 4)
    valid = rollout.valid
    assert len(rollout) == collected.steps > 0
    rollout.check()  # every column closes with an end; one final state per end
    np.testing.assert_array_equal(rollout.rewards[valid], np.ones(len(rollout), np.float32))
    np.testing.assert_array_equal(collected.episode_returns, collected.episode_lengths)
    assert np.all(np.isfinite(rollout.log_probs[valid])) and np.all(rollout.log_probs[valid] < 0)
    assert np.all(np.isin(rollout.actions[valid], [0, 1]))
    if mode == "steps":
        assert num_steps == NUM_STEPS  # one row per step, the autoreset rows invalid
    else:
        assert len(collected.episode_returns) == NUM_ENVS
        assert int(rollout.terminated[valid].sum()) == NUM_ENVS  # CartPole: falls within 500
        assert np.all(rollout.episode_starts[0]) and valid[0].all()
        # one episode per column, from row 0 on: the valid rows are each column's head
        assert np.array_equal(valid.sum(0), np.argmin(np.vstack([valid, ~valid[:1]]), axis=0))


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
@pytest.mark.parametrize("other_backend", ["subprocess", pytest.param("process", marks=pytest.mark.slow)])
def test_other_collectors_return_the_loops_data(rollout, other_backend):
    """Same seeds, same policy: the same rounds, array for array, including after new weights
    (subprocess workers; the loop collector in a child process, acting with synced weights)."""
    reference, reference_ppo = build("loop", rollout)
    other, ppo = build(other_backend, rollout)
    try:
        for round_ in range(3):
            if round_ == 2:  # new weights for both: the collector acts with them after sync
                for learner, collector in ((reference_ppo, reference), (ppo, other)):
                    with torch.no_grad():
                        learner.policy.actor[-1].weight.mul_(-3)
                    collector.sync(learner)
            expected, expected_round = reference.collect(reference_ppo)
            got, got_round = other.collect(ppo)
            for name in FIELDS:
                np.testing.assert_array_equal(
                    getattr(got, name), getattr(expected, name), err_msg=f"round {round_}: {name}"
                )
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
        make_collector(
            gym.make("CartPole-v1"), ppo_for_env("CartPole-v1"), 2, backend="loop", seed=0, ray_workers=2
        )
