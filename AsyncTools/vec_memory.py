"""VecMemory: one trajectory buffer per env, kept as preallocated [T, N] arrays."""
from __future__ import annotations

import numpy as np

from PPO.checks import check_positive_int


class VecMemory:
    """Per-env trajectories stored time-major: `states[t, i]` is env i's t-th stored step.

    `append` writes one step for a subset of envs in one vectorised operation per field; the
    arrays grow by doubling. A step that ends an episode keeps its final observation (the
    `next_state` the env returned), so the learner can bootstrap truncated episodes and RND can
    score the last transition. `trajectories()` lays the envs' buffers end to end.
    """

    def __init__(self, num_envs: int, initial_capacity: int = 64):
        self.num_envs = check_positive_int("num_envs", num_envs)
        self._capacity = check_positive_int("initial_capacity", initial_capacity)
        self.lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._arrays: dict[str, np.ndarray] = {}
        self._final_states: dict[tuple[int, int], np.ndarray] = {}
        self._last_next_states: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.lengths.sum())

    def _allocate(self, states: np.ndarray, actions: np.ndarray) -> None:
        shape = (self._capacity, self.num_envs)
        self._arrays = {
            "states": np.zeros(shape + states.shape[1:], dtype=np.float32),
            "actions": np.zeros(shape + actions.shape[1:], dtype=actions.dtype),
            "rewards": np.zeros(shape, dtype=np.float32),
            "terminated": np.zeros(shape, dtype=bool),
            "truncated": np.zeros(shape, dtype=bool),
        }
        self._last_next_states = np.zeros((self.num_envs,) + states.shape[1:], dtype=np.float32)

    def _grow(self, needed: int) -> None:
        while self._capacity < needed:
            self._capacity *= 2
        for name, array in self._arrays.items():
            grown = np.zeros((self._capacity,) + array.shape[1:], dtype=array.dtype)
            grown[: array.shape[0]] = array
            self._arrays[name] = grown

    def append(self, env_indices, states, actions, rewards, terminated, truncated,
               next_states=None) -> None:
        """Stores one step for each env in `env_indices` (row k of every array belongs to env
        `env_indices[k]`). `next_states`, when given, supplies the final observation of the
        episodes that end here and the bootstrap state of unfinished ones."""
        env_indices = np.asarray(env_indices, dtype=np.int64)
        count = len(env_indices)
        states = np.asarray(states, dtype=np.float32)
        actions = np.asarray(actions)
        columns = {"states": states, "actions": actions, "rewards": rewards,
                   "terminated": terminated, "truncated": truncated}
        for name, column in columns.items():
            if np.shape(column)[:1] != (count,):
                raise ValueError(f"{name}: expected {count} rows (one per env in env_indices), got "
                                 f"shape {np.shape(column)}")
        if next_states is not None:
            next_states = np.asarray(next_states, dtype=np.float32)
            if next_states.shape != states.shape:
                raise ValueError(f"next_states: expected shape {states.shape} like states, got "
                                 f"{next_states.shape}")
        if count == 0:
            return
        if not self._arrays:
            self._allocate(states, actions)
        if self._arrays["states"].shape[2:] != states.shape[1:]:
            raise ValueError(f"states: expected rows of shape {self._arrays['states'].shape[2:]}, "
                             f"got {states.shape[1:]}")
        rows = self.lengths[env_indices]
        if rows.max() >= self._capacity:
            self._grow(int(rows.max()) + 1)
        for name, column in columns.items():
            self._arrays[name][rows, env_indices] = column
        self.lengths[env_indices] += 1

        next_states = states if next_states is None else next_states
        self._last_next_states[env_indices] = next_states
        ended = np.flatnonzero(np.asarray(terminated) | np.asarray(truncated))
        for k in ended:
            self._final_states[(int(env_indices[k]), int(rows[k]))] = next_states[k].copy()

    def push(self, idx: int, state, action, reward, done) -> None:
        """The original per-env call: one step for env `idx`, `done` treated as termination."""
        self.append([idx], np.asarray(state)[None], np.asarray(action)[None], [reward], [bool(done)],
                    [False])

    def trajectories(self) -> dict[str, np.ndarray]:
        """Every env's steps laid end to end (env 0 first), as flat arrays for `PPO.Memory.add`.

        An env whose last stored step does not end an episode is closed there as truncated,
        bootstrapping from the last next state seen for it.
        """
        if not len(self):
            return {}
        used = int(self.lengths.max())
        valid = (np.arange(used)[:, None] < self.lengths[None, :]).T
        flat = {name: array[:used].swapaxes(0, 1)[valid] for name, array in self._arrays.items()}
        ends_at = np.cumsum(self.lengths) - 1
        final_states = dict(self._final_states)
        for env in np.flatnonzero(self.lengths):
            last = ends_at[env]
            if not (flat["terminated"][last] or flat["truncated"][last]):
                flat["truncated"][last] = True
                final_states[(int(env), int(self.lengths[env] - 1))] = self._last_next_states[env]
        flat["final_states"] = np.stack([final_states[key] for key in sorted(final_states)])
        return flat

    def clear(self) -> None:
        self.lengths[:] = 0
        self._final_states.clear()
