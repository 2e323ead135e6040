"""AsyncTools/overlap.py and AsyncPPO(overlap=True): the overlapped collector stores what the
synchronous one stores given the same weights, acts with the weights published a round ago and
never newer ones, surfaces a collector crash in the caller, leaves no thread behind, and gives
the same run for the same seeds."""

from __future__ import annotations

import functools
import importlib.util
import multiprocessing
import threading

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import NanRewardAt, call_with_deadline, make_raise_on_seed_env

from AsyncTools import process_collector
from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.collectors import make_collector
from AsyncTools.overlap import OverlappedCollection
from AsyncTools.vectorizer import EnvStepError
from PPO import PPO
from PPO.Memory import PER_STEP
from tests.user_envs import Corridor


def collector_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ppo-collector"]


def runner(overlap: bool, batch_size: int = 256, backend: str = "loop", **options) -> AsyncPPO:
    ppo = ppo_for_env(
        "CartPole-v1", seed=3, device="cpu", batch_size=batch_size, mini_batch_size=64, k_epochs=2
    )
    return AsyncPPO(
        "CartPole-v1",
        ppo,
        num_envs=4,
        num_steps=64,
        seed=3,
        progress_bar=False,
        overlap=overlap,
        backend=backend,
        **options,
    )


@pytest.mark.parametrize("backend", ["loop", pytest.param("subprocess", marks=pytest.mark.slow)])
def test_overlapped_rounds_store_what_synchronous_rounds_store(backend):
    """Weights that never change (learn() waits: batch_size is never reached): both modes act
    with the same policy and generator seeds, so the memory holds the same rollouts."""
    stored = []
    for overlap in (False, True):
        trainer = runner(overlap, batch_size=10**6, backend=backend)
        for _ in range(3):
            trainer.train_round()
        stored.append(trainer.ppo.memory.take())
        trainer.close()
    synchronous, overlapped = stored
    for name in PER_STEP + ("final_states",):
        torch.testing.assert_close(
            getattr(overlapped, name), getattr(synchronous, name), equal_nan=True, msg=name
        )


def test_each_round_acts_with_the_weights_published_one_update_before():
    """In-process (the acting copy in a thread): the weights each round acted with, against
    the learner's before each update."""
    ppo = ppo_for_env("CartPole-v1", seed=3, device="cpu", batch_size=128, mini_batch_size=64)
    collector = make_collector("CartPole-v1", ppo, 4, backend="loop", seed=3, num_steps=64)
    assert collector.acts_in_this_process
    overlapped = OverlappedCollection(collector, ppo)
    acted, learned = [], []
    collect = collector.collect

    def recording_collect(acting, should_stop=None):
        acted.append(acting.policy.actor[0].weight.detach().clone())
        return collect(acting, should_stop)

    collector.collect = recording_collect
    for _ in range(4):
        rollout, _ = overlapped.next_round()
        ppo.memory.add(rollout)
        learned.append(ppo.policy.actor[0].weight.detach().clone())  # W_k, before update k
        assert ppo.learn() is not None  # every round is learned from
    overlapped.close()
    collector.close()
    assert len(acted) == 5  # the 5th round was under way at the end
    assert torch.equal(acted[0], learned[0])  # round 0: the initial weights
    for k in range(1, 5):  # round k: the learner's weights before update k-1
        assert torch.equal(acted[k], learned[k - 1]), k
        assert all(not torch.equal(acted[k], newer) for newer in learned[k:]), k


def test_the_same_seeds_give_the_same_overlapped_run():
    weights = []
    for _ in range(2):
        trainer = runner(True)
        for _ in range(4):
            trainer.train_round()
        trainer.close()
        weights.append(trainer.ppo.policy.state_dict())
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_a_collector_crash_reaches_the_caller_and_no_thread_is_left():
    factory = functools.partial(make_raise_on_seed_env, raise_seed=5 + 1, k=40)
    ppo = PPO(False, 2, 2, seed=0, device="cpu", batch_size=32)
    trainer = AsyncPPO(factory, ppo, num_envs=2, num_steps=16, seed=5, progress_bar=False, overlap=True)
    finished, error, _ = call_with_deadline(lambda: trainer.run(), seconds=60)
    assert finished and isinstance(error, EnvStepError)
    assert "env copy 1 of 2 raised ValueError in step(): boom" in str(error)
    assert not collector_threads()
    trainer.close()


def test_run_and_close_leave_no_collector_thread_or_process():
    trainer = runner(True, steps=2_000)
    assert [p.name for p in multiprocessing.active_children()] == ["ppo-collector"]
    trainer.run()
    assert trainer.total_steps >= 2_000 and not collector_threads()
    trainer.run()  # steps reached: nothing more; the round collected meanwhile is kept
    trainer.close()
    assert not collector_threads() and not multiprocessing.active_children()
    assert np.isfinite(trainer.ppo.stats["policy_loss"])


@pytest.mark.slow
def test_a_killed_collector_process_is_an_error_in_the_caller():
    trainer = runner(True, steps=10**6)
    trainer.train_round()
    trainer.collector._process.kill()  # the test's stand-in for an OOM kill
    finished, error, _ = call_with_deadline(trainer.train_round, seconds=30)
    assert finished and isinstance(error, EnvStepError)
    assert "the collector process died" in str(error)
    trainer.close()
    assert not multiprocessing.active_children()


def test_overlap_must_be_a_bool():
    with pytest.raises(TypeError, match="overlap"):
        runner("yes")


def test_where_the_child_is_spawned_an_env_that_cannot_reach_it_is_refused_by_name(monkeypatch):
    monkeypatch.setattr(process_collector, "START_METHOD", "spawn")  # as on macOS and Windows
    with pytest.raises(
        TypeError,
        match=r"env: .* cannot be pickled to send it to the collector "
        r"process .*lambda",
    ):
        process_collector.portable_env(lambda: __import__("gymnasium").make("CartPole-v1"))
    with pytest.raises(
        TypeError,
        match=r"env: the collector process re-make the env with "
        r"gym.make\(env.spec\), but this env has no spec",
    ):
        process_collector.portable_env(Corridor())


@pytest.mark.skipif(process_collector.START_METHOD != "fork", reason="the child is spawned here")
def test_a_lambda_or_an_env_without_a_spec_reaches_a_forked_collector_process():
    for env in (lambda: Corridor(), Corridor()):  # neither pickles; fork copies them as they are
        ppo = ppo_for_env(Corridor(), seed=0, device="cpu", batch_size=128, mini_batch_size=64)
        runner = AsyncPPO(env, ppo, num_envs=2, steps=256, overlap=True, progress_bar=False)
        runner.run()
        assert runner.total_steps >= 256 and runner.episode_returns
        runner.close()
    assert not multiprocessing.active_children()


# ------------------------------------------------ overlap with the runner's other features
OVERLAP_BACKENDS = [
    "loop",
    pytest.param("subprocess", marks=pytest.mark.slow),
    pytest.param(
        "envpool",
        marks=[
            pytest.mark.slow,
            pytest.mark.skipif(
                importlib.util.find_spec("envpool") is None, reason="envpool is not installed"
            ),
        ],
    ),
    pytest.param("vector_env", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("backend", OVERLAP_BACKENDS)
def test_overlap_learns_cartpole_on_every_local_backend(backend):
    env = "CartPole-v1"
    if backend == "vector_env":  # stepped in a thread of this process
        env, backend = gym.make_vec("CartPole-v1", num_envs=32, vectorization_mode="sync"), "auto"
    ppo = ppo_for_env("CartPole-v1", seed=0, device="cpu")
    trainer = AsyncPPO(env, ppo, steps=40_000, seed=0, progress_bar=False, overlap=True, backend=backend)
    try:
        returns = trainer.run()
        acting_elsewhere = not trainer.collector.acts_in_this_process
        assert acting_elsewhere == (backend != "auto")  # a VectorEnv passed in stays here
    finally:
        trainer.close()
    assert not multiprocessing.active_children() and not collector_threads()
    assert np.mean(returns[-32:]) > 150, np.mean(returns[-32:])  # random play: about 22


@pytest.mark.slow
def test_overlap_on_ray_workers(ray_session):
    ppo = ppo_for_env("CartPole-v1", seed=0, device="cpu")
    trainer = AsyncPPO(
        gym.make("CartPole-v1"),
        ppo,
        num_envs=8,
        steps=4_000,
        seed=0,
        progress_bar=False,
        overlap=True,
        backend="ray",
        ray_workers=2,
    )
    try:
        trainer.run()
        published = trainer.collector.weights_version
        assert trainer.total_steps >= 4_000 and published >= trainer.rounds
        # the round under way acted with the weights published before the last update
        assert set(trainer.collector.weights_versions) <= {published - 1, published}
    finally:
        trainer.close()


def test_overlap_with_a_run_folder_evaluation_timeout_and_resume(tmp_path):
    first = runner(True, steps=10**6, log_dir=tmp_path, eval_every=500, eval_episodes=2)
    first.run(timeout=3)
    assert first.stopped_by == "timeout" and first.evaluation.last_return is not None
    saved_steps = first.total_steps
    first.close()
    resumed = runner(True, steps=saved_steps + 1_000, resume=first.run_dir)
    assert resumed.total_steps == saved_steps
    resumed.run()
    resumed.close()
    assert resumed.total_steps >= saved_steps + 1_000
    assert (first.run_dir / "best" / "Policy_weights.pth").is_file()
    rows = (first.run_dir / "progress.csv").read_text().splitlines()
    assert len(rows) - 1 == resumed.rounds  # one row per round, across both runs
    assert not multiprocessing.active_children()


def nan_reward_cartpole(at: int = 100) -> gym.Env:
    return NanRewardAt(gym.make("CartPole-v1"), at)


def test_the_collector_process_counts_the_non_finite_rewards_it_replaced():
    """non_finite_rewards="zero": the child replaces them and each round's answer brings its
    count, shown as `env.non_finite_rewards_replaced` as in a synchronous run."""
    counts = []
    for overlap in (False, True):
        ppo = ppo_for_env("CartPole-v1", seed=0, device="cpu", batch_size=256, mini_batch_size=128)
        trainer = AsyncPPO(
            nan_reward_cartpole,
            ppo,
            num_envs=2,
            num_steps=64,
            steps=1024,
            seed=0,
            progress_bar=False,
            backend="loop",
            overlap=overlap,
            non_finite_rewards="zero",
        )
        try:
            assert trainer.collector.acts_in_this_process is not overlap
            assert trainer.env.non_finite_rewards_replaced == 0
            trainer.run()
            counts.append(trainer.env.non_finite_rewards_replaced)
        finally:
            trainer.close()
    assert counts == [2, 2]  # each copy's 100th step
