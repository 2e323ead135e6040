"""VecMemory: per-env trajectories, laid out env by env, with final states for every closing step."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import take_flat

from AsyncTools.vec_memory import VecMemory
from PPO.Memory import Memory

F, T = False, True


def s(*values):
    """A [k, 2] float32 array of states [v, -v]."""
    return np.array([[v, -v] for v in values], dtype=np.float32)


def test_subsets_are_laid_out_env_by_env_with_exact_values():
    memory = VecMemory(num_envs=3)
    # step 0: all three envs run; env 1 terminates.
    memory.append(
        [0, 1, 2],
        s(0, 10, 20),
        np.array([0, 1, 0]),
        [1.0, 2.0, 3.0],
        [F, T, F],
        [F, F, F],
        next_states=s(1, 11, 21),
    )
    # step 1: envs 0 and 2; env 0 terminates.
    memory.append([0, 2], s(1, 21), np.array([1, 1]), [4.0, 5.0], [T, F], [F, F], next_states=s(2, 22))
    # step 2: env 2 alone, truncated.
    memory.append([2], s(22), np.array([0]), [6.0], [F], [T], next_states=s(23))
    assert len(memory) == 6
    np.testing.assert_array_equal(memory.lengths, [2, 1, 3])

    out = memory.trajectories()
    assert set(out) == {
        "states",
        "actions",
        "rewards",
        "terminated",
        "truncated",
        "final_states",
        "env_ids",
        "episode_starts",
        "log_probs",
    }
    assert np.isnan(out["log_probs"]).all()  # none given
    np.testing.assert_array_equal(out["states"], s(0, 1, 10, 20, 21, 22))
    np.testing.assert_array_equal(out["env_ids"], [0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(out["episode_starts"], [T, F, T, T, F, F])
    np.testing.assert_array_equal(out["actions"], [0, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(out["rewards"], [1.0, 4.0, 2.0, 3.0, 5.0, 6.0])
    np.testing.assert_array_equal(out["terminated"], [F, T, T, F, F, F])
    np.testing.assert_array_equal(out["truncated"], [F, F, F, F, F, T])
    np.testing.assert_array_equal(out["final_states"], s(2, 11, 23))
    assert out["states"].dtype == np.float32
    assert out["rewards"].dtype == np.float32
    assert out["terminated"].dtype == bool and out["truncated"].dtype == bool
    assert np.issubdtype(out["actions"].dtype, np.integer)


def test_continuous_actions_keep_their_shape_and_values():
    memory = VecMemory(num_envs=2)
    actions = np.array([[0.5, -1.5], [2.0, 3.0]], dtype=np.float32)
    memory.append([0, 1], s(0, 1), actions, [0.0, 0.0], [T, T], [F, F], next_states=s(5, 6))
    out = memory.trajectories()
    np.testing.assert_array_equal(out["actions"], actions)
    assert out["actions"].shape == (2, 2)


def test_capacity_growth_keeps_data():
    memory = VecMemory(num_envs=2, initial_capacity=2)
    for t in range(7):
        envs = [0, 1] if t < 3 else [0]
        states = s(*(100 * e + t for e in envs))
        done = t == 6
        memory.append(
            envs,
            states,
            np.array([t % 2] * len(envs)),
            [float(10 * e + t) for e in envs],
            [done] * len(envs),
            [False] * len(envs),
            next_states=s(*(100 * e + t + 1 for e in envs)),
        )
    np.testing.assert_array_equal(memory.lengths, [7, 3])
    out = memory.trajectories()
    np.testing.assert_array_equal(out["states"], s(0, 1, 2, 3, 4, 5, 6, 100, 101, 102))
    np.testing.assert_array_equal(out["rewards"], [0, 1, 2, 3, 4, 5, 6, 10, 11, 12])
    np.testing.assert_array_equal(out["actions"], [0, 1, 0, 1, 0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(out["terminated"], [F] * 6 + [T] + [F] * 3)
    # env 1 stopped without an end: closed as truncated, bootstrapping its last next state.
    np.testing.assert_array_equal(out["truncated"], [F] * 9 + [T])
    np.testing.assert_array_equal(out["final_states"], s(7, 103))


def test_final_states_one_row_per_closing_step_in_order():
    memory = VecMemory(num_envs=2)
    # env 0: two episodes (terminated at step 1, truncated at step 3); env 1: one (terminated at 2).
    plan = [  # (envs, terminated, truncated)
        ([0, 1], [F, F], [F, F]),
        ([0, 1], [T, F], [F, F]),
        ([0, 1], [F, T], [F, F]),
        ([0], [F], [T]),
    ]
    for t, (envs, terminated, truncated) in enumerate(plan):
        memory.append(
            envs,
            s(*(100 * e + t for e in envs)),
            np.zeros(len(envs), dtype=np.int64),
            np.ones(len(envs)),
            terminated,
            truncated,
            next_states=s(*(100 * e + t + 0.5 for e in envs)),
        )
    out = memory.trajectories()
    ends = np.flatnonzero(out["terminated"] | out["truncated"])
    np.testing.assert_array_equal(ends, [1, 3, 6])
    np.testing.assert_array_equal(out["terminated"], [F, T, F, F, F, F, T])
    np.testing.assert_array_equal(out["truncated"], [F, F, F, T, F, F, F])
    np.testing.assert_array_equal(out["final_states"], s(1.5, 3.5, 102.5))
    assert out["final_states"].shape[0] == len(ends)


def test_final_states_are_copies_not_views():
    memory = VecMemory(num_envs=1)
    next_states = s(9)
    memory.append([0], s(0), np.array([0]), [1.0], [T], [F], next_states=next_states)
    next_states[:] = -1
    np.testing.assert_array_equal(memory.trajectories()["final_states"], s(9))


def test_unfinished_tail_is_closed_as_truncated_with_last_next_state():
    memory = VecMemory(num_envs=3)
    memory.append(
        [0, 1, 2],
        s(0, 10, 20),
        np.zeros(3, dtype=np.int64),
        [0.0, 0.0, 0.0],
        [F, T, F],
        [F, F, F],
        next_states=s(1, 11, 21),
    )
    memory.append(
        [0, 2], s(1, 21), np.zeros(2, dtype=np.int64), [0.0, 0.0], [F, F], [F, F], next_states=s(2, 22)
    )
    out = memory.trajectories()
    np.testing.assert_array_equal(out["terminated"], [F, F, T, F, F])
    np.testing.assert_array_equal(out["truncated"], [F, T, F, F, T])
    np.testing.assert_array_equal(out["final_states"], s(2, 11, 22))
    # trajectories() does not change what is stored.
    again = memory.trajectories()
    for key in out:
        np.testing.assert_array_equal(again[key], out[key])


def test_trajectories_feed_ppo_memory():
    memory = VecMemory(num_envs=2)
    memory.append([0, 1], s(0, 10), np.array([1, 0]), [1.0, 2.0], [F, T], [F, F], next_states=s(1, 11))
    memory.append([0], s(1), np.array([0]), [3.0], [F], [F], next_states=s(2))
    target = Memory("cpu")
    target.add(memory.rollout())
    batch = take_flat(target)
    assert len(batch.states) == 3
    np.testing.assert_array_equal(batch.states.numpy(), s(0, 1, 10))
    np.testing.assert_array_equal(batch.truncated.numpy(), [F, T, F])
    np.testing.assert_array_equal(batch.terminated.numpy(), [F, F, T])
    np.testing.assert_array_equal(batch.final_states.numpy(), s(2, 11))


def test_clear_empties():
    memory = VecMemory(num_envs=2)
    memory.append([0, 1], s(0, 10), np.array([1, 0]), [1.0, 2.0], [T, F], [F, F], next_states=s(1, 11))
    memory.clear()
    assert len(memory) == 0
    np.testing.assert_array_equal(memory.lengths, [0, 0])
    assert memory.trajectories() == {}
    # After clear, new data starts from scratch: nothing of the old data leaks in.
    memory.append([1], s(50), np.array([1]), [5.0], [T], [F], next_states=s(51))
    out = memory.trajectories()
    np.testing.assert_array_equal(out["states"], s(50))
    np.testing.assert_array_equal(out["rewards"], [5.0])
    np.testing.assert_array_equal(out["terminated"], [T])
    np.testing.assert_array_equal(out["truncated"], [F])
    np.testing.assert_array_equal(out["final_states"], s(51))


def test_take_hands_over_the_rollout_without_copying_and_empties():
    memory = VecMemory(num_envs=2)
    memory.append(None, s(0, 10), np.array([1, 0]), [1.0, 2.0], [T, F], [F, F], next_states=s(1, 11))
    expected = memory.rollout()  # a copy, the memory unchanged
    assert len(memory) == 2
    taken = memory.take()
    assert len(memory) == 0 and memory.take() is None
    assert np.shares_memory(taken.states, memory_states := taken.states)  # a view of the buffer
    for name in ("states", "actions", "rewards", "terminated", "truncated", "valid", "final_states"):
        np.testing.assert_array_equal(getattr(taken, name), getattr(expected, name), err_msg=name)
    # The next round writes new buffers: the rollout handed over keeps its values.
    memory.append(None, s(7, 70), np.array([0, 0]), [9.0, 9.0], [F, F], [F, F], next_states=s(8, 80))
    np.testing.assert_array_equal(memory_states, s(0, 10)[None])
    np.testing.assert_array_equal(taken.rewards, [[1.0, 2.0]])
    np.testing.assert_array_equal(memory.take().states, s(7, 70)[None])


def test_empty_memory():
    memory = VecMemory(num_envs=2)
    assert len(memory) == 0
    assert memory.trajectories() == {}
    memory.append([], np.zeros((0, 2)), np.zeros(0), [], [], [])
    assert len(memory) == 0


@pytest.mark.parametrize("field", ["states", "actions", "rewards", "terminated", "truncated"])
def test_wrong_row_count_names_the_field(field):
    memory = VecMemory(num_envs=3)
    columns = dict(
        states=s(0, 1), actions=np.array([0, 1]), rewards=[1.0, 2.0], terminated=[F, F], truncated=[F, F]
    )
    columns[field] = np.asarray(columns[field])[:1]
    with pytest.raises(ValueError, match=field):
        memory.append([0, 2], **columns)
    assert len(memory) == 0


@pytest.mark.parametrize("rows, terminated", [(1, [T, F, F]), (2, [T, F, F]), (1, [T, T, T])])
def test_wrong_next_states_row_count_names_the_field(rows, terminated):
    memory = VecMemory(num_envs=3)
    with pytest.raises(ValueError, match="next_states"):
        memory.append(
            [0, 1, 2],
            s(0, 10, 20),
            np.zeros(3, dtype=np.int64),
            [0.0] * 3,
            terminated,
            [F, F, F],
            next_states=s(*range(99, 99 + rows)),
        )
    assert len(memory) == 0


def test_wrong_state_shape_names_states():
    memory = VecMemory(num_envs=2)
    memory.append([0], s(0), np.array([0]), [0.0], [F], [F])
    with pytest.raises(ValueError, match="states"):
        memory.append([1], np.zeros((1, 3), dtype=np.float32), np.array([0]), [0.0], [F], [F])


def test_constructor_checks():
    with pytest.raises(ValueError, match="num_envs"):
        VecMemory(num_envs=0)
    with pytest.raises(ValueError, match="initial_capacity"):
        VecMemory(num_envs=1, initial_capacity=0)


def test_original_push_api():
    memory = VecMemory(num_envs=2)
    # The original pushed numpy scalars/arrays one env at a time.
    memory.push(1, np.array([10.0, -10.0]), np.int64(1), np.float32(0.5), np.bool_(False))
    memory.push(0, np.array([0.0, 0.0]), np.int64(0), np.float32(1.5), np.bool_(False))
    memory.push(1, np.array([11.0, -11.0]), np.int64(0), np.float32(2.5), np.bool_(True))
    memory.push(0, np.array([1.0, -1.0]), 1, 3.5, True)
    np.testing.assert_array_equal(memory.lengths, [2, 2])
    out = memory.trajectories()
    np.testing.assert_array_equal(out["states"], s(0, 1, 10, 11))
    np.testing.assert_array_equal(out["actions"], [0, 1, 1, 0])
    np.testing.assert_array_equal(out["rewards"], [1.5, 3.5, 0.5, 2.5])
    # push's done is a termination.
    np.testing.assert_array_equal(out["terminated"], [F, T, F, T])
    np.testing.assert_array_equal(out["truncated"], [F, F, F, F])
    assert out["final_states"].shape == (2, 2)


def test_push_unfinished_env_is_closed_truncated():
    memory = VecMemory(num_envs=1)
    memory.push(0, np.array([1.0, 2.0]), 1, 1.0, False)
    memory.push(0, np.array([3.0, 4.0]), 0, 1.0, False)
    out = memory.trajectories()
    np.testing.assert_array_equal(out["terminated"], [F, F])
    np.testing.assert_array_equal(out["truncated"], [F, T])
    assert out["final_states"].shape == (1, 2)


def test_image_observations_are_stored_as_uint8():
    memory = VecMemory(num_envs=2)
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 4, 6, 6), dtype=np.uint8)
    memory.append(
        [0, 1], frames, np.array([0, 1]), [1.0, 2.0], [True, False], [False, False], next_states=frames[::-1]
    )
    assert memory._arrays["states"].dtype == np.uint8
    flat = memory.trajectories()
    assert flat["states"].dtype == np.uint8 and flat["final_states"].dtype == np.uint8
    np.testing.assert_array_equal(flat["states"], frames)
    np.testing.assert_array_equal(flat["final_states"], frames[::-1])

    floats = VecMemory(num_envs=1)
    floats.append([0], np.ones((1, 3), dtype=np.float64), [0], [0.0], [True], [False])
    assert floats.trajectories()["states"].dtype == np.float32


def test_every_env_fast_path_stores_what_explicit_indices_store():
    """append(None, ...) (one row for every env, the fixed-horizon rollout's call) writes whole
    rows while the envs are aligned; it must give exactly what append(range(N), ...) gives,
    including across growth, invalid rows, a partial append that breaks alignment, and clear()."""
    rng = np.random.default_rng(0)
    fast, reference = VecMemory(num_envs=3, initial_capacity=2), VecMemory(num_envs=3, initial_capacity=2)
    for t in range(9):
        if t == 5:  # a partial append: the envs are no longer at the same row
            for memory in (fast, reference):
                memory.append([1], s(50), np.array([1]), [0.5], [F], [F], next_states=s(51))
            continue
        states, next_states = s(*rng.normal(size=3)), s(*rng.normal(size=3))
        ends = rng.random(3) < 0.3
        valid = rng.random(3) < 0.8
        args = (
            states,
            rng.integers(0, 2, 3),
            rng.normal(size=3).astype(np.float32),
            ends & (rng.random(3) < 0.5),
            ends & (rng.random(3) >= 0.5),
            next_states,
        )
        fast.append(None, *args, valid=valid)
        reference.append(np.arange(3), *args, valid=valid)
        if t == 7:
            got, expected = fast.trajectories(), reference.trajectories()
            assert set(got) == set(expected)
            for name in expected:
                np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
            np.testing.assert_array_equal(fast.lengths, reference.lengths)
            assert len(fast) == len(reference)
            fast.clear(), reference.clear()
    got, expected = fast.trajectories(), reference.trajectories()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
