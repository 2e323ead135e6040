"""AsyncTools.utils: the original project's loop helpers, and the truncation path through
buffer_append -> VecMemory -> buffer_to_target_buffer_transfer -> PPO.Memory."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import counter_factory, take_flat

from AsyncTools import utils
from AsyncTools.vec_memory import VecMemory
from AsyncTools.vectorizer import EnvVectorizer
from PPO.Memory import Memory

F, T = False, True


# ---------------------------------------------------------- index helpers
def test_indexes_of_active_environments():
    np.testing.assert_array_equal(utils.indexes_of_active_environments(4, np.array([F, T, F, T])), [0, 2])
    np.testing.assert_array_equal(utils.indexes_of_active_environments(3, np.array([F, F, F])), [0, 1, 2])
    assert utils.indexes_of_active_environments(3, np.array([T, T, T])).size == 0


def test_number_of_active_environments():
    assert utils.number_of_active_environments(np.array([F, T, F, T, F])) == 3
    assert utils.number_of_active_environments(np.array([T, T])) == 0
    assert utils.number_of_active_environments(np.zeros(6, dtype=bool)) == 6


def test_range_of_active_environments():
    np.testing.assert_array_equal(utils.range_of_active_environments(np.array([T, F, T, F, F])), [0, 1, 2])
    assert utils.range_of_active_environments(np.array([T, T])).size == 0


def test_inactive_states_dropout():
    next_states = np.arange(8, dtype=np.float32).reshape(4, 2)
    kept = utils.inactive_states_dropout(next_states, np.array([F, T, F, T]))
    np.testing.assert_array_equal(kept, [[0, 1], [4, 5]])
    np.testing.assert_array_equal(utils.inactive_states_dropout(next_states, np.zeros(4, bool)), next_states)
    assert utils.inactive_states_dropout(next_states, np.ones(4, bool)).shape == (0, 2)


def test_update_active_environments_list_returns_new_array():
    is_env_terminal = np.array([F, T, F, F])
    before = is_env_terminal.copy()
    # dones has one entry per running env (0, 2, 3).
    updated = utils.update_active_environments_list(is_env_terminal, np.array([T, F, T]))
    np.testing.assert_array_equal(updated, [T, T, F, T])
    assert updated is not is_env_terminal
    np.testing.assert_array_equal(is_env_terminal, before)
    # Nothing ended: unchanged values.
    np.testing.assert_array_equal(utils.update_active_environments_list(updated, np.array([F])), [T, T, F, T])
    # The last running env ends: all over.
    assert utils.update_active_environments_list(updated, np.array([T])).all()


def test_update_active_environments_list_keeps_vectorizer_flags_usable():
    vec = EnvVectorizer(counter_factory([(1, "terminate"), (3, "terminate")]), num_envs=2)
    vec.reset()
    before = vec.envs_active
    vec.envs_active = utils.update_active_environments_list(vec.envs_active, np.array([T, F]))
    np.testing.assert_array_equal(vec.envs_active, [T, F])
    np.testing.assert_array_equal(before, [F, F])


# --------------------------------------------------- README loop + truncation
def readme_loop(env: EnvVectorizer, buffer: VecMemory, num_envs: int, action: int = 1):
    """The README's custom loop body (without the learner), with a constant action."""
    states = env.reset()[0]
    seen_states = [states]
    while True:
        actions = np.full(len(states), action, dtype=np.int64)
        next_states, rewards, dones, truncates, _ = env.step(actions)
        utils.buffer_append(
            buffer,
            states,
            actions,
            rewards,
            dones | truncates,
            is_env_terminal=env.envs_active,
            num_envs=num_envs,
        )
        states = utils.inactive_states_dropout(next_states, dones | truncates)
        env.envs_active = utils.update_active_environments_list(env.envs_active, dones | truncates)
        seen_states.append(states)
        if np.all(env.envs_active):
            return seen_states


def test_readme_loop_flags_truncated_and_terminated_ends():
    # env 0 terminates after 3 steps, env 1 is truncated by TimeLimit after 5, env 2
    # terminates after 4, env 3 terminates and hits the time limit at the same step (2).
    specs = [(3, "terminate"), (5, "truncate"), (4, "terminate"), (2, "both")]
    env = EnvVectorizer(counter_factory(specs), num_envs=4)
    buffer = VecMemory(num_envs=4)
    readme_loop(env, buffer, num_envs=4)
    np.testing.assert_array_equal(buffer.lengths, [3, 5, 4, 2])

    target = Memory("cpu")
    utils.buffer_to_target_buffer_transfer(buffer, target)
    assert len(buffer) == 0 and buffer.trajectories() == {}
    assert len(target) == 14
    batch = take_flat(target)

    # Layout: env 0 steps 0-2, env 1 steps 3-7, env 2 steps 8-11, env 3 steps 12-13.
    states = batch.states.numpy()
    expected_states = [
        [o + t, 0 if t == 0 else 1] for o, n in ((0, 3), (100, 5), (200, 4), (300, 2)) for t in range(n)
    ]
    np.testing.assert_array_equal(states, expected_states)
    np.testing.assert_array_equal(
        batch.rewards.numpy(), [1, 2, 3, 101, 102, 103, 104, 105, 201, 202, 203, 204, 301, 302]
    )
    np.testing.assert_array_equal(batch.actions.numpy(), np.ones(14))
    terminated = np.zeros(14, dtype=bool)
    terminated[[2, 11, 13]] = True
    truncated = np.zeros(14, dtype=bool)
    truncated[7] = True
    np.testing.assert_array_equal(batch.terminated.numpy(), terminated)
    np.testing.assert_array_equal(batch.truncated.numpy(), truncated)
    # The true final observations (the next_states of the closing steps), not the last states.
    np.testing.assert_array_equal(batch.final_states.numpy(), [[3, 1], [105, 1], [204, 1], [302, 1]])


def test_readme_loop_all_truncated_bootstrap_states():
    env = EnvVectorizer(counter_factory([(2, "truncate"), (3, "truncate")]), num_envs=2)
    buffer = VecMemory(num_envs=2)
    readme_loop(env, buffer, num_envs=2, action=0)
    target = Memory("cpu")
    utils.buffer_to_target_buffer_transfer(buffer, target)
    rollout = target.take()
    batch = rollout.trajectories()
    np.testing.assert_array_equal(batch["terminated"], [F] * 5)
    np.testing.assert_array_equal(batch["truncated"], [F, T, F, F, T])
    np.testing.assert_array_equal(batch["final_states"], [[2, 0], [103, 0]])
    # next_states() of the rollout: the following row inside a trajectory, the final state at
    # the end (copy 0's column, then copy 1's)
    next_states = rollout.next_states().swapaxes(0, 1)[rollout.valid.T]
    np.testing.assert_array_equal(next_states.numpy(), [[1, 0], [2, 0], [101, 0], [102, 0], [103, 0]])


def test_two_rounds_accumulate_in_target_memory():
    env = EnvVectorizer(counter_factory([(2, "terminate"), (1, "truncate")]), num_envs=2)
    target = Memory("cpu")
    buffer = VecMemory(num_envs=2)
    for _ in range(2):
        readme_loop(env, buffer, num_envs=2)
        utils.buffer_to_target_buffer_transfer(buffer, target)
        assert len(buffer) == 0
    batch = take_flat(target)  # the rounds joined along time: copy 0's two rounds, then copy 1's
    np.testing.assert_array_equal(batch.terminated.numpy(), [F, T, F, T, F, F])
    np.testing.assert_array_equal(batch.truncated.numpy(), [F, F, F, F, T, T])
    np.testing.assert_array_equal(batch.final_states.numpy(), [[2, 1], [2, 1], [101, 1], [101, 1]])


def test_explicit_keyword_path():
    buffer = VecMemory(num_envs=3)
    is_env_terminal = np.array([F, F, F])
    states = np.array([[0, 0], [10, 0], [20, 0]], dtype=np.float32)
    next_states = np.array([[1, 0], [11, 0], [21, 0]], dtype=np.float32)
    utils.buffer_append(
        buffer,
        states,
        np.array([0, 1, 0]),
        np.array([1.0, 2.0, 3.0]),
        np.array([T, T, F]),
        is_env_terminal=is_env_terminal,
        num_envs=3,
        terminated=np.array([F, T, F]),
        truncated=np.array([T, F, F]),
        next_states=next_states,
    )
    is_env_terminal = utils.update_active_environments_list(is_env_terminal, np.array([T, T, F]))
    utils.buffer_append(
        buffer,
        np.array([[21, 0]], dtype=np.float32),
        np.array([1]),
        np.array([4.0]),
        np.array([T]),
        is_env_terminal=is_env_terminal,
        num_envs=3,
        terminated=np.array([T]),
        truncated=np.array([F]),
        next_states=np.array([[22, 0]], dtype=np.float32),
    )
    target = Memory("cpu")
    utils.buffer_to_target_buffer_transfer(buffer, target)
    assert len(buffer) == 0
    batch = take_flat(target)
    np.testing.assert_array_equal(batch.states.numpy(), [[0, 0], [10, 0], [20, 0], [21, 0]])
    np.testing.assert_array_equal(batch.rewards.numpy(), [1, 2, 3, 4])
    np.testing.assert_array_equal(batch.terminated.numpy(), [F, T, F, T])
    np.testing.assert_array_equal(batch.truncated.numpy(), [T, F, F, F])
    np.testing.assert_array_equal(batch.final_states.numpy(), [[1, 0], [11, 0], [22, 0]])


def test_explicit_keywords_mask_flags_by_dones():
    # A terminated/truncated flag for an env whose `dones` entry is False does not end it.
    buffer = VecMemory(num_envs=2)
    utils.buffer_append(
        buffer,
        np.zeros((2, 2), np.float32),
        np.array([0, 0]),
        np.zeros(2),
        np.array([F, T]),
        is_env_terminal=np.array([F, F]),
        num_envs=2,
        terminated=np.array([T, F]),
        truncated=np.array([F, T]),
        next_states=np.ones((2, 2), np.float32),
    )
    out = buffer.trajectories()
    # env 0 did not end at its only step: it is closed as truncated by trajectories().
    np.testing.assert_array_equal(out["terminated"], [F, F])
    np.testing.assert_array_equal(out["truncated"], [T, T])


def test_terminated_and_truncated_both_set_counts_as_termination():
    buffer = VecMemory(num_envs=1)
    utils.buffer_append(
        buffer,
        np.zeros((1, 2), np.float32),
        np.array([0]),
        np.zeros(1),
        np.array([T]),
        is_env_terminal=np.array([F]),
        num_envs=1,
        terminated=np.array([T]),
        truncated=np.array([T]),
        next_states=np.full((1, 2), 5, np.float32),
    )
    out = buffer.trajectories()
    np.testing.assert_array_equal(out["terminated"], [T])
    np.testing.assert_array_equal(out["truncated"], [F])


def test_truncated_keyword_alone_is_honoured():
    buffer = VecMemory(num_envs=2)
    utils.buffer_append(
        buffer,
        np.zeros((2, 2), np.float32),
        np.array([0, 0]),
        np.zeros(2),
        np.array([T, T]),
        is_env_terminal=np.array([F, F]),
        num_envs=2,
        truncated=np.array([T, F]),
        next_states=np.ones((2, 2), np.float32),
    )
    out = buffer.trajectories()
    np.testing.assert_array_equal(out["truncated"], [T, F])
    np.testing.assert_array_equal(out["terminated"], [F, T])


def test_plain_array_path_every_end_is_a_termination():
    buffer = VecMemory(num_envs=3)
    is_env_terminal = np.array([F, F, F])
    states = np.array([[0, 0], [10, 0], [20, 0]], dtype=np.float32)
    dones = np.array([T, F, T])
    utils.buffer_append(
        buffer,
        states,
        np.array([1, 1, 1]),
        np.array([1.0, 2.0, 3.0]),
        dones,
        is_env_terminal=is_env_terminal,
        num_envs=3,
    )
    is_env_terminal = utils.update_active_environments_list(is_env_terminal, dones)
    np.testing.assert_array_equal(is_env_terminal, [T, F, T])
    utils.buffer_append(
        buffer,
        np.array([[11, 0]], dtype=np.float32),
        np.array([0]),
        np.array([4.0]),
        np.array([F]),
        is_env_terminal=is_env_terminal,
        num_envs=3,
    )
    out = buffer.trajectories()
    np.testing.assert_array_equal(out["states"], [[0, 0], [10, 0], [11, 0], [20, 0]])
    np.testing.assert_array_equal(out["actions"], [1, 1, 0, 1])
    np.testing.assert_array_equal(out["rewards"], [1, 2, 4, 3])
    np.testing.assert_array_equal(out["terminated"], [T, F, F, T])
    # env 1 never ended: closed as truncated by trajectories().
    np.testing.assert_array_equal(out["truncated"], [F, F, T, F])
    assert out["final_states"].shape == (3, 2)

    target = Memory("cpu")
    utils.buffer_to_target_buffer_transfer(buffer, target)
    assert len(buffer) == 0
    batch = take_flat(target)
    np.testing.assert_array_equal(batch.terminated.numpy(), [T, F, F, T])


def test_plain_copy_of_envs_active_uses_plain_path():
    # np.array(...) of the vectorizer's flags drops the link: ends count as terminations.
    env = EnvVectorizer(counter_factory([(1, "truncate")]), num_envs=1)
    states = env.reset()[0]
    next_states, rewards, dones, truncates, _ = env.step(np.array([1]))
    buffer = VecMemory(num_envs=1)
    utils.buffer_append(
        buffer,
        states,
        np.array([1]),
        rewards,
        dones | truncates,
        is_env_terminal=np.array(env.envs_active),
        num_envs=1,
    )
    out = buffer.trajectories()
    np.testing.assert_array_equal(out["terminated"], [T])
    np.testing.assert_array_equal(out["truncated"], [F])


def test_buffer_append_checks_row_count():
    buffer = VecMemory(num_envs=3)
    with pytest.raises(ValueError, match="states"):
        utils.buffer_append(
            buffer,
            np.zeros((3, 2)),
            np.zeros(3),
            np.zeros(3),
            np.zeros(3, bool),
            is_env_terminal=np.array([F, T, F]),
            num_envs=3,
        )
    assert len(buffer) == 0


def test_transfer_of_empty_buffer_is_a_no_op():
    buffer = VecMemory(num_envs=2)
    target = Memory("cpu")
    utils.buffer_to_target_buffer_transfer(buffer, target)
    assert len(target) == 0
    with pytest.raises(ValueError, match="empty"):
        target.take()
