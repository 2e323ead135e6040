"""The fast backends compute what the simple in-process loop computes, and the subprocess
backend keeps the loop's error contract."""

from __future__ import annotations

import functools
import pickle
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import CounterEnv, RaiseOnSeedEnv, call_with_deadline, make_raise_on_seed_env
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

from AsyncTools.AsyncPPO import AsyncPPO
from AsyncTools.rollout import collect_episodes
from AsyncTools.vec_memory import VecMemory
from AsyncTools.vectorizer import BACKENDS, EnvStepError, EnvVectorizer, LoopBackend, VectorEnvBackend
from PPO import PPO

FIELDS = ("next_states", "rewards", "terminated", "truncated", "valid")


def assert_rows_equal(a, b, row, context=""):
    for name, x, y in zip(FIELDS, a, b, strict=False):
        assert np.array_equal(x[row], y[row]), f"{context} {name}[{row}]: {x[row]!r} != {y[row]!r}"


def close_vectorizer(vec: EnvVectorizer, finished: bool = True) -> None:
    vec.close()  # bounded, also with a hung worker: terminates, then kills, what does not answer


# --------------------------------------------------------------------- native vs loop
def test_native_matches_loop_on_cartpole_until_each_copy_first_resets():
    num_envs = 4
    loop = EnvVectorizer(gym.make("CartPole-v1"), num_envs, seed=0, backend="loop")
    native = EnvVectorizer(gym.make("CartPole-v1"), num_envs, seed=0, backend="native")
    assert isinstance(loop.backend, LoopBackend)
    assert isinstance(native.backend.vector_env.unwrapped, CartPoleVectorEnv)
    loop.reset()
    native.reset()

    # One shared physical state: copy 1 is about to fall, copy 2 is near the track's edge,
    # copy 3 is 5 steps from CartPole-v1's 500-step time limit.
    rng = np.random.default_rng(1)
    states = rng.uniform(-0.05, 0.05, size=(num_envs, 4))
    states[1, 2] = 0.19
    states[2, 0] = 2.35
    for i in range(num_envs):
        loop.envs[i].unwrapped.state = states[i].copy()
    native.backend.vector_env.unwrapped.state = states.T.copy()
    loop.envs[3]._elapsed_steps = 495
    native.backend.vector_env.unwrapped.steps[3] = 495

    first_end: dict[int, int] = {}
    end_kind: dict[int, str] = {}
    compared_steps = np.zeros(num_envs, dtype=int)
    for k in range(300):
        actions = rng.integers(0, 2, size=num_envs)
        a = loop.step_autoreset(actions)
        b = native.step_autoreset(actions)
        for i in range(num_envs):
            if i in first_end and k > first_end[i] + 1:
                continue  # after its reset the copies' RNGs differ
            if i in first_end:  # the reset row: same flags, states from different RNGs
                assert not a[4][i] and not b[4][i]
                assert a[1][i] == b[1][i] == 0.0
                assert not (a[2][i] or b[2][i] or a[3][i] or b[3][i])
                continue
            assert_rows_equal(a, b, i, f"step {k}")
            assert a[4][i]
            compared_steps[i] += 1
            if a[2][i] or a[3][i]:
                first_end[i] = k
                end_kind[i] = "terminated" if a[2][i] else "truncated"
        if len(first_end) == num_envs and k > max(first_end.values()) + 1:
            break
    assert len(first_end) == num_envs
    # The set-up states end as designed: falls, edge, time limit, and a random-policy fall.
    assert first_end[1] < 5 and first_end[3] == 4
    assert end_kind == {0: "terminated", 1: "terminated", 2: "terminated", 3: "truncated"}
    assert compared_steps[0] > 5 and compared_steps.sum() > 20
    native.close()
    loop.close()


def test_native_truncation_and_termination_rows_are_the_loops():
    """The native copy truncated by the time limit and the one that fell report the same
    flags as the loop copies, on the same step."""
    loop = EnvVectorizer(gym.make("CartPole-v1"), 2, seed=0, backend="loop")
    native = EnvVectorizer(gym.make("CartPole-v1"), 2, seed=0, backend="native")
    loop.reset()
    native.reset()
    states = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.2, 1.0]])
    for i in range(2):
        loop.envs[i].unwrapped.state = states[i].copy()
    native.backend.vector_env.unwrapped.state = states.T.copy()
    loop.envs[0]._elapsed_steps = 498
    native.backend.vector_env.unwrapped.steps[0] = 498
    actions = np.array([0, 1])
    rows = []
    for _ in range(2):
        a, b = loop.step_autoreset(actions), native.step_autoreset(actions)
        for i in range(2):
            if a[4][i]:
                assert_rows_equal(a, b, i)
            else:  # copy 1's reset row: flags equal, reset states from different RNGs
                assert [x[i] for x in a[1:]] == [x[i] for x in b[1:]]
        rows.append(a)
    # Step 1: copy 1 falls (terminated). Step 2: copy 0 hits step 500 (truncated), copy 1 resets.
    assert rows[0][2].tolist() == [False, True] and rows[0][3].tolist() == [False, False]
    assert rows[1][2].tolist() == [False, False] and rows[1][3].tolist() == [True, False]
    assert rows[1][4].tolist() == [True, False] and rows[1][1].tolist() == [1.0, 0.0]
    native.close()
    loop.close()


# ---------------------------------------------------------------- subprocess vs loop
def test_subprocess_matches_loop_with_step_autoreset():
    num_envs = 3
    loop = EnvVectorizer(gym.make("CartPole-v1"), num_envs, seed=5, backend="loop")
    sub = EnvVectorizer(gym.make("CartPole-v1"), num_envs, seed=5, backend="subprocess")
    try:
        assert isinstance(sub.backend, VectorEnvBackend)
        assert isinstance(sub.backend.vector_env, gym.vector.AsyncVectorEnv)
        a0, b0 = loop.reset()[0], sub.reset()[0]
        assert np.array_equal(a0, b0)
        assert len(np.unique(a0, axis=0)) == num_envs  # each copy seeded differently
        rng = np.random.default_rng(0)
        resets = ends = 0
        for k in range(100):
            actions = rng.integers(0, 2, size=num_envs)
            a, b = loop.step_autoreset(actions), sub.step_autoreset(actions)
            for i in range(num_envs):
                assert_rows_equal(a, b, i, f"step {k}")
            resets += int((~a[4]).sum())
            ends += int((a[2] | a[3]).sum())
        assert resets >= 3 and ends >= resets  # autoresets happened, and matched
    finally:
        sub.close()
        loop.close()


def _random_policy(seed: int):
    """Uniform random CartPole actions from a private generator: two policies made with the
    same seed give the same actions for the same sequence of calls."""
    rng = np.random.default_rng(seed)
    return lambda states: (rng.integers(0, 2, size=len(states)), None)


def test_subprocess_matches_loop_through_the_episode_api():
    num_envs = 3
    loop = EnvVectorizer(gym.make("CartPole-v1"), num_envs, seed=11, backend="loop")
    sub = EnvVectorizer(gym.make("CartPole-v1"), num_envs, seed=11, backend="subprocess")
    try:
        sa, sb = loop.reset()[0], sub.reset()[0]
        assert np.array_equal(sa, sb)
        rng = np.random.default_rng(2)
        active_counts = []
        while not loop.envs_active.all():
            running = loop.active_indices()
            assert np.array_equal(running, sub.active_indices())
            active_counts.append(len(running))
            actions = rng.integers(0, 2, size=len(running))
            a = loop.step(actions)
            b = sub.step(actions)
            for name, x, y in zip(FIELDS, a[:4], b[:4], strict=False):
                assert x.shape[0] == len(running)
                assert np.array_equal(x, y), name
            dones = a[2] | a[3]
            over = loop.envs_active.copy()
            over[running[dones]] = True
            loop.envs_active = over
            sub.envs_active = over
        assert active_counts[0] == num_envs and min(active_counts) < num_envs  # it shrank
    finally:
        sub.close()
        loop.close()


def test_subprocess_matches_loop_in_collect_episodes_first_round():
    loop = EnvVectorizer(gym.make("CartPole-v1"), 3, seed=21, backend="loop")
    sub = EnvVectorizer(gym.make("CartPole-v1"), 3, seed=21, backend="subprocess")
    try:
        mem_a, mem_b = VecMemory(3), VecMemory(3)
        ra = collect_episodes(loop, mem_a, _random_policy(0))
        rb = collect_episodes(sub, mem_b, _random_policy(0))
        assert ra.steps == rb.steps == len(mem_a) == len(mem_b) > 3
        assert len(np.unique(ra.episode_lengths)) > 1  # the active set really shrank
        assert np.array_equal(ra.episode_returns, rb.episode_returns)
        assert np.array_equal(ra.episode_lengths, rb.episode_lengths)
        ta, tb = mem_a.trajectories(), mem_b.trajectories()
        assert ta.keys() == tb.keys()
        for key in ta:
            assert np.array_equal(ta[key], tb[key], equal_nan=key == "log_probs"), key
    finally:
        sub.close()
        loop.close()


def test_subprocess_matches_loop_in_collect_episodes_second_round():
    loop = EnvVectorizer(gym.make("CartPole-v1"), 3, seed=21, backend="loop")
    sub = EnvVectorizer(gym.make("CartPole-v1"), 3, seed=21, backend="subprocess")
    policy_a, policy_b = _random_policy(0), _random_policy(0)
    try:
        for _ in range(2):
            mem_a, mem_b = VecMemory(3), VecMemory(3)
            ra = collect_episodes(loop, mem_a, policy_a)
            rb = collect_episodes(sub, mem_b, policy_b)
            assert np.array_equal(ra.episode_lengths, rb.episode_lengths)
            ta, tb = mem_a.trajectories(), mem_b.trajectories()
            for key in ta:
                assert np.array_equal(ta[key], tb[key], equal_nan=key == "log_probs"), key
    finally:
        sub.close()
        loop.close()


# ------------------------------------------------------------------ error contract
@pytest.mark.parametrize("backend", ["loop", "subprocess"])
@pytest.mark.parametrize("api", ["step_autoreset", "step"])
def test_env_error_names_copy_and_returns(backend, api):
    # seed 10: copies get seeds 10, 11, 12; only copy 2 (seed 12) raises, on its third step.
    vec = EnvVectorizer(functools.partial(make_raise_on_seed_env, 12, 2), 3, seed=10, backend=backend)
    finished = True
    try:
        states = vec.reset()[0]
        assert states[:, 0].tolist() == [0.0, 0.0, 0.0]
        stepper = getattr(vec, api)
        for t in (1, 2):
            out = stepper(np.zeros(3, dtype=np.int64))
            assert out[0][:, 0].tolist() == [t, t, t] and out[1].tolist() == [t, t, t]
        finished, error, _ = call_with_deadline(lambda: stepper(np.zeros(3, dtype=np.int64)))
        assert finished, "the failing step did not return within 30 s"
        assert isinstance(error, EnvStepError)
        message = str(error)
        assert "boom" in message and "ValueError" in message
        assert "env copy 2" in message and "step" in message
        assert error.env_index == 2
        if backend == "loop":
            assert isinstance(error.__cause__, ValueError)
    finally:
        close_vectorizer(vec, finished)


@pytest.mark.parametrize("backend", ["loop", "subprocess"])
def test_env_error_in_reset_names_copy(backend):
    vec = EnvVectorizer(
        functools.partial(make_raise_on_seed_env, 11, raise_in="reset"), 3, seed=10, backend=backend
    )
    finished = True
    try:
        finished, error, _ = call_with_deadline(vec.reset)
        assert finished
        assert isinstance(error, EnvStepError)
        assert "boom" in str(error) and "reset" in str(error) and "env copy 1" in str(error)
        assert error.env_index == 1
    finally:
        close_vectorizer(vec, finished)


def test_raising_env_factory_is_picklable_and_importable():
    factory = functools.partial(make_raise_on_seed_env, 12, 2)
    env = pickle.loads(pickle.dumps(factory))()
    assert type(env) is RaiseOnSeedEnv and type(env).__module__ == "conftest"
    assert env.reset(seed=12)[0].tolist() == [0.0, 0.0]
    env.step(0), env.step(0)
    with pytest.raises(ValueError, match="boom"):
        env.step(0)


@pytest.mark.slow
def test_subprocess_backend_under_spawn_start_method(monkeypatch):
    """Workers started with 'spawn' (macOS, Windows; no shared parent memory) import the env's
    class by name: the conftest env works there too, errors included."""
    original_init = gym.vector.AsyncVectorEnv.__init__

    def spawn_init(self, *args, **kwargs):
        kwargs["context"] = "spawn"
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(gym.vector.AsyncVectorEnv, "__init__", spawn_init)
    vec = EnvVectorizer(functools.partial(make_raise_on_seed_env, 11, 3), 2, seed=10, backend="subprocess")
    finished = True
    try:
        assert vec.backend.vector_env.context == "spawn"
        assert vec.reset()[0].tolist() == [[0.0, 0.0], [0.0, 0.0]]
        for t in (1, 2, 3):
            next_states, rewards, terminated, truncated, valid = vec.step_autoreset(np.array([1, 0]))
            assert next_states.tolist() == [[t, 1.0], [t, 0.0]]
            assert rewards.tolist() == [t, t] and valid.all() and not terminated.any()
        finished, error, _ = call_with_deadline(lambda: vec.step_autoreset(np.array([1, 0])))
        assert finished and isinstance(error, EnvStepError)
        assert error.env_index == 1 and "boom" in str(error)
    finally:
        close_vectorizer(vec, finished)


# -------------------------------------------------------------------- backend choice
def test_auto_picks_native_for_plain_cartpole():
    vec = EnvVectorizer(gym.make("CartPole-v1"), 2, seed=0, backend="auto")
    assert isinstance(vec.backend, VectorEnvBackend)
    assert isinstance(vec.backend.vector_env.unwrapped, CartPoleVectorEnv)
    assert vec.backend.vector_env.num_envs == 2
    assert vec.reset()[0].shape == (2, 4)
    vec.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda: gym.wrappers.ClipReward(gym.make("CartPole-v1"), 0.0, 0.5),
        lambda: gym.wrappers.TransformReward(gym.make("CartPole-v1"), lambda r: 2.0 * r),
        lambda: gym.make("Pendulum-v1"),
        lambda: CounterEnv(3),
        # The spec then says 1000 steps, but the inner TimeLimit still truncates at 500.
        lambda: gym.wrappers.TimeLimit(gym.make("CartPole-v1"), max_episode_steps=1000),
        lambda: gym.make("CartPole-v1").env,  # no TimeLimit
    ],
    ids=["ClipReward", "TransformReward", "Pendulum", "custom", "outer-TimeLimit", "no-TimeLimit"],
)
def test_auto_picks_loop_without_an_exact_native_implementation(make):
    env = make()
    vec = EnvVectorizer(env, 2, seed=0, backend="auto")
    assert isinstance(vec.backend, LoopBackend)
    assert len(vec.envs) == 2 and vec.envs[0] is env
    vec.reset()
    if isinstance(env, gym.wrappers.ClipReward):  # the wrapper is really applied
        rewards = vec.step_autoreset(np.zeros(2, dtype=np.int64))[1]
        assert rewards.tolist() == [0.5, 0.5]
    vec.close()


def test_auto_picks_loop_for_the_bare_unwrapped_cartpole():
    """`.unwrapped` keeps the spec (max_episode_steps=500) but has no TimeLimit: the native
    vector env would truncate at 500 steps where the loop never does."""
    env = gym.make("CartPole-v1").unwrapped
    vec = EnvVectorizer(env, 2, seed=0, backend="auto")
    try:
        assert isinstance(vec.backend, LoopBackend) and vec.envs[0] is env
    finally:
        vec.close()
    with pytest.raises(ValueError, match="backend"):
        EnvVectorizer(gym.make("CartPole-v1").unwrapped, 2, backend="native")


def test_auto_native_keeps_a_custom_time_limit():
    env = gym.make("CartPole-v1", max_episode_steps=20)
    loop = EnvVectorizer(env, 2, seed=0, backend="loop")
    vec = EnvVectorizer(env, 2, seed=0, backend="auto")
    try:
        assert isinstance(vec.backend, VectorEnvBackend)
        assert vec.backend.vector_env.unwrapped.max_episode_steps == 20
        loop.reset()
        vec.reset()
        state = np.zeros(4)
        for i in range(2):
            loop.envs[i].unwrapped.state = state.copy()
        vec.backend.vector_env.unwrapped.state = np.zeros((4, 2))
        # Alternating pushes keep the pole up: both end by the 20-step limit, on step 20.
        for k in range(20):
            actions = np.full(2, k % 2)
            a, b = loop.step_autoreset(actions), vec.step_autoreset(actions)
            for i in range(2):
                assert_rows_equal(a, b, i, f"step {k}")
            assert not a[2].any() and a[3].tolist() == [k == 19] * 2
    finally:
        vec.close()
        loop.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda: gym.make("Pendulum-v1"),
        lambda: gym.wrappers.ClipReward(gym.make("CartPole-v1"), 0.0, 0.5),
        lambda: CounterEnv(3),
        lambda: lambda: gym.make("CartPole-v1"),  # a factory, not an env
    ],
    ids=["Pendulum", "wrapped-CartPole", "custom", "factory"],
)
def test_native_without_a_vector_implementation_raises(make):
    with pytest.raises(ValueError, match="backend"):
        EnvVectorizer(make(), 2, backend="native")


@pytest.mark.parametrize("backend", ["gpu", "Loop", "", None])
def test_unknown_backend_lists_the_choices(backend):
    with pytest.raises(ValueError, match="backend") as info:
        EnvVectorizer(CounterEnv(3), 2, backend=backend)
    for choice in ("auto", "loop", "native", "subprocess"):
        assert repr(choice) in str(info.value)
    assert set(BACKENDS) == {"auto", "loop", "native", "subprocess"}


# ------------------------------------------------------------- one PPO update step
def _pendulum_round(backend: str) -> tuple[PPO, dict[str, torch.Tensor], object]:
    ppo = PPO(True, 3, 1, batch_size=32, mini_batch_size=16, k_epochs=2, seed=7, device="cpu")
    before = {k: v.clone() for k, v in ppo.policy.state_dict().items()}
    trainer = AsyncPPO(
        lambda: gym.make("Pendulum-v1"),
        ppo,
        num_envs=2,
        seed=3,
        progress_bar=False,
        rollout="steps",
        num_steps=16,
        backend=backend,
    )
    try:
        collected = trainer.train_round()
    finally:
        trainer.close()
    return ppo, before, collected


def test_one_update_is_identical_on_loop_and_subprocess():
    loop_ppo, before, loop_round = _pendulum_round("loop")
    sub_ppo, sub_before, sub_round = _pendulum_round("subprocess")
    assert loop_round.steps == sub_round.steps == 32
    assert loop_ppo.stats["num_samples"] == sub_ppo.stats["num_samples"] == 32.0
    assert loop_ppo.stats["gradient_steps"] == 4.0
    changed = 0
    for (name, a), (_, b) in zip(
        loop_ppo.policy.named_parameters(), sub_ppo.policy.named_parameters(), strict=True
    ):
        assert torch.equal(a, b), name
        changed += not torch.equal(a.detach(), before[name])
        assert torch.equal(before[name], sub_before[name])
    assert changed > 0  # the update really moved the weights
    for key, value in loop_ppo.policy.state_dict().items():
        assert torch.equal(value, sub_ppo.policy.state_dict()[key]), key


class SlowStepEnv(gym.Env):
    """A step that costs about 2 ms."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        time.sleep(0.002)
        return np.zeros(2, np.float32), 0.0, False, False, {}


@pytest.mark.parametrize("cores, expected", [(8, "subprocess"), (2, "loop")])
def test_auto_picks_subprocess_for_slow_envs_only_with_cores_to_spare(monkeypatch, cores, expected):
    from AsyncTools import vectorizer as vectorizer_module

    monkeypatch.setattr(vectorizer_module.os, "cpu_count", lambda: cores)
    assert vectorizer_module._auto_backend(SlowStepEnv(), num_envs=4) == expected
    assert vectorizer_module._auto_backend(gym.make("Pendulum-v1"), num_envs=4) == "loop"
