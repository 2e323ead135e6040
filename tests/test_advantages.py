"""Tests for PPO.advantages on [T, N] grids: GAE by hand and against a naive per-step loop,
invalid rows (autoreset steps, padded tails), `next_valid` and the discounted running sums."""

import pytest
import torch

from PPO.advantages import compute_gae, discounted_running_sums, next_valid

F64 = torch.float64


def test_hand_computed_termination_and_truncation():
    # gamma = 0.9, lambda = 0.8, so gamma * lambda = 0.72.
    #
    # Column 0 (trajectory A, steps 0..2) ends in TERMINATION: next value of its last step is 0.
    #   r = [1, 2, 3], V = [0.5, 1.0, 1.5], next V = [1.0, 1.5, 0]
    #   delta = [1.4, 2.35, 1.5];  A_2 = 1.5, A_1 = 2.35 + 0.72*1.5 = 3.43,
    #   A_0 = 1.4 + 0.72*3.43 = 3.8696;  returns = A + V = [4.3696, 4.43, 3.0]
    #
    # Column 1 (trajectory B, steps 0..1, then a padded invalid row) ends in TIME-LIMIT
    # TRUNCATION: its last step bootstraps V(final obs) = 4.0.
    #   r = [0.5, -1], V = [2.0, 0.25], next V = [0.25, 4.0]
    #   delta = [-1.275, 2.35];  A_1 = 2.35, A_0 = -1.275 + 0.72*2.35 = 0.417
    #   returns = [2.417, 2.6]
    rewards = torch.tensor([[1.0, 0.5], [2.0, -1.0], [3.0, 99.0]], dtype=F64)
    values = torch.tensor([[0.5, 2.0], [1.0, 0.25], [1.5, 99.0]], dtype=F64)
    next_values = torch.tensor([[1.0, 0.25], [1.5, 4.0], [0.0, 99.0]], dtype=F64)
    ends = torch.tensor([[False, False], [False, True], [True, False]])
    valid = torch.tensor([[True, True], [True, True], [True, False]])

    advantages, returns = compute_gae(rewards, values, next_values, ends, valid, 0.9, 0.8)

    expected_adv = torch.tensor([[3.8696, 0.417], [3.43, 2.35], [1.5, 0.0]], dtype=F64)
    expected_ret = torch.tensor([[4.3696, 2.417], [4.43, 2.6], [3.0, 0.0]], dtype=F64)
    torch.testing.assert_close(advantages, expected_adv, atol=1e-6, rtol=0)
    torch.testing.assert_close(returns, expected_ret, atol=1e-6, rtol=0)


def test_an_autoreset_row_between_two_episodes_of_a_column():
    """Column: episode A (2 steps, terminated), an invalid autoreset row, episode B (1 step,
    truncated). A's advantages are those of A alone: nothing flows across the end."""
    rewards = torch.tensor([[1.0], [2.0], [50.0], [3.0]], dtype=F64)
    values = torch.tensor([[0.1], [0.2], [50.0], [0.3]], dtype=F64)
    next_values = torch.tensor([[0.2], [0.0], [50.0], [7.0]], dtype=F64)
    ends = torch.tensor([[False], [True], [False], [True]])
    valid = torch.tensor([[True], [True], [False], [True]])
    adv, _ = compute_gae(rewards, values, next_values, ends, valid, 0.9, 0.5)
    a1 = 2.0 - 0.2
    a0 = 1.0 + 0.9 * 0.2 - 0.1 + 0.45 * a1
    b0 = 3.0 + 0.9 * 7.0 - 0.3
    torch.testing.assert_close(adv[:, 0], torch.tensor([a0, a1, 0.0, b0], dtype=F64))


def random_grid(gen, num_steps=50, num_envs=7, dtype=F64):
    """Columns of several episodes each, an invalid row after some ends (autoreset) and an
    invalid tail; every column's last valid row ends an episode."""
    valid = torch.ones(num_steps, num_envs, dtype=torch.bool)
    ends = torch.rand(num_steps, num_envs, generator=gen) < 0.15
    autoreset = torch.roll(ends, 1, 0) & (torch.rand(num_steps, num_envs, generator=gen) < 0.5)
    autoreset[0] = False
    valid &= ~autoreset
    ends &= valid
    for n in range(num_envs):
        tail = int(torch.randint(0, num_steps // 3, (1,), generator=gen))
        valid[num_steps - tail :, n] = False
        last = int(torch.nonzero(valid[:, n]).max())
        ends[last:, n] = False
        ends[last, n] = True
    rewards, values, next_values = (
        torch.randn(num_steps, num_envs, generator=gen, dtype=dtype) for _ in range(3)
    )
    return rewards, values, next_values, ends, valid


def naive_gae(rewards, values, next_values, ends, valid, gamma, lam):
    """A per-step Python loop over each column's valid rows, from the last to the first."""
    adv = torch.zeros_like(rewards)
    for n in range(rewards.shape[1]):
        running = 0.0
        for t in reversed(range(rewards.shape[0])):
            if not valid[t, n]:
                continue
            if ends[t, n]:
                running = 0.0
            delta = float(rewards[t, n]) + gamma * float(next_values[t, n]) - float(values[t, n])
            running = delta + gamma * lam * running
            adv[t, n] = running
    return adv, adv + values * valid


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 1.0), (1.0, 0.0), (0.5, 0.7)])
def test_matches_naive_reference_on_random_grids(gamma, lam):
    gen = torch.Generator().manual_seed(1234)
    grid = random_grid(gen)
    adv, ret = compute_gae(*grid, gamma, lam)
    ref_adv, ref_ret = naive_gae(*grid, gamma, lam)
    torch.testing.assert_close(adv, ref_adv, atol=1e-9, rtol=0)
    torch.testing.assert_close(ret, ref_ret, atol=1e-9, rtol=0)


def test_float32_inputs_match_reference():
    grid = random_grid(torch.Generator().manual_seed(7), dtype=torch.float32)
    adv, ret = compute_gae(*grid, 0.99, 0.95)
    assert adv.dtype == torch.float32
    ref_adv, ref_ret = naive_gae(*grid, 0.99, 0.95)
    torch.testing.assert_close(adv, ref_adv, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ret, ref_ret, atol=1e-4, rtol=1e-5)


def test_columns_are_independent():
    gen = torch.Generator().manual_seed(3)
    grid = random_grid(gen)
    adv, _ = compute_gae(*grid, 0.99, 0.95)
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    adv_p, _ = compute_gae(*(x[:, perm] for x in grid), 0.99, 0.95)
    torch.testing.assert_close(adv_p, adv[:, perm], atol=1e-12, rtol=0)


def test_single_trajectory_lambda_one_is_discounted_return_minus_value():
    # lambda = 1: A_t = sum_k gamma^k r_{t+k} + gamma^{T-t} * bootstrap - V_t
    rewards = torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=F64)[:, None]
    values = torch.tensor([0.3, -0.2, 0.7, 0.1], dtype=F64)[:, None]
    bootstrap = 5.0
    next_values = torch.cat([values[1:], torch.tensor([[bootstrap]], dtype=F64)])
    ends = torch.tensor([False, False, False, True])[:, None]
    g = 0.9
    _, ret = compute_gae(rewards, values, next_values, ends, torch.ones_like(ends), g, 1.0)
    expected = [
        sum(g**k * float(rewards[t + k]) for k in range(4 - t)) + g ** (4 - t) * bootstrap for t in range(4)
    ]
    torch.testing.assert_close(ret[:, 0], torch.tensor(expected, dtype=F64), atol=1e-12, rtol=0)


def test_next_valid_skips_invalid_rows():
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    valid = torch.tensor([[True, True], [False, True], [True, False], [True, False]])
    torch.testing.assert_close(
        next_valid(x, valid), torch.tensor([[3.0, 20.0], [3.0, 0.0], [4.0, 0.0], [0.0, 0.0]])
    )


def test_discounted_running_sums_by_hand():
    """Column 0 carries 10 in and restarts at row 2; column 1 skips its invalid row 1."""
    rewards = torch.tensor([[1.0, 1.0], [2.0, 99.0], [3.0, 2.0]], dtype=F64)
    starts = torch.tensor([[False, True], [False, False], [True, False]])
    valid = torch.tensor([[True, True], [True, False], [True, True]])
    sums, last = discounted_running_sums(rewards, starts, valid, torch.tensor([10.0, 5.0]), 0.5)
    expected = torch.tensor([[1 + 5.0, 1.0], [2 + 3.0, 1.0], [3.0, 2 + 0.5]], dtype=F64)
    torch.testing.assert_close(sums, expected)
    torch.testing.assert_close(last, torch.tensor([3.0, 2.5], dtype=F64))
