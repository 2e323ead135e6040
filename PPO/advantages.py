"""Generalised advantage estimation over a batch of trajectories, vectorised across trajectories.

The batch is flat: trajectories one after another, each closed by a step whose `segment_ends`
flag is True (termination, truncation, or the end of what was collected). `next_values[i]` is
the value the step bootstraps from: V(s_{i+1}) inside a trajectory, V(final observation) where
an episode was cut by a time limit or collection stopped, and 0 where the episode terminated.
"""
from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    segment_ends: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (advantages, returns), each shaped like `rewards` ([L]).

    A_i = delta_i + gamma * lambda * A_{i+1} inside a trajectory, A_i = delta_i at its last step,
    with delta_i = r_i + gamma * next_values_i - V_i; returns = advantages + values.
    """
    if rewards.numel() == 0:
        return rewards.clone(), values.clone()
    if not bool(segment_ends[-1]):
        raise ValueError("segment_ends: the last step of the batch must close a trajectory")
    deltas = rewards + gamma * next_values - values
    # One column per trajectory, zero-padded after its last step: the reverse scan reaches each
    # trajectory's last step with running == 0, so A = delta there, without crossing trajectories.
    grid_deltas, grid_index = _to_time_major_grid(deltas, segment_ends)
    grid_advantages = torch.zeros_like(grid_deltas)
    running = torch.zeros_like(grid_deltas[0])
    decay = gamma * gae_lambda
    for t in range(grid_deltas.shape[0] - 1, -1, -1):
        running = grid_deltas[t] + decay * running
        grid_advantages[t] = running
    advantages = grid_advantages.reshape(-1)[grid_index]
    return advantages, advantages + values


def _to_time_major_grid(x: torch.Tensor, segment_ends: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scatters a flat batch into a zero-padded [T_max, num_trajectories] grid, one column per
    trajectory. Returns the grid of `x` and, for every flat step, its index into the flattened
    grid.
    """
    length = x.shape[0]
    ends = segment_ends.bool()
    segment_id = torch.cumsum(ends.long(), 0) - ends.long()
    num_segments = int(ends.sum())
    positions = torch.arange(length, device=x.device)
    starts = torch.zeros(num_segments, dtype=torch.long, device=x.device)
    starts[1:] = positions[ends][:-1] + 1
    step_in_segment = positions - starts[segment_id]
    max_len = int(step_in_segment.max()) + 1 if length else 0
    grid_index = step_in_segment * num_segments + segment_id
    grid = torch.zeros(max_len * num_segments, dtype=x.dtype, device=x.device)
    grid[grid_index] = x
    return grid.reshape(max_len, num_segments), grid_index


def discounted_running_sums(
    rewards: torch.Tensor,
    chain_starts: torch.Tensor,
    initial: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Forward discounted sums: R_i = r_i + gamma * R_{i-1}, where a chain start takes
    `initial[i]` in place of R_{i-1} (0 for a fresh episode, or a value carried over from an
    earlier batch). Returns R shaped like `rewards`.

    This is the return an env has accumulated so far, whose running std scales rewards.
    """
    if rewards.numel() == 0:
        return rewards.clone()
    starts = chain_starts.bool().clone()
    starts[0] = True
    ends = torch.roll(starts, -1)
    grid_rewards, grid_index = _to_time_major_grid(rewards, ends)
    running = initial[starts].to(rewards.dtype)
    grid_sums = torch.empty_like(grid_rewards)
    for t in range(grid_rewards.shape[0]):
        running = grid_rewards[t] + gamma * running
        grid_sums[t] = running
    return grid_sums.reshape(-1)[grid_index]
