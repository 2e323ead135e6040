"""VecMemory: one trajectory buffer per env, kept as preallocated [T, N] arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from PPO.checks import check_positive_int
from PPO.Memory import Rollout


def as_state_array(states: ArrayLike) -> np.ndarray:
    """Observations as stored: floating point as float32, integer ones (images) as they are,
    so uint8 frames take a quarter of the memory."""
    states = np.asarray(states)
    return states if states.dtype.kind in "iub" else states.astype(np.float32, copy=False)


def _check_columns(columns: dict[str, Any], count: int, next_states: ArrayLike | None) -> np.ndarray | None:
    """VecMemory.append's argument checks: every column has `count` rows, and `next_states`
    (returned as stored, or None when not given) has the shape of `columns["states"]`. The
    columns are array-likes, `states` an array (`as_state_array`'s)."""
    for name, column in columns.items():
        if np.shape(column)[:1] != (count,):
            raise ValueError(
                f"{name}: expected {count} rows (one per env in env_indices), got shape {np.shape(column)}"
            )
    if next_states is None:
        return None
    next_states = as_state_array(next_states)
    states = columns["states"]
    if next_states.shape != states.shape:
        raise ValueError(f"next_states: expected shape {states.shape} like states, got {next_states.shape}")
    return next_states


class VecMemory:
    """Per-env trajectories stored time-major: `states[t, i]` is env i's t-th stored row; what
    it holds comes out as a `Rollout` (`rollout()`), the format `PPO.memory.add` takes.

    `append` writes one row for a set of envs with one vectorised operation per field (a plain
    slice when all envs are at the same row); the arrays grow by doubling. Rows can be marked
    not `valid` (an autoreset step that is no transition): they are dropped on the way out. A
    step that ends an episode keeps its final observation (the `next_state` the env returned),
    so the learner can bootstrap truncated episodes and RND can score the last transition.
    Each row also records whether it starts an episode (which `clear` does not forget), so the
    learner can carry an env's return across rounds, and the log-probability of its action
    under the policy that chose it (`log_probs`, NaN where not given).
    """

    def __init__(self, num_envs: int, initial_capacity: int = 64):
        self.num_envs = check_positive_int("num_envs", num_envs)
        self._capacity = check_positive_int("initial_capacity", initial_capacity)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._num_valid = 0
        self._arrays: dict[str, np.ndarray] = {}
        self._final_rows: list[np.ndarray] = []  # (row, env) of each stored final state
        self._final_states: list[np.ndarray] = []
        self._last_next_states: np.ndarray = None  # type: ignore[assignment]  # made by _allocate, before use
        self._all_envs = np.arange(self.num_envs)
        self._in_episode = np.zeros(self.num_envs, dtype=bool)
        self._aligned_row: int | None = 0  # the row every env is at, while they all are at one

    def __len__(self) -> int:
        """Number of stored transitions (valid rows)."""
        return self._num_valid

    def _allocate(self, states: np.ndarray, actions: np.ndarray) -> None:
        shape = (self._capacity, self.num_envs)
        self._arrays = {
            "states": np.zeros(shape + states.shape[1:], dtype=states.dtype),
            "actions": np.zeros(shape + actions.shape[1:], dtype=actions.dtype),
            "rewards": np.zeros(shape, dtype=np.float32),
            "terminated": np.zeros(shape, dtype=bool),
            "truncated": np.zeros(shape, dtype=bool),
            "valid": np.zeros(shape, dtype=bool),
            "episode_starts": np.zeros(shape, dtype=bool),
            "log_probs": np.zeros(shape, dtype=np.float32),
        }
        self._last_next_states = np.zeros((self.num_envs,) + states.shape[1:], dtype=states.dtype)

    def _grow(self, needed: int) -> None:
        while self._capacity < needed:
            self._capacity *= 2
        for name, array in self._arrays.items():
            grown = np.zeros((self._capacity,) + array.shape[1:], dtype=array.dtype)
            grown[: array.shape[0]] = array
            self._arrays[name] = grown

    def append(
        self,
        env_indices: ArrayLike | None,
        states: ArrayLike,
        actions: ArrayLike,
        rewards: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        next_states: ArrayLike | None = None,
        valid: ArrayLike | None = None,
        log_probs: ArrayLike | None = None,
    ) -> None:
        """Stores one row for each env in `env_indices` (row k of every array belongs to env
        `env_indices[k]`); `env_indices=None` means every env in order, the quickest case (a
        fixed-horizon rollout's step). `next_states`, when given, supplies the final observation
        of the episodes that end here and the bootstrap state of unfinished ones. `valid` (default
        all True) marks which rows are real transitions; `log_probs`, the behaviour policy's
        log-probabilities of the actions (see `PPO.sample_actions`)."""
        every_env = env_indices is None
        env_indices = self._all_envs if every_env else np.asarray(env_indices, dtype=np.int64)
        count = len(env_indices)
        states = as_state_array(states)
        actions = np.asarray(actions)
        valid = np.ones(count, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
        log_probs = np.full(count, np.nan, np.float32) if log_probs is None else log_probs
        columns = {
            "states": states,
            "actions": actions,
            "rewards": rewards,
            "terminated": terminated,
            "truncated": truncated,
            "valid": valid,
            "log_probs": log_probs,
        }
        next_states = _check_columns(columns, count, next_states)
        if count == 0:
            return
        if not self._arrays:
            self._allocate(states, actions)
        if self._arrays["states"].shape[2:] != states.shape[1:]:
            raise ValueError(
                f"states: expected rows of shape {self._arrays['states'].shape[2:]}, got {states.shape[1:]}"
            )
        ended = (np.asarray(terminated) | np.asarray(truncated)) & valid
        envs = slice(None) if every_env else env_indices  # a slice is the quicker index
        columns["episode_starts"] = ~self._in_episode[envs]
        self._in_episode[envs] = np.where(valid, ~ended, self._in_episode[envs])
        rows = self._write(env_indices, every_env, columns)
        num_valid = int(np.count_nonzero(valid))
        self._num_valid += num_valid
        next_states = states if next_states is None else next_states
        if num_valid == count:
            self._last_next_states[envs] = next_states
        else:
            self._last_next_states[env_indices[valid]] = next_states[valid]
        if ended.any():
            self._final_rows.append(np.stack([rows[ended], env_indices[ended]], axis=1))
            self._final_states.append(next_states[ended].copy())

    def _write(self, env_indices: np.ndarray, every_env: bool, columns: dict[str, Any]) -> np.ndarray:
        """Writes the columns at each env's next row; returns those rows."""
        aligned_row = self._aligned_row if every_env else None
        if aligned_row is not None:  # every env at the same row: one slice per column
            top = aligned_row
            rows = np.full(self.num_envs, top)
        else:
            rows = self.lengths[env_indices]
            top = int(rows.max())
        if top >= self._capacity:
            self._grow(top + 1)
        if aligned_row is not None:
            for name, column in columns.items():
                self._arrays[name][top] = column
            self.lengths += 1
            self._aligned_row = aligned_row + 1
        else:
            for name, column in columns.items():
                self._arrays[name][rows, env_indices] = column
            self.lengths[env_indices] += 1
            self._aligned_row = None
        return rows

    def push(self, idx: int, state: ArrayLike, action: ArrayLike, reward: float, done: bool) -> None:
        """The original per-env call: one step for env `idx`, `done` treated as termination."""
        self.append([idx], np.asarray(state)[None], np.asarray(action)[None], [reward], [bool(done)], [False])

    def rollout(self) -> Rollout | None:
        """What is stored, as a Rollout of copies of the arrays (None when nothing is stored);
        the memory keeps its contents. `take` hands them over without copying.

        An env whose last stored transition does not end an episode is closed there as
        truncated, bootstrapping from the last next state seen for it.
        """
        if not len(self):
            return None
        used = int(self.lengths.max())
        return self._as_rollout({name: array[:used].copy() for name, array in self._arrays.items()})

    def take(self) -> Rollout | None:
        """What is stored, as a Rollout holding the buffers themselves (no copy), and empties
        the memory: the next `append` writes into new buffers of the same capacity."""
        if not len(self):
            self.clear()
            return None
        used = int(self.lengths.max())
        rollout = self._as_rollout({name: array[:used] for name, array in self._arrays.items()})
        self._arrays = {}  # handed over with the rollout
        self.clear()
        return rollout

    def _as_rollout(self, arrays: dict[str, np.ndarray]) -> Rollout:
        """A Rollout of the first rows of the buffers (`arrays`, edited in place: unstored rows
        are marked not valid, open episodes closed as truncated)."""
        used = len(arrays["valid"])
        arrays["valid"] &= np.arange(used)[:, None] < self.lengths[None, :]
        valid = arrays["valid"]
        final_rows, final_states = list(self._final_rows), list(self._final_states)
        has_steps = valid.any(axis=0)
        last_rows = used - 1 - np.argmax(valid[::-1], axis=0)
        ends = arrays["terminated"] | arrays["truncated"]
        open_envs = np.flatnonzero(has_steps & ~ends[last_rows, self._all_envs])
        if len(open_envs):
            arrays["truncated"][last_rows[open_envs], open_envs] = True
            final_rows.append(np.stack([last_rows[open_envs], open_envs], axis=1))
            final_states.append(self._last_next_states[open_envs])
        rows = np.concatenate(final_rows)
        order = np.argsort(rows[:, 0] * self.num_envs + rows[:, 1], kind="stable")
        return Rollout(final_states=np.concatenate(final_states)[order], **arrays)

    def trajectories(self) -> dict[str, np.ndarray]:
        """Every env's transitions laid end to end (env 0 first): the flat layout of
        `Rollout.from_trajectories`, for inspection ({} when nothing is stored)."""
        rollout = self.rollout()
        return {} if rollout is None else rollout.trajectories()

    def clear(self) -> None:
        """Forgets the stored rows; keeps the buffers, and whether each env is inside an episode."""
        self.lengths[:] = 0
        self._aligned_row = 0
        self._num_valid = 0
        self._final_rows.clear()
        self._final_states.clear()
