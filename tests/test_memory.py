"""PPO/Memory.py: the time-major Rollout (its checks, the flat layout both ways, joining along
time and along copies), the Memory queue, and the behaviour log-probs recorded at sampling that
the learner's ratio divides by."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from PPO import PPO, Rollout
from PPO.Memory import Memory, concatenate, empty_rollout

F, T = False, True
OBS_DIM = 3


def flat_example():
    """Copy 0: an episode terminated at its 2nd step, then one cut at its 1st; copy 1: one
    truncated at its 3rd step. Laid out copy by copy; state values say (copy, row)."""
    states = np.array([[0, 0, 0], [0, 1, 0], [0, 2, 0], [1, 0, 0], [1, 1, 0], [1, 2, 0]], np.float32)
    return dict(
        states=states,
        actions=np.array([0, 1, 0, 1, 1, 0]),
        rewards=np.arange(6, dtype=np.float32),
        terminated=np.array([F, T, F, F, F, F]),
        truncated=np.array([F, F, T, F, F, T]),
        final_states=np.array([[0, 9, 1], [0, 9, 2], [1, 9, 3]], np.float32),
        env_ids=np.array([0, 0, 0, 1, 1, 1]),
        log_probs=np.array([-0.1, -0.2, -0.3, -0.4, -0.5, -0.6], np.float32),
    )


def test_from_trajectories_lays_copies_out_as_columns():
    rollout = Rollout.from_trajectories(**flat_example())
    assert rollout.shape == (3, 2) and len(rollout) == 6
    np.testing.assert_array_equal(rollout.states[:, 0, 1], [0, 1, 2])
    np.testing.assert_array_equal(rollout.states[:, 1, 0], [1, 1, 1])
    np.testing.assert_array_equal(rollout.terminated, [[F, F], [T, F], [F, F]])
    np.testing.assert_array_equal(rollout.episode_starts, [[T, T], [F, F], [T, F]])
    np.testing.assert_allclose(rollout.log_probs[:, 1], [-0.4, -0.5, -0.6])
    # final states in row-major order of the ends: (1, 0), (2, 0), (2, 1)
    np.testing.assert_array_equal(rollout.final_states[:, 2], [1, 2, 3])
    next_states = rollout.next_states()
    np.testing.assert_array_equal(next_states[0, 0], [0, 1, 0])  # the next row
    np.testing.assert_array_equal(next_states[1, 0], [0, 9, 1])  # the final observation


def test_the_flat_layout_round_trips():
    example = flat_example()
    flat = Rollout.from_trajectories(**example).trajectories()
    for name, value in example.items():
        np.testing.assert_array_equal(flat[name], value, err_msg=name)


def test_without_env_ids_every_trajectory_is_its_own_column():
    example = flat_example()
    del example["env_ids"]
    rollout = Rollout.from_trajectories(**example)
    assert rollout.shape == (3, 3) and rollout.episode_starts[0].all()
    assert np.isnan(Rollout.from_trajectories(**{**example, "log_probs": None}).log_probs).all()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(final_states=np.zeros((2, OBS_DIM), np.float32)), "got 3 closing steps and 2 final states"),
        (dict(truncated=np.array([F, F, T, F, F, F])), "must each close with a terminated or truncated"),
        (dict(rewards=np.zeros(5, np.float32)), r"rewards: expected 6 rows like states, got shape \(5,\)"),
        (dict(log_probs=np.zeros(7, np.float32)), r"log_probs: expected 6 rows like states"),
    ],
)
def test_from_trajectories_names_what_does_not_fit(change, message):
    with pytest.raises(ValueError, match=message):
        Rollout.from_trajectories(**{**flat_example(), **change})


def test_check_names_a_field_of_the_wrong_shape():
    rollout = Rollout.from_trajectories(**flat_example())
    rollout.rewards = rollout.rewards[:2]
    with pytest.raises(ValueError, match=r"rewards: expected shape \[3, 2\] like valid, got \[2, 2\]"):
        rollout.check()


def test_a_column_left_open_is_refused():
    rollout = Rollout.from_trajectories(**flat_example())
    rollout.truncated[2, 1] = False
    rollout.final_states = rollout.final_states[:2]
    with pytest.raises(ValueError, match="must each close"):
        rollout.check()


def test_joining_along_time_and_along_copies_keeps_final_states_in_row_major_order():
    a = Rollout.from_trajectories(**flat_example())
    b = Rollout.from_trajectories(**{**flat_example(), "final_states": flat_example()["final_states"] + 10})
    later = concatenate([a, b], axis=0)
    assert later.shape == (6, 2)
    rows, columns = np.nonzero(later.ends)
    np.testing.assert_array_equal(later.next_states()[rows, columns], later.final_states)
    np.testing.assert_array_equal(later.final_states[:, 2], [1, 2, 3, 11, 12, 13])
    side = concatenate([a, empty_rollout(a, 1, 2), b], axis=1)  # e.g. a worker lost in between
    assert side.shape == (3, 6) and not side.valid[:, 2:4].any()
    np.testing.assert_array_equal(side.final_states[:, 2], [1, 11, 2, 3, 12, 13])
    assert len(side) == 12 and np.isnan(side.log_probs[:, 2:4]).all()
    side.check()


def test_memory_queues_rollouts_and_joins_them_along_time():
    memory = Memory("cpu")
    with pytest.raises(TypeError, match="rollout: expected a Rollout"):
        memory.add(flat_example())
    memory.add(Rollout.from_trajectories(**flat_example()))
    memory.add_trajectories(**flat_example())
    assert len(memory) == 12
    state = memory.state()
    batch = memory.take()
    assert isinstance(batch.states, torch.Tensor) and batch.shape == (6, 2) and len(memory) == 0
    memory.load_state(state)  # a checkpoint's memory comes back as it was
    assert len(memory) == 12
    # checkpoints written before rollouts were time-major held flat trajectories
    flat = {name: torch.from_numpy(value) for name, value in flat_example().items() if name != "log_probs"}
    memory.load_state([flat])
    assert len(memory) == 6 and memory.take().shape == (3, 2)


# -------------------------------------------------------- behaviour log-probs at sampling
@pytest.mark.parametrize("kind", ["discrete", "multi_discrete", "continuous", "squashed"])
@pytest.mark.parametrize("actor", ["numpy", "torch"])
def test_sample_actions_returns_the_log_probs_the_learner_computes(kind, actor):
    options = dict(device="cpu", seed=0, normalize_obs=True)
    if kind == "discrete":
        ppo = PPO(False, OBS_DIM, 3, **options)
    elif kind == "multi_discrete":
        ppo = PPO(False, OBS_DIM, 5, action_nvec=(2, 3), **options)
    else:
        ppo = PPO(
            True,
            OBS_DIM,
            2,
            action_low=[-2, 0],
            action_high=[2, 1],
            squash_actions=kind == "squashed",
            **options,
        )
    ppo.policy.obs_normalizer.update(torch.randn(100, OBS_DIM) * 3 + 1)
    if actor == "torch":
        ppo.numpy_actor = None
    states = np.random.default_rng(0).normal(size=(64, OBS_DIM)).astype(np.float32)
    actions, log_probs = ppo.sample_actions(states)
    assert log_probs.shape == (64,) and log_probs.dtype == np.float32
    with torch.no_grad():
        expected, _, _ = ppo.policy.evaluate(torch.from_numpy(states), torch.as_tensor(actions))
    np.testing.assert_allclose(log_probs, expected.numpy(), rtol=1e-5, atol=1e-5)
    single_action, single_log_prob = ppo.sample_actions(states[0])
    assert np.shape(single_log_prob) == () and np.shape(single_action) == np.shape(actions[0])


def test_the_ratio_is_one_before_the_first_step_with_observation_normalisation():
    """Collected by the one-liner's collector with normalize_obs=True: the behaviour log-probs
    are the learner's own at learn() (its statistics take the batch in only after the update),
    so PPO's first ratio is 1 and nothing is clipped."""
    import gymnasium as gym

    from AsyncTools.collectors import make_collector

    ppo = PPO(
        True,
        3,
        1,
        action_low=[-2],
        action_high=[2],
        normalize_obs=True,
        device="cpu",
        seed=0,
        batch_size=64,
        mini_batch_size=64,
        k_epochs=1,
    )
    collector = make_collector(gym.make("Pendulum-v1"), ppo, 4, backend="loop", seed=0, num_steps=16)
    for _ in range(3):  # statistics that have moved: a normaliser ignored would show
        rollout, _ = collector.collect(ppo)
        ppo.memory.add(rollout)
        stats = ppo.learn()
    assert float(ppo.policy.obs_normalizer.count) == 3 * 4 * 16
    rollout, _ = collector.collect(ppo)
    collector.close()
    with torch.no_grad():
        states = torch.from_numpy(rollout.states[rollout.valid])
        now, _, _ = ppo.policy.evaluate(states, torch.from_numpy(rollout.actions[rollout.valid]))
    np.testing.assert_allclose(rollout.log_probs[rollout.valid], now.numpy(), rtol=1e-5, atol=1e-5)
    ppo.memory.add(rollout)
    stats = ppo.learn()
    assert stats["clip_fraction"] == 0.0 and abs(stats["approx_kl"]) < 1e-6


@pytest.mark.parametrize("recorded", [True, False])
def test_learn_divides_by_the_recorded_behaviour_log_probs(recorded):
    """Log-probs recorded 0.5 below the learner's own (a policy that acted, then changed): every
    first ratio is e^0.5 > 1 + clip, all clipped. Not recorded (NaN): the learner's own, ratio 1."""
    ppo = PPO(False, OBS_DIM, 2, device="cpu", seed=0, batch_size=6, mini_batch_size=6, k_epochs=1)
    example = flat_example()
    with torch.no_grad():
        own, _, _ = ppo.policy.evaluate(
            torch.from_numpy(example["states"]), torch.from_numpy(example["actions"])
        )
    example["log_probs"] = own.numpy() - 0.5 if recorded else None
    ppo.memory.add_trajectories(**example)
    stats = ppo.learn()
    assert stats["clip_fraction"] == (1.0 if recorded else 0.0)
