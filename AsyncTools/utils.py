"""The original project's helpers for a hand-written rollout loop, kept with the same names and
arguments. `is_env_terminal` is the original's `envs_active` array: True where that env's
episode is over. Arrays of per-step data hold one row per env still running, in env order."""

from __future__ import annotations

import numpy as np

from PPO.Memory import Memory

from .vec_memory import VecMemory


def indexes_of_active_environments(num_envs: int, is_env_terminal: np.ndarray) -> np.ndarray:
    """Indices of the envs whose episode is still running."""
    return np.arange(num_envs)[~np.asarray(is_env_terminal, dtype=bool)]


def number_of_active_environments(is_env_terminal: np.ndarray) -> int:
    """How many envs' episodes are still running."""
    return int(np.sum(~np.asarray(is_env_terminal, dtype=bool)))


def range_of_active_environments(is_env_terminal: np.ndarray) -> np.ndarray:
    """0, 1, ... up to the number of running envs: the row indices of per-step data."""
    return np.arange(number_of_active_environments(is_env_terminal))


def inactive_states_dropout(next_states: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """Drops the rows of the envs whose episode just ended."""
    return next_states[~np.asarray(dones, dtype=bool)]


def update_active_environments_list(is_env_terminal: np.ndarray, dones: np.ndarray) -> np.ndarray:
    """Marks the running envs whose episode just ended (`dones`, one per running env) as over.
    Returns a new array; the one passed in is not changed."""
    updated = is_env_terminal.copy()
    updated[~np.asarray(is_env_terminal, dtype=bool)] = np.asarray(dones, dtype=bool)
    return updated


def buffer_append(
    buffer: VecMemory,
    states: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    dones: np.ndarray,
    is_env_terminal: np.ndarray,
    num_envs: int,
    *,
    terminated: np.ndarray | None = None,
    truncated: np.ndarray | None = None,
    next_states: np.ndarray | None = None,
) -> None:
    """Stores one step of every running env in `buffer`.

    `dones` marks the episodes that end at this step. Whether each ended by termination (the
    return is cut) or by a time limit (the value of the final state is bootstrapped) is read,
    in this order, from the `terminated`/`truncated`/`next_states` keywords, or from the
    EnvVectorizer that `is_env_terminal` (its `envs_active`) belongs to; with neither, every
    end counts as a termination, as in the original project.
    """
    env_indices = indexes_of_active_environments(num_envs, is_env_terminal)
    if len(env_indices) != len(states):
        raise ValueError(
            f"states: expected one row per running env ({len(env_indices)} of "
            f"{num_envs} per is_env_terminal), got {len(states)}"
        )
    dones = np.asarray(dones, dtype=bool)
    vectorizer = getattr(is_env_terminal, "vectorizer", None)
    if vectorizer is not None and vectorizer.num_envs == num_envs:
        if terminated is None:
            terminated = vectorizer.last_terminated[env_indices]
        if next_states is None:
            next_states = vectorizer.last_next_states[env_indices]
    if terminated is None:
        terminated = ~np.asarray(truncated, dtype=bool) if truncated is not None else dones
    # Every end that is not a termination bootstraps from the state the env returned.
    terminated = dones & np.asarray(terminated, dtype=bool)
    truncated = dones & ~terminated
    if truncated.any() and next_states is None:
        raise ValueError(
            "next_states: needed to bootstrap the episodes truncated at this step "
            "(pass next_states=..., or use the EnvVectorizer's envs_active)"
        )
    buffer.append(env_indices, states, actions, rewards, terminated, truncated, next_states)


def buffer_to_target_buffer_transfer(buffer: VecMemory, target_buffer: Memory) -> None:
    """Moves everything in `buffer` to `target_buffer` (a `PPO.Memory`, e.g. `ppo.memory`) in
    one call, and empties `buffer`."""
    rollout = buffer.take()
    if rollout is not None:
        target_buffer.add(rollout)
