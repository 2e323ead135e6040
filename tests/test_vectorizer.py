"""EnvVectorizer: independent copies, per-copy RNG, seeding, stepping only running envs, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    ActionRecorderEnv,
    CounterEnv,
    NonFiniteEnv,
    RaisingEnv,
    RandomResetEnv,
    counter_factory,
    make_counter_env,
)

from AsyncTools.vectorizer import EnvStepError, EnvVectorizer


# ------------------------------------------------------------------ copies
def test_copies_are_distinct_objects_and_step_independently():
    vec = EnvVectorizer(CounterEnv(episode_length=None), num_envs=3)
    unwrapped = [env.unwrapped for env in vec.envs]
    assert len({id(env) for env in vec.envs}) == 3
    assert len({id(env) for env in unwrapped}) == 3
    vec.reset(seed=0)
    unwrapped[0].step(1)
    unwrapped[0].step(1)
    assert [env.t for env in unwrapped] == [2, 0, 0]

    # Through the vectorizer: only env 1 still running -> only env 1 advances.
    vec.envs_active = np.array([True, False, True])
    vec.step(np.array([0]))
    assert [env.t for env in unwrapped] == [2, 1, 0]


def test_cartpole_copies_do_not_share_state(cartpole):
    vec = EnvVectorizer(cartpole, num_envs=3, seed=5)
    states, _ = vec.reset()
    before = [np.array(env.unwrapped.state, copy=True) for env in vec.envs]
    vec.envs_active = np.array([False, True, True])
    next_states, *_ = vec.step(np.array([1]))
    after = [np.array(env.unwrapped.state) for env in vec.envs]
    assert not np.allclose(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[2], before[2])
    np.testing.assert_allclose(next_states[0], after[0], rtol=1e-6)


# --------------------------------------------------------------------- RNG
def test_first_reset_of_cartpole_copies_differs_between_copies_unseeded(cartpole):
    vec = EnvVectorizer(cartpole, num_envs=4)
    states, infos = vec.reset()
    assert states.shape == (4, 4) and states.dtype == np.float32
    assert len(infos) == 4
    assert len({row.tobytes() for row in states}) == 4


def test_first_reset_of_copies_differs_with_seed():
    vec = EnvVectorizer(RandomResetEnv(), num_envs=5, seed=123)
    states, _ = vec.reset()
    assert len({row.tobytes() for row in states}) == 5
    # Copy i is seeded seed + i.
    for i in range(5):
        expected, _ = RandomResetEnv().reset(seed=123 + i)
        np.testing.assert_array_equal(states[i], expected)


def test_same_seed_gives_identical_resets_and_steps():
    def rollout(seed):
        vec = EnvVectorizer(gym.make("CartPole-v1"), num_envs=4, seed=seed)
        states, _ = vec.reset()
        trace = [states]
        for step in range(5):
            actions = np.arange(4) % 2 if step % 2 else 1 - np.arange(4) % 2
            next_states, rewards, terminated, truncated, _ = vec.step(actions)
            trace += [next_states, rewards, terminated, truncated]
        return trace

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])


def test_later_resets_draw_fresh_states_from_each_copys_rng():
    vec = EnvVectorizer(RandomResetEnv(), num_envs=3, seed=0)
    first, _ = vec.reset()
    second, _ = vec.reset()
    assert not np.array_equal(first, second)
    assert len({row.tobytes() for row in second}) == 3
    # reset(seed=...) reseeds every copy with seed + i.
    again, _ = vec.reset(seed=0)
    np.testing.assert_array_equal(again, first)


def test_accepts_a_callable_factory():
    calls = []

    def make():
        calls.append(1)
        return CounterEnv(episode_length=4, offset=10 * len(calls))

    vec = EnvVectorizer(make, num_envs=3)
    assert len(calls) == 3
    assert vec.num_envs == 3 and len(vec.envs) == 3
    states, _ = vec.reset()
    np.testing.assert_array_equal(states[:, 0], [10.0, 20.0, 30.0])
    assert vec.action_space == gym.spaces.Discrete(2)
    assert vec.observation_space.shape == (2,)


def test_rejects_non_env():
    with pytest.raises(TypeError, match="env"):
        EnvVectorizer(42, num_envs=2)
    with pytest.raises(ValueError, match="num_envs"):
        EnvVectorizer(CounterEnv(), num_envs=0)


# -------------------------------------------------------------------- step
def test_step_only_steps_running_envs_in_env_order():
    vec = EnvVectorizer(counter_factory([(None, "terminate")] * 4), num_envs=4)
    states, _ = vec.reset()
    np.testing.assert_array_equal(states, [[0, 0], [100, 0], [200, 0], [300, 0]])

    vec.envs_active = np.array([False, True, False, False])
    next_states, rewards, terminated, truncated, infos = vec.step(np.array([1, 0, 1]))
    np.testing.assert_array_equal(next_states, [[1, 1], [201, 0], [301, 1]])
    np.testing.assert_array_equal(rewards, [1.0, 201.0, 301.0])
    assert rewards.dtype == np.float32
    assert terminated.dtype == bool and truncated.dtype == bool
    np.testing.assert_array_equal(terminated, [False, False, False])
    np.testing.assert_array_equal(truncated, [False, False, False])
    assert [info["t"] for info in infos] == [1, 1, 1]
    assert [env.unwrapped.t for env in vec.envs] == [1, 0, 1, 1]
    assert [list(env.unwrapped.received_actions) for env in vec.envs] == [[1], [], [0], [1]]

    vec.envs_active = np.array([True, True, False, True])
    next_states, rewards, *_ = vec.step(np.array([0]))
    np.testing.assert_array_equal(next_states, [[202, 0]])
    np.testing.assert_array_equal(rewards, [202.0])
    np.testing.assert_array_equal(vec.active_indices(), [2])


def test_terminated_and_truncated_come_from_the_env():
    vec = EnvVectorizer(counter_factory([(2, "terminate"), (2, "truncate"), (5, "terminate")]), num_envs=3)
    vec.reset()
    _, _, terminated, truncated, _ = vec.step(np.zeros(3, dtype=np.int64))
    np.testing.assert_array_equal(terminated | truncated, [False, False, False])
    _, _, terminated, truncated, _ = vec.step(np.zeros(3, dtype=np.int64))
    np.testing.assert_array_equal(terminated, [True, False, False])
    np.testing.assert_array_equal(truncated, [False, True, False])


# ------------------------------------------------------------- envs_active
def test_envs_active_means_episode_over():
    vec = EnvVectorizer(CounterEnv(episode_length=1), num_envs=3)
    vec.reset()
    np.testing.assert_array_equal(vec.envs_active, [False, False, False])
    assert vec.envs_active.dtype == bool
    np.testing.assert_array_equal(vec.active_indices(), [0, 1, 2])
    _, _, terminated, _, _ = vec.step(np.zeros(3, dtype=np.int64))
    assert terminated.all()
    # The caller marks the ended episodes, as in the original loop.
    vec.envs_active = vec.envs_active | np.array([True, False, True])
    np.testing.assert_array_equal(vec.envs_active, [True, False, True])
    np.testing.assert_array_equal(vec.active_indices(), [1])
    # reset() starts a new episode everywhere.
    vec.reset()
    np.testing.assert_array_equal(vec.envs_active, [False, False, False])


def test_envs_active_setter_copies_its_input():
    vec = EnvVectorizer(CounterEnv(), num_envs=2)
    flags = np.array([True, False])
    vec.envs_active = flags
    flags[1] = True
    np.testing.assert_array_equal(vec.envs_active, [True, False])


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros(4, dtype=bool),  # wrong length
        np.zeros((3, 1), dtype=bool),  # wrong shape
        np.zeros(3, dtype=np.int64),  # wrong dtype
        np.zeros(3, dtype=np.float32),  # wrong dtype
    ],
)
def test_envs_active_setter_rejects_wrong_shape_or_dtype(bad):
    vec = EnvVectorizer(CounterEnv(), num_envs=3)
    with pytest.raises(ValueError, match="envs_active"):
        vec.envs_active = bad
    np.testing.assert_array_equal(vec.envs_active, [False, False, False])


@pytest.mark.parametrize("num_actions", [2, 4, 0])
def test_wrong_number_of_actions_raises(num_actions):
    vec = EnvVectorizer(CounterEnv(episode_length=None), num_envs=3)
    vec.reset()
    with pytest.raises(ValueError, match="actions"):
        vec.step(np.zeros(num_actions, dtype=np.int64))
    assert [env.t for env in vec.envs] == [0, 0, 0]


def test_wrong_number_of_actions_counts_running_envs_only():
    vec = EnvVectorizer(CounterEnv(episode_length=None), num_envs=3)
    vec.reset()
    vec.envs_active = np.array([True, False, False])
    with pytest.raises(ValueError, match="actions"):
        vec.step(np.zeros(3, dtype=np.int64))


# ----------------------------------------------------------------- errors
def test_env_raising_in_step_becomes_env_step_error():
    envs = iter([CounterEnv(episode_length=None), RaisingEnv(k=2), CounterEnv(episode_length=None)])
    vec = EnvVectorizer(lambda: next(envs), num_envs=3)
    vec.reset()
    vec.step(np.zeros(3, dtype=np.int64))
    vec.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(EnvStepError) as info:
        vec.step(np.zeros(3, dtype=np.int64))
    error = info.value
    message = str(error)
    assert "1" in message and "boom" in message
    assert "env copy 1" in message
    assert error.env_index == 1
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "boom"
    assert isinstance(error, RuntimeError)


def test_non_finite_observation_names_the_env_copy():
    envs = iter([CounterEnv(episode_length=None), CounterEnv(episode_length=None), NonFiniteEnv(2)])
    vec = EnvVectorizer(lambda: next(envs), num_envs=3)
    vec.reset()
    vec.step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"env cop(y|ies) \[?2\]?"):
        vec.step(np.zeros(3, dtype=np.int64))


def test_non_finite_observation_names_the_env_copy_among_running_ones():
    envs = iter([CounterEnv(episode_length=None), CounterEnv(episode_length=None), NonFiniteEnv(1)])
    vec = EnvVectorizer(lambda: next(envs), num_envs=3)
    vec.reset()
    vec.envs_active = np.array([False, True, False])
    # Row 1 of the step result belongs to env copy 2: the message must name copy 2, not 1.
    with pytest.raises(ValueError, match=r"env cop(y|ies) \[?2\]?") as info:
        vec.step(np.zeros(2, dtype=np.int64))
    assert "[1]" not in str(info.value)


def test_non_finite_observation_at_reset():
    envs = iter([NonFiniteEnv(0), CounterEnv()])
    vec = EnvVectorizer(lambda: next(envs), num_envs=2)
    with pytest.raises(ValueError, match=r"env cop(y|ies) \[?0\]?"):
        vec.reset()


# ---------------------------------------------------------------- actions
def test_continuous_actions_are_clipped_but_callers_array_is_not_modified():
    vec = EnvVectorizer(ActionRecorderEnv(low=(-1.0, 0.0), high=(1.0, 2.0)), num_envs=2)
    vec.reset()
    actions = np.array([[5.0, -3.0], [0.25, 1.5]], dtype=np.float32)
    original = actions.copy()
    _, rewards, *_ = vec.step(actions)
    np.testing.assert_array_equal(actions, original)
    np.testing.assert_array_equal(vec.envs[0].unwrapped.received[0], [1.0, 0.0])
    np.testing.assert_array_equal(vec.envs[1].unwrapped.received[0], [0.25, 1.5])
    np.testing.assert_allclose(rewards, [-1.0, -(0.25**2 + 1.5**2)], rtol=1e-6)


def test_clip_actions_false_passes_actions_through():
    vec = EnvVectorizer(ActionRecorderEnv(), num_envs=1, clip_actions=False)
    vec.reset()
    vec.step(np.array([[5.0, -3.0]]))
    np.testing.assert_array_equal(vec.envs[0].unwrapped.received[0], [5.0, -3.0])


def test_discrete_actions_are_passed_unchanged():
    vec = EnvVectorizer(CounterEnv(episode_length=None), num_envs=2)
    vec.reset()
    vec.step(np.array([1, 0]))
    assert [env.received_actions for env in vec.envs] == [[1], [0]]


# --------------------------------------------------------- last_* records
def test_last_step_flags_and_next_states_are_recorded():
    vec = EnvVectorizer(counter_factory([(1, "terminate"), (2, "truncate"), (3, "terminate")]), num_envs=3)
    states, _ = vec.reset()
    np.testing.assert_array_equal(vec.last_next_states, states)
    np.testing.assert_array_equal(vec.last_terminated, [False, False, False])
    np.testing.assert_array_equal(vec.last_truncated, [False, False, False])

    next_states, _, terminated, truncated, _ = vec.step(np.array([1, 1, 1]))
    np.testing.assert_array_equal(vec.last_terminated, [True, False, False])
    np.testing.assert_array_equal(vec.last_truncated, [False, False, False])
    np.testing.assert_array_equal(vec.last_next_states, [[1, 1], [101, 1], [201, 1]])

    vec.envs_active = np.array([True, False, False])
    vec.step(np.array([0, 0]))
    # Env 0 was not stepped: its record is left as it was.
    np.testing.assert_array_equal(vec.last_terminated, [True, False, False])
    np.testing.assert_array_equal(vec.last_truncated, [False, True, False])
    np.testing.assert_array_equal(vec.last_next_states, [[1, 1], [102, 0], [202, 0]])


def test_envs_active_remembers_its_vectorizer():
    vec = EnvVectorizer(CounterEnv(), num_envs=2)
    vec.reset()
    assert vec.envs_active.vectorizer is vec
    derived = vec.envs_active | np.array([True, False])
    assert getattr(derived, "vectorizer", None) is vec


def test_close_closes_every_copy():
    closed = []

    class Closing(CounterEnv):
        def close(self):
            closed.append(id(self))

    vec = EnvVectorizer(Closing, num_envs=3)
    vec.close()
    assert sorted(closed) == sorted(id(env) for env in vec.envs)


def test_time_limit_wrapper_is_copied_per_env():
    vec = EnvVectorizer(make_counter_env(3, "truncate"), num_envs=2)
    vec.reset()
    for _ in range(2):
        _, _, terminated, truncated, _ = vec.step(np.zeros(2, dtype=np.int64))
        assert not truncated.any()
    _, _, terminated, truncated, _ = vec.step(np.zeros(2, dtype=np.int64))
    np.testing.assert_array_equal(truncated, [True, True])
    np.testing.assert_array_equal(terminated, [False, False])


def test_a_part_of_a_run_is_seeded_as_those_copies_of_the_whole_run():
    """Copies 2..3 of a run of 5, stepped alone (as a Ray worker does), reset exactly as copies
    2..3 of one vectorizer of all 5: on the first reset and on every later one."""
    whole = EnvVectorizer(gym.make("CartPole-v1"), 5, seed=7)
    part = EnvVectorizer(gym.make("CartPole-v1"), 2, seed=7, first_copy=2, total_copies=5)
    for _ in range(3):
        np.testing.assert_array_equal(part.reset()[0], whole.reset()[0][2:4])
    np.testing.assert_array_equal(part.reset(seed=100)[0], whole.reset(seed=100)[0][2:4])


def test_a_part_that_does_not_fit_its_run_is_named():
    with pytest.raises(ValueError, match=r"total_copies: copies 3\.\.4 do not fit in a run of 4"):
        EnvVectorizer(gym.make("CartPole-v1"), 2, seed=0, first_copy=3, total_copies=4)
