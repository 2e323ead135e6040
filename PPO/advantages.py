"""Scans over time-major [T, N] grids (T steps of N env copies), vectorised across copies:
generalised advantage estimation (a reverse scan) and the discounted running return that reward
scaling divides by (a forward scan); and GAE over a learner's `Rollout`, what each step
bootstraps from decided by its episode ends (`episodic_gae`, `non_episodic_gae`), which
`PPO._advantages` calls.

Rows where `valid` is False are not transitions (an autoreset step, a column's padded tail):
they add nothing and the scans pass over them.
"""

from __future__ import annotations

import torch

from .Memory import Rollout


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
    # Per row: A_t = d_t + c_t * A_t'. A valid row adds its delta and passes gamma * lambda
    # unless it ends an episode; an invalid row adds nothing and passes A_t' on unchanged.
    d = torch.where(valid, rewards + gamma * next_values - values, 0.0)
    c = torch.where(valid, (gamma * gae_lambda) * (~ends.bool()).to(d.dtype), 1.0).to(d.dtype)
    advantages = torch.zeros_like(d)
    running = torch.zeros_like(d[0]) if len(d) else d.new_zeros(())
    for t in range(d.shape[0] - 1, -1, -1):
        running = d[t] + c[t] * running
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


def episodic_gae(
    batch: Rollout,
    rewards: torch.Tensor,
    values: torch.Tensor,
    final_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`compute_gae` over the rollout `batch` ([T, N] `rewards` and `values`), the return of an
    episode ending with it: termination cuts it (0 to bootstrap from), truncation bootstraps
    `final_values` (V of the final observation, at the rows that end an episode)."""
    ends = batch.ends
    # inside an episode the next row is the next step (an episode's rows are contiguous)
    following = torch.roll(values, -1, dims=0)
    next_values = torch.where(ends, final_values, following).masked_fill(batch.terminated, 0.0)
    return compute_gae(rewards, values, next_values, ends, batch.valid, gamma, gae_lambda)


def non_episodic_gae(
    batch: Rollout,
    rewards: torch.Tensor,
    values: torch.Tensor,
    final_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`compute_gae` over the rollout `batch` with returns that run on through episode ends
    within each copy's column (RND's intrinsic return, Burda et al.), bootstrapping from V of
    the copy's next state; only at a column's last valid row does the return stop, there
    bootstrapping `final_values`."""
    valid = batch.valid
    # a copy's run ends at its column's last valid row: only there does the return stop;
    # elsewhere it flows on to the copy's next step, past the next episode's reset row
    column_ends = batch.ends & (next_valid(torch.ones_like(rewards), valid) == 0)
    next_values = torch.where(column_ends, final_values, next_valid(values, valid))
    return compute_gae(rewards, values, next_values, column_ends, valid, gamma, gae_lambda)


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
    # R_t = a_t + k_t * R_t'': a valid row adds its reward to the discounted sum (to 0 at an
    # episode start); an invalid row adds nothing and keeps the sum.
    a = torch.where(valid, rewards, 0.0)
    k = torch.where(valid, torch.where(episode_starts.bool(), 0.0, gamma), 1.0).to(rewards.dtype)
    sums = torch.zeros_like(rewards)
    running = initial.to(rewards.dtype).clone()
    for t in range(rewards.shape[0]):
        running = a[t] + k[t] * running
        sums[t] = running
    return sums, running
