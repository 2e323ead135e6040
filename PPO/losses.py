"""PPO's losses, one mini-batch at a time: the clipped surrogate (with the per-sample lag
weights of decoupled PPO), the clipped value loss, and the gradient-norm clipping that
`PPO.learn` applies after each backward pass. Plain functions of tensors, tested one by one
(tests/test_objective.py)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def clip_grad_norm(parameters: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scales the gradients so that their global L2 norm is at most `max_norm`, and returns the
    norm before scaling: `nn.utils.clip_grad_norm_` (same formula, tests check the equality) in
    four operations, where torch's general version costs several times more on small networks."""
    grads = [p.grad for p in parameters if p.grad is not None]
    total_norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    scale = (max_norm / (total_norm + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale)
    return total_norm


def clipped_surrogate_loss(
    log_probs: torch.Tensor,
    old_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    policy_clip: float,
    normalize_advantages: bool = True,
    sample_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped policy loss over a mini-batch: -mean(w min(r A, clip(r, 1 -+ eps) A)), with
    r = pi_new / pi_old = exp(log_probs - old_log_probs), the advantages A normalised to mean
    0, std 1 within the mini-batch (when asked, and when it has more than one sample), and the
    per-sample weights w (1 unless given: see PPO's `max_lag_weight`). Returns (loss, r, log r)."""
    log_ratio = log_probs - old_log_probs
    ratio = log_ratio.exp()
    if normalize_advantages and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - policy_clip, 1 + policy_clip) * advantages)
    if sample_weights is not None:
        surrogate = sample_weights * surrogate
    return -surrogate.mean(), ratio, log_ratio


def lag_corrected_targets(
    behaviour_log_probs: torch.Tensor, learner_log_probs: torch.Tensor, max_lag_weight: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the ratio divides by, and the per-sample weights, for one update.

    None (standard PPO): the ratio is taken against the behaviour policy (the policy that acted),
    weights 1. A number c (decoupled PPO, Hilton et al. 2022): the ratio is taken, and clipped,
    against the learner's policy at the start of the update, and each sample is weighted by
    min(pi_learner / pi_behaviour, c), a truncated importance weight for the policy lag (overlap:
    the actions come from the weights one update behind). With no lag the weights are 1 and both
    give the same update."""
    if max_lag_weight is None:
        return behaviour_log_probs, torch.ones_like(behaviour_log_probs)
    weights = (learner_log_probs - behaviour_log_probs).exp().clamp(max=max_lag_weight)
    return learner_log_probs, weights


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, value_clip: float | None
) -> torch.Tensor:
    """0.5 * mean squared error of the values against the returns; with `value_clip`, the
    larger of that error and the error of the values moved at most `value_clip` from
    `old_values` (PPO2's value clipping). With two value heads [B, 2] (RND) the heads' errors add."""
    error = (values - returns).square()
    if value_clip is not None:
        clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
        error = torch.max(error, (clipped - returns).square())
    return 0.5 * error.reshape(len(error), -1).sum(-1).mean()


class LossTotals:
    """One update's mini-batch statistics, summed on the device and read once at the end (a
    read per mini-batch would wait for the device every time)."""

    NAMES = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "rnd_loss")

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(len(self.NAMES) + 1, device=device)  # the last one counts
        self.count = 0

    @torch.no_grad()
    def add(self, *values: torch.Tensor) -> None:
        """Adds one mini-batch's values, in the order of `NAMES`."""
        self.sums += torch.stack([*values, torch.ones((), device=self.sums.device)]).detach()
        self.count += 1

    def means(self) -> dict[str, float]:
        """Each statistic's mean over the mini-batches added, by name."""
        return dict(zip(self.NAMES, (self.sums[:-1] / self.sums[-1]).tolist(), strict=True))
