"""Running mean and variance, kept as module buffers so that they travel inside saved weights."""
from __future__ import annotations

import torch
from torch import nn

from .advantages import discounted_running_sums


class RunningMeanStd(nn.Module):
    """Mean and variance of every sample seen so far, merged batch by batch (Chan et al.).

    `normalize` maps x to (x - mean) / sqrt(var + eps), clipped to [-clip, clip].
    """

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
        self.var.copy_((self.var * self.count + batch_var * batch_count
                        + delta.square() * self.count * batch_count / total) / total)
        self.count.copy_(total)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.mean.to(x.dtype)
        std = torch.sqrt(self.var + self.eps).to(x.dtype)
        return ((x - mean) / std).clamp(-self.clip, self.clip)


class RewardScaler(nn.Module):
    """Divides rewards by the running std of the discounted return (no mean subtraction), then
    clips them to [-clip, clip]: the reward scaling of gymnasium's NormalizeReward and SB3's
    VecNormalize, computed over whole batches.

    Each env's return runs on across batches (keyed by its env id) and restarts at its episode
    starts; with `episodic=False` it never restarts (RND's intrinsic returns). Only the
    statistics are saved with the weights: the per-env running returns (`carried_returns`, by
    env id) belong to a training run's checkpoint, and start again from 0 after loading weights.
    """

    def __init__(self, gamma: float, clip: float = 10.0, episodic: bool = True):
        super().__init__()
        self.gamma = gamma
        self.clip = clip
        self.episodic = episodic
        self.return_stats = RunningMeanStd((), clip=float("inf"))
        self.carried_returns = torch.zeros(0, dtype=torch.float64)

    @torch.no_grad()
    def forward(self, rewards: torch.Tensor, env_ids: torch.Tensor,
                episode_starts: torch.Tensor) -> torch.Tensor:
        """Updates the return statistics with this batch and returns the scaled rewards.

        A run (consecutive rows of one env) must be in time order, and an env's runs in the
        order they were collected, as `VecMemory` and `Memory` lay them out."""
        if rewards.numel() == 0:
            return rewards.clone()
        env_ids = env_ids.long()
        self._grow_carried_returns(int(env_ids.max()) + 1, rewards.device)
        run_starts = torch.ones_like(env_ids, dtype=torch.bool)
        run_starts[1:] = env_ids[1:] != env_ids[:-1]
        restarts = episode_starts.bool() if self.episodic else torch.zeros_like(run_starts)
        returns = torch.empty_like(rewards, dtype=torch.float64)
        # An env's second run in a batch continues from its first: take runs one turn at a time.
        run_turns = _turns(env_ids[run_starts])[torch.cumsum(run_starts.long(), 0) - 1]
        for turn in range(int(run_turns.max()) + 1):
            rows = run_turns == turn
            ids, first = env_ids[rows], run_starts[rows]
            initial = torch.where(restarts[rows], 0.0, self.carried_returns[ids])
            sums = discounted_running_sums(rewards[rows].double(), first | restarts[rows],
                                           initial, self.gamma)
            last = torch.roll(first, -1)
            self.carried_returns[ids[last]] = sums[last]
            returns[rows] = sums
        self.return_stats.update(returns)
        std = torch.sqrt(self.return_stats.var + self.return_stats.eps).to(rewards.dtype)
        return (rewards / std).clamp(-self.clip, self.clip)

    def _grow_carried_returns(self, size: int, device: torch.device) -> None:
        carried = self.carried_returns.to(device)
        if size > carried.numel():
            carried = torch.cat([carried, carried.new_zeros(size - carried.numel())])
        self.carried_returns = carried


def _turns(run_envs: torch.Tensor) -> torch.Tensor:
    """For each run, how many earlier runs belong to the same env (0 for its first)."""
    order = torch.argsort(run_envs, stable=True)
    sorted_envs = run_envs[order]
    positions = torch.arange(len(run_envs), device=run_envs.device)
    group_first = torch.ones_like(sorted_envs, dtype=torch.bool)
    group_first[1:] = sorted_envs[1:] != sorted_envs[:-1]
    group_start = torch.cummax(torch.where(group_first, positions, 0), 0).values
    turns = torch.empty_like(positions)
    turns[order] = positions - group_start
    return turns
