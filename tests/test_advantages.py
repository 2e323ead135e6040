"""Tests for PPO.advantages.compute_gae: a hand-computed example, a naive reference, and errors."""
import pytest
import torch

from PPO.advantages import compute_gae


def test_hand_computed_termination_and_truncation():
    # Two trajectories laid end to end, gamma = 0.9, lambda = 0.8, so gamma * lambda = 0.72.
    #
    # Trajectory A (steps 0..2) ends in TERMINATION: next value of its last step is 0.
    #   r = [1, 2, 3], V = [0.5, 1.0, 1.5], next V = [1.0, 1.5, 0]
    #   delta_2 = 3 + 0.9*0   - 1.5 = 1.5
    #   delta_1 = 2 + 0.9*1.5 - 1.0 = 2.35
    #   delta_0 = 1 + 0.9*1.0 - 0.5 = 1.4
    #   A_2 = 1.5
    #   A_1 = 2.35 + 0.72*1.5  = 3.43
    #   A_0 = 1.4  + 0.72*3.43 = 3.8696
    #   returns = A + V = [4.3696, 4.43, 3.0]
    #
    # Trajectory B (steps 3..4) ends in TIME-LIMIT TRUNCATION: its last step bootstraps
    # V(final obs) = 4.0.
    #   r = [0.5, -1], V = [2.0, 0.25], next V = [0.25, 4.0]
    #   delta_4 = -1  + 0.9*4.0  - 0.25 = 2.35
    #   delta_3 = 0.5 + 0.9*0.25 - 2.0  = -1.275
    #   A_4 = 2.35
    #   A_3 = -1.275 + 0.72*2.35 = 0.417
    #   returns = [2.417, 2.6]
    #
    # A_2 does not leak into B (A_2 would be 1.5 + 0.72*A_3 if it did) and vice versa.
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.5, -1.0], dtype=torch.float64)
    values = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.25], dtype=torch.float64)
    next_values = torch.tensor([1.0, 1.5, 0.0, 0.25, 4.0], dtype=torch.float64)
    segment_ends = torch.tensor([False, False, True, False, True])

    advantages, returns = compute_gae(rewards, values, next_values, segment_ends, 0.9, 0.8)

    expected_adv = torch.tensor([3.8696, 3.43, 1.5, 0.417, 2.35], dtype=torch.float64)
    expected_ret = torch.tensor([4.3696, 4.43, 3.0, 2.417, 2.6], dtype=torch.float64)
    assert advantages.shape == rewards.shape and returns.shape == rewards.shape
    torch.testing.assert_close(advantages, expected_adv, atol=1e-6, rtol=0)
    torch.testing.assert_close(returns, expected_ret, atol=1e-6, rtol=0)


def test_order_of_trajectories_does_not_matter():
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.5, -1.0], dtype=torch.float64)
    values = torch.tensor([0.5, 1.0, 1.5, 2.0, 0.25], dtype=torch.float64)
    next_values = torch.tensor([1.0, 1.5, 0.0, 0.25, 4.0], dtype=torch.float64)
    ends = torch.tensor([False, False, True, False, True])
    adv, ret = compute_gae(rewards, values, next_values, ends, 0.9, 0.8)
    perm = torch.tensor([3, 4, 0, 1, 2])  # trajectory B first, then A
    adv_p, ret_p = compute_gae(rewards[perm], values[perm], next_values[perm], ends[perm], 0.9, 0.8)
    torch.testing.assert_close(adv_p, adv[perm], atol=1e-12, rtol=0)
    torch.testing.assert_close(ret_p, ret[perm], atol=1e-12, rtol=0)


def naive_gae(rewards, values, next_values, segment_ends, gamma, lam):
    """Per-step Python loop, from the last step to the first."""
    n = len(rewards)
    adv = [0.0] * n
    running = 0.0
    for i in reversed(range(n)):
        if bool(segment_ends[i]):
            running = 0.0
        delta = float(rewards[i]) + gamma * float(next_values[i]) - float(values[i])
        running = delta + gamma * lam * running
        adv[i] = running
    adv = torch.tensor(adv, dtype=torch.float64)
    return adv, adv + values.double()


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0), (0.5, 0.7)])
def test_matches_naive_reference_on_random_trajectories(gamma, lam):
    gen = torch.Generator().manual_seed(1234)
    lengths = torch.randint(1, 40, (60,), generator=gen).tolist()
    lengths += [1, 1, 1]  # several one-step trajectories, back to back at the end
    total = sum(lengths)
    ends = torch.zeros(total, dtype=torch.bool)
    ends[torch.tensor(lengths).cumsum(0) - 1] = True
    rewards = torch.randn(total, generator=gen, dtype=torch.float64)
    values = torch.randn(total, generator=gen, dtype=torch.float64)
    next_values = torch.roll(values, -1).clone()
    # closing steps: half terminated (0), half truncated (a random bootstrap value)
    closing = torch.nonzero(ends).flatten()
    boot = torch.randn(len(closing), generator=gen, dtype=torch.float64) * 3
    boot[::2] = 0.0
    next_values[closing] = boot

    adv, ret = compute_gae(rewards, values, next_values, ends, gamma, lam)
    ref_adv, ref_ret = naive_gae(rewards, values, next_values, ends, gamma, lam)
    torch.testing.assert_close(adv, ref_adv, atol=1e-9, rtol=0)
    torch.testing.assert_close(ret, ref_ret, atol=1e-9, rtol=0)


def test_float32_inputs_match_reference():
    gen = torch.Generator().manual_seed(7)
    lengths = torch.randint(1, 25, (30,), generator=gen)
    total = int(lengths.sum())
    ends = torch.zeros(total, dtype=torch.bool)
    ends[lengths.cumsum(0) - 1] = True
    r, v, nv = (torch.randn(total, generator=gen) for _ in range(3))
    adv, ret = compute_gae(r, v, nv, ends, 0.99, 0.95)
    assert adv.dtype == torch.float32
    ref_adv, ref_ret = naive_gae(r, v, nv, ends, 0.99, 0.95)
    torch.testing.assert_close(adv.double(), ref_adv, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ret.double(), ref_ret, atol=1e-4, rtol=1e-5)


def test_single_trajectory_lambda_one_is_discounted_return_minus_value():
    # lambda = 1: A_t = sum_k gamma^k r_{t+k} + gamma^{T-t} * bootstrap - V_t
    rewards = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    values = torch.tensor([0.3, -0.2, 0.7, 0.1], dtype=torch.float64)
    bootstrap = 5.0
    next_values = torch.cat([values[1:], torch.tensor([bootstrap], dtype=torch.float64)])
    ends = torch.tensor([False, False, False, True])
    g = 0.9
    adv, ret = compute_gae(rewards, values, next_values, ends, g, 1.0)
    expected_ret = []
    for t in range(4):
        expected_ret.append(sum(g ** k * float(rewards[t + k]) for k in range(4 - t))
                            + g ** (4 - t) * bootstrap)
    torch.testing.assert_close(ret, torch.tensor(expected_ret, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_last_step_must_close_a_trajectory():
    rewards = torch.ones(4)
    ends = torch.tensor([False, True, False, False])
    with pytest.raises(ValueError, match="segment_ends"):
        compute_gae(rewards, torch.zeros(4), torch.zeros(4), ends, 0.99, 0.95)


def test_empty_batch_gives_empty_results():
    empty = torch.zeros(0)
    adv, ret = compute_gae(empty, empty, empty, torch.zeros(0, dtype=torch.bool), 0.99, 0.95)
    assert adv.shape == (0,) and ret.shape == (0,)
