"""The Ray backend: remote env workers keep the local backends' data contract, survive a killed
worker, report env errors by global copy, and ray stays optional."""

from __future__ import annotations

import functools
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import CounterEnv, make_raise_on_seed_env, wait_for_file
from gymnasium.wrappers import TimeLimit

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.ray_backend import RayCollector, connect_ray, worker_slices
from AsyncTools.rollout import FixedHorizonLoop, collect_episodes
from AsyncTools.vec_memory import VecMemory
from AsyncTools.vectorizer import EnvStepError, EnvVectorizer
from PPO import PPO

SEED = 10


class SeededCounterEnv(CounterEnv):
    """A CounterEnv whose offset and episode length (2 to 6 steps) come from the seed of its
    last seeded reset, so every copy, and every episode round, differs."""

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.offset = 1000.0 * (seed % 97)
            self.episode_length = 2 + seed % 5
        return super().reset(seed=seed, options=options)


def make_seeded_counter(max_episode_steps: int = 4) -> gym.Env:
    """Episodes of 2 or 3 steps terminate, of 4 terminate and truncate, longer ones truncate."""
    return TimeLimit(SeededCounterEnv(), max_episode_steps=max_episode_steps)


class SlowCounterEnv(CounterEnv):
    """A never-ending counter whose steps take `delay` seconds; with `marker`, every step first
    creates that file, so a test can wait for a round to be under way."""

    def __init__(self, delay: float, marker: str | None = None):
        super().__init__(episode_length=None)
        self.delay, self.marker = delay, marker

    def step(self, action):
        if self.marker is not None:
            Path(self.marker).touch()
        time.sleep(self.delay)
        return super().step(action)


def make_slow_counter(delay: float = 0.01, marker: str | None = None) -> gym.Env:
    return SlowCounterEnv(delay, marker)


def counter_ppo(**options) -> PPO:
    return PPO(False, 2, 2, device="cpu", seed=SEED, batch_size=64, mini_batch_size=32, k_epochs=1, **options)


# --------------------------------------------------------------------- no Ray needed
def test_missing_ray_raises_import_error_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    env = gym.make("CartPole-v1")
    with pytest.raises(ImportError, match=r"pip install -e \.\[ray\]"):
        AsyncPPO(env, ppo_for_env(env, device="cpu"), num_envs=2, backend="ray")


def test_env_that_cannot_be_recreated_in_a_worker_raises_type_error_naming_env():
    pytest.importorskip("ray")
    ppo = counter_ppo()
    with pytest.raises(TypeError, match="env: .*lambda"):
        AsyncPPO(lambda: CounterEnv(), ppo, num_envs=2, backend="ray")
    with pytest.raises(TypeError, match="env: .*no spec"):
        AsyncPPO(CounterEnv(), ppo, num_envs=2, backend="ray")
    with pytest.raises(ValueError, match="ray_workers"):
        AsyncPPO(CounterEnv(), ppo, num_envs=2, ray_workers=2)


def test_worker_slices_are_contiguous_and_in_order():
    assert worker_slices(5, 2) == [(0, 3), (3, 2)]
    assert worker_slices(4, 4) == [(0, 1), (1, 1), (2, 1), (3, 1)]


class FakeRay:
    """Records how `connect_ray` calls ray.init."""

    def __init__(self):
        self.inits: list[dict] = []

    def is_initialized(self) -> bool:
        return bool(self.inits)

    def init(self, **kwargs) -> None:
        self.inits.append(kwargs)


@pytest.mark.parametrize(
    "address, env_address, joins",
    [
        (None, None, None),
        ("ray://head:10001", None, "ray://head:10001"),
        (None, "10.0.0.1:6379", "10.0.0.1:6379"),
    ],
)
def test_connect_ray_starts_a_local_instance_or_joins_a_cluster(monkeypatch, address, env_address, joins):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    if env_address is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env_address)
    started = connect_ray(address)
    if joins is None:  # started here, so owned (shut down by close()), without a dashboard
        assert started and fake.inits[0]["include_dashboard"] is False
        assert fake.inits[0]["num_cpus"] >= 1
    else:
        assert not started and fake.inits == [{"address": joins}]
    assert connect_ray(address) is False and len(fake.inits) == 1  # connected already: kept


# --------------------------------------------------------------------- same data as the loop
def alternating_ppo() -> PPO:
    """A policy that, deterministic, answers the last action with the other one (CounterEnv
    shows it in the observation), by a margin of about 200 in the logits: no near-tie whose
    argmax could flip with the size of the batch it is computed in."""
    ppo = counter_ppo()
    first, second, head = ppo.policy.actor[0], ppo.policy.actor[2], ppo.policy.actor[-1]
    with torch.no_grad():
        for layer in (first, second, head):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0, 1], first.bias[0] = 4.0, -2.0  # +-0.96 for last action 1 or 0
        second.weight[0, 0] = 3.0
        head.weight[:, 0] = torch.tensor([100.0, -100.0])
    return ppo


@pytest.mark.slow
@pytest.mark.parametrize("rollout", ["episodes", "steps"])
def test_ray_rounds_equal_loop_rounds_of_the_same_seed(ray_session, rollout):
    num_envs, num_steps = 5, 7
    ppo = alternating_ppo()
    collector = RayCollector(
        make_seeded_counter,
        ppo,
        num_envs,
        seed=SEED,
        rollout=rollout,
        num_steps=num_steps,
        num_workers=2,
        deterministic=True,
    )
    local = EnvVectorizer(make_seeded_counter, num_envs, seed=SEED, backend="loop")
    buffer, horizon = VecMemory(num_envs), FixedHorizonLoop(local)

    def act(states):
        return ppo.sample_actions(states, deterministic=True)

    try:
        assert collector.slices == [(0, 3), (3, 2)]
        for round_ in range(3):
            if round_ == 2:  # new weights (repeat the last action): both must act with them
                with torch.no_grad():
                    ppo.policy.actor[-1].weight.neg_()
            collector.sync(ppo)
            remote_rollout, remote_round = collector.collect(ppo)
            local_round = (
                collect_episodes(local, buffer, act)
                if rollout == "episodes"
                else horizon.collect(buffer, act, num_steps)
            )
            assert remote_rollout.shape[1] == num_envs  # one column per copy, in copy order
            remote, expected = remote_rollout.trajectories(), buffer.trajectories()
            buffer.clear()

            assert remote.keys() == expected.keys()
            for name in expected:
                assert remote[name].dtype == expected[name].dtype, name
                assert np.array_equal(remote[name], expected[name], equal_nan=True), f"round {round_}: {name}"
            assert remote_round.steps == local_round.steps

            def pairs(r):
                return sorted(zip(r.episode_returns.tolist(), r.episode_lengths.tolist(), strict=True))

            assert pairs(remote_round) == pairs(local_round)
            if rollout == "episodes":  # one episode per copy, in env order
                assert np.array_equal(remote_round.episode_returns, local_round.episode_returns)
            assert collector.weights_versions == [round_, round_]
            if round_ < 2:  # the alternating policy: both actions in the data
                assert np.array_equal(np.unique(expected["actions"]), [0, 1])
        # The env exercised every kind of end, and every copy is in the data.
        assert set(np.unique(expected["env_ids"])) == set(range(num_envs))
        ends = expected["terminated"] | expected["truncated"]
        assert (expected["terminated"] & ~expected["truncated"]).any()
        assert (expected["truncated"] & ~expected["terminated"]).any()
        assert len(expected["final_states"]) == ends.sum()
        assert collector.worker_restarts == 0
    finally:
        collector.close()
        local.close()


# --------------------------------------------------------------------- the runner on Ray
def wait_for_new_incarnation(ray, worker, old: str, seconds: float = 180.0) -> bool:
    """Whether `worker` answers as a new incarnation within `seconds` (a restart took over a
    minute on a 2-core machine running other jobs: CI beside two training runs)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ray.get(worker.ready.remote())["incarnation"] != old:
                return True
        except ray.exceptions.RayActorError:  # still restarting
            pass
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_runner_on_ray_warms_up_rnd_and_survives_killed_workers(ray_session, capsys, tmp_path):
    num_envs, num_steps = 4, 40
    ppo = counter_ppo(use_RND=True)
    stepping = tmp_path / "stepping"
    runner = AsyncPPO(
        functools.partial(make_slow_counter, 0.01, str(stepping)),
        ppo,
        num_envs=num_envs,
        steps=10**6,
        num_steps=num_steps,
        backend="ray",
        ray_workers=2,
        rnd_warmup_steps=3,
        progress_bar=False,
    )
    added: list[np.ndarray] = []
    add = ppo.memory.add
    ppo.memory.add = lambda rollout: (added.append(rollout.trajectories()["env_ids"]), add(rollout))[1]
    warmed_up: list[int] = []
    update_obs_stats = ppo.rnd.update_obs_stats
    ppo.rnd.update_obs_stats = lambda obs: (warmed_up.append(len(obs)), update_obs_stats(obs))[1]
    try:
        assert not runner.env.started_ray  # the fixture's instance is joined, not started
        collected = runner.train_round()
        # Warm-up: the reset observation and 3 random steps of each of the 4 copies.
        assert warmed_up[0] == num_envs * (1 + 3)
        assert collected.steps == num_envs * num_steps
        assert np.array_equal(added[-1], np.repeat(np.arange(num_envs), num_steps))
        assert ppo.stats and runner.env.weights_versions == [0, 0]

        # Kill worker 0 once the next round's steps are under way (it takes 40 steps of 10 ms).
        stepping.unlink()
        killer = threading.Thread(
            target=lambda: (
                wait_for_file(stepping),
                ray_session.kill(runner.env.workers[0], no_restart=False),
            )
        )
        killer.start()
        collected = runner.train_round()
        killer.join()
        assert runner.worker_restarts == 1
        assert collected.steps == 2 * num_steps  # worker 1's copies only
        assert set(np.unique(added[-1])) == {2, 3}
        assert "ray worker 0 died; restarted, its rollout dropped" in capsys.readouterr().out

        # Worker 1 killed between rounds, and back before the next one (restarting alongside
        # worker 0): noticed by its new identity.
        before = runner.env._incarnations[1]
        ray_session.kill(runner.env.workers[1], no_restart=False)
        assert wait_for_new_incarnation(ray_session, runner.env.workers[1], before)

        published = runner.env.weights_version
        collected = runner.train_round()  # both restarted workers take part, with fresh copies
        assert collected.steps == num_envs * num_steps
        assert runner.env.weights_versions == [published, published]
        assert runner.rounds == 3 and runner.worker_restarts == 2
        assert "ray worker 1 died between rounds" in capsys.readouterr().out
    finally:
        runner.close()


@pytest.mark.slow
def test_env_error_in_a_worker_raises_env_step_error_with_the_global_copy(ray_session):
    num_envs = 4  # worker 1 steps copies 2 and 3; copy 3 (seed SEED + 3) raises on its 3rd step
    factory = functools.partial(make_raise_on_seed_env, raise_seed=SEED + 3, k=2)
    runner = AsyncPPO(
        factory,
        counter_ppo(),
        num_envs=num_envs,
        num_steps=8,
        seed=SEED,
        backend="ray",
        ray_workers=2,
        progress_bar=False,
    )
    outcome: dict = {}

    def train():
        try:
            runner.train_round()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    try:
        thread = threading.Thread(target=train, daemon=True)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the round hung after an env raised in a worker"
        error = outcome.get("error")
        assert type(error) is EnvStepError, repr(error)
        assert error.env_index == 3
        assert "env copy 3 of 4 raised ValueError in step(): boom" in str(error)
    finally:
        runner.close()


@pytest.mark.slow
def test_cartpole_learns_on_two_ray_workers(ray_session):
    env = gym.make("CartPole-v1")
    ppo = ppo_for_env(env, seed=0, device="cpu")
    runner = AsyncPPO(env, ppo, num_envs=32, steps=60_000, backend="ray", ray_workers=2, progress_bar=False)
    try:
        returns = runner.run()
    finally:
        runner.close()
    assert runner.total_steps >= 60_000 and runner.worker_restarts == 0
    assert np.mean(returns[-32:]) >= 200, f"mean of the last 32 episodes: {np.mean(returns[-32:])}"


# ------------------------------------------------------------------ worker faults
def make_counter_outside(driver_pid: int, fault: str) -> gym.Env:
    """A counter env in the driver; inside a Ray worker (another process) either a constructor
    that raises ("constructor") or a counter with a wider observation than the learner's
    ("wider")."""
    import os

    if os.getpid() == driver_pid:
        return CounterEnv(episode_length=None)
    if fault == "constructor":
        raise RuntimeError("no simulator licence on this node")
    return WideCounterEnv()


class WideCounterEnv(CounterEnv):
    def __init__(self):
        super().__init__(episode_length=None)
        self.observation_space = gym.spaces.Box(-1e6, 1e6, shape=(3,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        return np.append(obs, 0.0).astype(np.float32), info

    def step(self, action):
        obs, *rest = super().step(action)
        return (np.append(obs, 0.0).astype(np.float32), *rest)


def ray_runner(env, **options) -> AsyncPPO:
    return AsyncPPO(
        env,
        counter_ppo(),
        num_envs=4,
        num_steps=8,
        seed=SEED,
        backend="ray",
        ray_workers=2,
        progress_bar=False,
        **options,
    )


def test_more_ray_workers_than_env_copies_is_refused():
    pytest.importorskip("ray")
    with pytest.raises(
        ValueError,
        match=r"ray_workers: each worker needs at least one of the 4 "
        r"env copies, got ray_workers=5",
    ):
        AsyncPPO(
            make_slow_counter, counter_ppo(), num_envs=4, backend="ray", ray_workers=5, progress_bar=False
        )


@pytest.mark.slow
def test_a_worker_whose_envs_cannot_be_built_is_named(ray_session):
    """Found when the runner starts its workers, before any training."""
    import os

    factory = functools.partial(make_counter_outside, os.getpid(), "constructor")
    with pytest.raises(
        RuntimeError,
        match=r"(?s)ray worker \d could not start \(env copies "
        r"[\d, -]+\):.*no simulator licence on this node",
    ):
        ray_runner(factory)


@pytest.mark.slow
def test_a_non_env_error_in_a_worker_reaches_the_driver_with_its_type(ray_session):
    """The workers' envs have wider observations than the learner: the worker's own check
    raises, and the driver gets that ValueError, not an EnvStepError."""
    import os

    factory = functools.partial(make_counter_outside, os.getpid(), "wider")
    with pytest.raises(
        ValueError,
        match=r"observ_dim: the PPO was built with observ_dim=2, but "
        r"the env's observations have shape \(3,\)",
    ) as info:
        ray_runner(factory).train_round()
    assert not isinstance(info.value, EnvStepError)


@pytest.mark.slow
def test_a_worker_past_its_restart_limit_is_named(ray_session):
    ppo = counter_ppo()
    collector = RayCollector(
        make_slow_counter, ppo, 4, seed=SEED, rollout="steps", num_steps=8, num_workers=2, max_restarts=0
    )
    try:
        collector.sync(ppo)
        collector.collect(ppo)
        ray_session.kill(collector.workers[1], no_restart=True)
        with pytest.raises(
            RuntimeError,
            match=r"ray worker 1 \(env copies [\d, -]+\) died and Ray "
            r"did not restart it \(max_restarts=0\)",
        ):
            for _ in range(2):  # the round it dies in goes on without it; the next one needs it
                collector.collect(ppo)
    finally:
        collector.close()
