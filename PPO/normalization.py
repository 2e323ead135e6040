"""Running mean and variance, kept as module buffers so that they travel inside saved weights."""

from __future__ import annotations

import torch
from torch import nn

from .advantages import discounted_running_sums


class RunningMeanStd(nn.Module):
    """Mean and variance of every sample seen so far, merged batch by batch (Chan et al.).

    `normalize` maps x to (x - mean) / sqrt(var + eps), clipped to [-clip, clip].
    """

    # the buffers registered in __init__, declared for type checkers
    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, shape: tuple[int, ...] | int, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self.clip = clip
        self.eps = eps
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Merges a batch of samples shaped [B, *shape] into the statistics."""
        batch = batch.reshape(-1, *self.mean.shape).to(self.mean)
        batch_count = batch.shape[0]
        if batch_count == 0:
            return
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean += delta * batch_count / total
        self.var.copy_(
            (
                self.var * self.count
                + batch_var * batch_count
                + delta.square() * self.count * batch_count / total
            )
            / total
        )
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        std = torch.sqrt(self.var + self.eps).to(x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)


class RewardScaler(nn.Module):
    """Divides rewards by the running std of the discounted return (no mean subtraction), then
    clips them to [-clip, clip]: the reward scaling of gymnasium's NormalizeReward and SB3's
    VecNormalize, computed over whole rollouts.

    Each env copy's return (a column of the [T, N] rollout) runs on across rollouts and restarts
    at its episode starts; with `episodic=False` it never restarts (RND's intrinsic returns).
    Only the statistics are saved with the weights: the per-copy running returns
    (`carried_returns`, by column) belong to a training run's checkpoint, and start again from 0
    after loading weights.
    """

    def __init__(self, gamma: float, clip: float = 10.0, episodic: bool = True):
        super().__init__()
        self.gamma = gamma
        self.clip = clip
        self.episodic = episodic
        self.return_stats = RunningMeanStd((), clip=float("inf"))
        self.carried_returns = torch.zeros(0, dtype=torch.float64)

    @torch.no_grad()
    def forward(
        self, rewards: torch.Tensor, valid: torch.Tensor, episode_starts: torch.Tensor
    ) -> torch.Tensor:
        """Updates the return statistics with this rollout's valid rows ([T, N] each) and
        returns the scaled rewards."""
        num_envs = rewards.shape[1]
        carried = self.carried_returns.to(rewards.device)
        if num_envs > carried.numel():
            carried = torch.cat([carried, carried.new_zeros(num_envs - carried.numel())])
        restarts = episode_starts if self.episodic else torch.zeros_like(episode_starts)
        returns, last = discounted_running_sums(
            rewards.double(), restarts, valid, carried[:num_envs], self.gamma
        )
        carried[:num_envs] = last
        self.carried_returns = carried
        self.return_stats.update(returns[valid.bool()])
        std = torch.sqrt(self.return_stats.var + self.return_stats.eps).to(rewards.dtype)
        return (rewards / std).clamp(-self.clip, self.clip)
