"""Scans over time-major [T, N] grids (T steps of N env copies), vectorised across copies:
generalised advantage estimation (a reverse scan) and the discounted running return that reward
scaling divides by (a forward scan).

Rows where `valid` is False are not transitions (an autoreset step, a column's padded tail):
they add nothing and the scans pass over them.
"""
from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    ends: torch.Tensor,
    valid: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (advantages, returns), [T, N] like `rewards` (0 at invalid rows).

    A_t = delta_t + gamma * lambda * A_t' with t' the column's next valid row, where
    delta_t = r_t + gamma * next_values_t - V_t; at a row where `ends` is set nothing flows
    back (A_t = delta_t). `next_values[t]` is what step t bootstraps from: V(s_{t+1}) inside an
    episode, V(final observation) where it was truncated, 0 where it terminated.
    returns = advantages + values.
    """
    valid = valid.bool()
    deltas = rewards + gamma * next_values - values
    continues = (~ends.bool()).to(deltas.dtype)
    advantages = torch.zeros_like(deltas)
    running = torch.zeros_like(deltas[0]) if len(deltas) else deltas.new_zeros(())
    decay = gamma * gae_lambda
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = torch.where(valid[t], deltas[t] + decay * continues[t] * running, running)
        advantages[t] = running
    advantages = advantages * valid
    return advantages, advantages + values * valid


def next_valid(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """For every row, `x` ([T, N, ...]) at the column's next valid row (0 where there is none)."""
    following = torch.zeros_like(x)
    carried = torch.zeros_like(x[0]) if len(x) else x.new_zeros(())
    valid = valid.bool().reshape(valid.shape + (1,) * (x.dim() - 2))
    for t in range(x.shape[0] - 1, -1, -1):
        following[t] = carried
        carried = torch.where(valid[t], x[t], carried)
    return following


def discounted_running_sums(
    rewards: torch.Tensor,
    episode_starts: torch.Tensor,
    valid: torch.Tensor,
    initial: torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward discounted sums per column: R_t = r_t + gamma * R_t'', t'' the column's previous
    valid row, starting from `initial` [N] (a return carried over from an earlier rollout) and
    from 0 at episode starts. Returns (R [T, N], each column's last R [N]).

    This is the return an env has accumulated so far, whose running std scales rewards.
    """
    valid = valid.bool()
    restarts = episode_starts.bool()
    sums = torch.zeros_like(rewards)
    running = initial.to(rewards.dtype).clone()
    for t in range(rewards.shape[0]):
        step = rewards[t] + gamma * running.masked_fill(restarts[t], 0.0)
        running = torch.where(valid[t], step, running)
        sums[t] = running
    return sums, running
