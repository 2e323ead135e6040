"""The PPO objective's pieces against hand-computed values on tiny batches: each check fails if
a min becomes a max, the clamp or the normalisation goes, the ratio turns round, or the value
clipping takes the smaller error."""

from __future__ import annotations

import math

import pytest
import torch

from PPO.losses import clipped_surrogate_loss, clipped_value_loss


def surrogate(ratios, advantages, clip=0.2, normalize=False):
    log_probs = torch.log(torch.tensor(ratios, dtype=torch.float64))
    loss, ratio, log_ratio = clipped_surrogate_loss(
        log_probs, torch.zeros_like(log_probs), torch.tensor(advantages, dtype=torch.float64), clip, normalize
    )
    torch.testing.assert_close(ratio, torch.tensor(ratios, dtype=torch.float64))
    torch.testing.assert_close(log_ratio, log_probs)
    return loss.item()


def test_the_clipped_surrogate_inside_and_outside_the_clip_range():
    # per sample min(r A, clip(r) A): r 0.5, A +1 -> 0.5 (unclipped is smaller); r 1, A +1 -> 1;
    # r 1.5, A +1 -> 1.2 (clipped); r 1.5, A -1 -> -1.5 (unclipped); r 0.5, A -1 -> -0.8 (clipped)
    expected = -(0.5 + 1.0 + 1.2 - 1.5 - 0.8) / 5
    assert surrogate([0.5, 1.0, 1.5, 1.5, 0.5], [1, 1, 1, -1, -1]) == pytest.approx(expected)


def test_the_ratio_is_new_over_old():
    log_probs, old = torch.tensor([math.log(0.6)]), torch.tensor([math.log(0.4)])
    _, ratio, log_ratio = clipped_surrogate_loss(log_probs, old, torch.ones(1), 10.0, False)
    assert ratio.item() == pytest.approx(1.5) and log_ratio.item() == pytest.approx(math.log(1.5))


def test_advantages_are_normalised_per_mini_batch_unless_off_or_single():
    # [1, 2, 3] -> [-1, 0, 1] (unbiased std 1); with r [1.5, 1, 1]: -1.5 (unclipped), 0, 1
    assert surrogate([1.5, 1, 1], [1, 2, 3], normalize=True) == pytest.approx((1.5 - 1) / 3)
    # raw: 1.2 (clipped), 2, 3
    assert surrogate([1.5, 1, 1], [1, 2, 3], normalize=False) == pytest.approx(-(1.2 + 2 + 3) / 3)
    assert surrogate([1.5], [4.0], normalize=True) == pytest.approx(-1.2 * 4)  # one sample: raw


def test_the_value_loss_with_and_without_clipping():
    values, old, returns = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]), torch.zeros(2)
    assert clipped_value_loss(values, old, returns, None).item() == pytest.approx(0.5 * (1 + 9) / 2)
    # clipped values 1.5, 2.5 -> errors 2.25, 6.25; the larger of each pair: 2.25, 9
    assert clipped_value_loss(values, old, returns, 0.5).item() == pytest.approx(0.5 * (2.25 + 9) / 2)


def test_two_value_heads_add_their_errors():
    values, returns = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.zeros(2, 2)
    assert clipped_value_loss(values, values, returns, None).item() == pytest.approx(0.5 * (5 + 1) / 2)


def test_the_surrogate_gradient_pushes_probable_good_actions_up_until_the_clip():
    log_probs = torch.log(torch.tensor([1.0, 1.3])).requires_grad_()
    loss, *_ = clipped_surrogate_loss(log_probs, torch.zeros(2), torch.tensor([1.0, 1.0]), 0.2, False)
    loss.backward()
    # d(-mean(r A))/d log pi = -r A / n inside the clip range; zero once r is clipped (1.3 > 1.2)
    torch.testing.assert_close(log_probs.grad, torch.tensor([-0.5, 0.0]))
