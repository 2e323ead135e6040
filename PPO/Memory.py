"""The learner's data: time-major rollouts, as collectors hand them over, and the Memory that
queues them until `PPO.learn()` takes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, overload

import numpy as np
import torch
from numpy.typing import ArrayLike

PER_STEP = (
    "states",
    "actions",
    "rewards",
    "terminated",
    "truncated",
    "valid",
    "episode_starts",
    "log_probs",
)  # the [T, N, ...] fields of a Rollout

# A Rollout field as given: anything array-like, or a torch tensor.
Data = ArrayLike | torch.Tensor
# A field, or an array made from fields: a NumPy array from collectors, a torch tensor on the
# learner's device in `learn()`; Any, as the fields are, since each side uses it as its own kind.
Field = Any


def _blank_value(name: str) -> float:
    """What a row without a transition holds in field `name`: NaN for a log-prob (none was
    recorded), 0 elsewhere (not valid, not an end)."""
    return np.nan if name == "log_probs" else 0


@dataclass
class Rollout:
    """Steps of N env copies, time-major: row t of column n is copy n's t-th stored step.

    - `states` [T, N, *obs], `actions` [T, N, *action], `rewards` [T, N];
    - `terminated` [T, N]: the episode ended at this step (its return is cut);
    - `truncated` [T, N]: the episode was cut here without terminating (a time limit, a stop,
      or the end of the rollout): the value of its final observation is bootstrapped;
    - `valid` [T, N]: the row is a transition. Invalid rows (the reset step of a next-step
      autoreset, the tail of a column that finished sooner) hold nothing and are skipped;
    - `final_states` [K, *obs]: the observation after each valid step that ends an episode
      (terminated or truncated), in row-major order of those steps (t first, then n);
    - `episode_starts` [T, N]: the row starts an episode (a column's first row may continue one
      from the previous rollout: reward scaling carries each copy's return across rollouts);
    - `log_probs` [T, N]: the log-probability of each action under the policy that chose it
      (the behaviour policy of PPO's ratio); NaN where it was not recorded, and the learner
      then scores the action with its weights at `learn()` (the acting weights, unless the
      learner was updated in between).

    In every column the valid rows run in time order, a valid row that does not end an episode
    is followed by the next row of the same episode, and the last valid row ends one. Fields
    are NumPy arrays from collectors and torch tensors on the learner's device in `learn()`.
    """

    states: Any
    actions: Any
    rewards: Any
    terminated: Any
    truncated: Any
    valid: Any
    final_states: Any
    episode_starts: Any
    log_probs: Any

    @property
    def ends(self) -> Field:
        """[T, N]: the valid steps that end an episode (the ones `final_states` follow)."""
        return (self.terminated | self.truncated) & self.valid

    def __len__(self) -> int:
        """The number of transitions (valid rows)."""
        return int(self.valid.sum())

    @property
    def shape(self) -> tuple[int, int]:
        """(T, N): the rows (steps) and columns (env copies) of the grid."""
        return tuple(self.valid.shape)

    def to(self, device: torch.device | str) -> Rollout:
        """The same rollout as torch tensors on `device`."""

        def tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
            x = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
            return x.to(device, non_blocking=True)

        return Rollout(**{f.name: tensor(getattr(self, f.name)) for f in fields(self)})

    def numpy(self) -> Rollout:
        """The same rollout as NumPy arrays."""

        def array(x: Data) -> np.ndarray:
            return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)

        return Rollout(**{f.name: array(getattr(self, f.name)) for f in fields(self)})

    def next_states(self) -> Field:
        """[T, N, *obs]: the observation after every valid step (the next row inside an
        episode, the final observation where it ends)."""
        ends = self.ends
        if isinstance(self.states, torch.Tensor):
            next_states = torch.roll(self.states, -1, dims=0)
            next_states[ends] = self.final_states.to(next_states.dtype)
        else:
            next_states = np.roll(self.states, -1, axis=0)
            next_states[ends] = self.final_states
        return next_states

    def check(self) -> Rollout:
        """Raises ValueError naming the field that does not fit the layout; returns self
        (a NumPy rollout)."""
        if np.ndim(self.valid) != 2:
            raise ValueError(f"valid: expected a [T, N] mask, got shape {tuple(np.shape(self.valid))}")
        shape = self.shape
        for name in PER_STEP:
            got = tuple(np.shape(getattr(self, name)))
            per_step_arrays = name in ("states", "actions")  # [T, N, ...]; the rest [T, N]
            if got[:2] != shape or (not per_step_arrays and len(got) != 2):
                more = " + ..." if per_step_arrays else ""
                raise ValueError(f"{name}: expected shape {list(shape)}{more} like valid, got {list(got)}")
        valid, ends = self.valid, self.ends
        num_ends, num_finals = int(ends.sum()), len(self.final_states)
        last_rows = shape[0] - 1 - np.argmax(valid[::-1], axis=0)
        used = valid.any(axis=0)
        if num_finals != num_ends or not ends[last_rows[used], np.flatnonzero(used)].all():
            raise ValueError(
                "trajectories must each close with a terminated or truncated step and "
                f"one final state per closing step: got {num_ends} closing steps and "
                f"{num_finals} final states"
            )
        if tuple(np.shape(self.final_states))[1:] != tuple(np.shape(self.states))[2:]:
            raise ValueError(
                f"final_states: expected rows shaped like the states' "
                f"{list(np.shape(self.states)[2:])}, "
                f"got {list(np.shape(self.final_states)[1:])}"
            )
        return self

    # ------------------------------------------------------------ the flat layout
    @classmethod
    def from_trajectories(
        cls,
        states: Data,
        actions: Data,
        rewards: Data,
        terminated: Data,
        truncated: Data,
        final_states: Data,
        env_ids: Data | None = None,
        episode_starts: Data | None = None,
        log_probs: Data | None = None,
    ) -> Rollout:
        """A rollout from trajectories laid end to end: step i of the flat arrays is
        (states[i], actions[i], rewards[i], ...); every trajectory closes with a terminated or
        truncated step, and `final_states` holds one row per closing step, in order.

        `env_ids[i]` names the env copy step i came from (column env_ids[i] of the rollout;
        one copy's steps in time order), `episode_starts[i]` marks the first step of an
        episode. Left out, every trajectory is its own copy's, starting an episode."""
        flat: dict[str, Any] = {
            name: _as_array(x)
            for name, x in dict(
                states=states,
                actions=actions,
                rewards=rewards,
                terminated=terminated,
                truncated=truncated,
                env_ids=env_ids,
                episode_starts=episode_starts,
                log_probs=log_probs,
            ).items()
        }
        length = flat["states"].shape[0]
        for name, column in flat.items():
            if column is not None and column.shape[:1] != (length,):
                raise ValueError(
                    f"{name}: expected {length} rows like states, got shape {tuple(column.shape)}"
                )
        final_states = _as_array(final_states)
        ends = flat["terminated"].astype(bool) | flat["truncated"].astype(bool)
        if length and (not ends[-1] or len(final_states) != int(ends.sum())):
            raise ValueError(
                "trajectories must each close with a terminated or truncated step and "
                f"one final state per closing step: got {int(ends.sum())} closing "
                f"steps and {len(final_states)} final states"
            )
        previous_ends = np.concatenate([[True], ends[:-1]])
        columns = (
            np.cumsum(previous_ends) - 1 if flat["env_ids"] is None else flat["env_ids"].astype(np.int64)
        )
        if flat["episode_starts"] is None:
            flat["episode_starts"] = previous_ends
        rows = _rank_within(columns)
        grid = _on_grid(flat, rows, columns)
        # final states from the flat order of their steps to the grid's row-major order
        order = np.argsort(rows[ends] * max(grid["valid"].shape[1], 1) + columns[ends], kind="stable")
        return cls(final_states=final_states[order], **grid).check()

    def trajectories(self) -> dict[str, np.ndarray]:
        """The flat layout of `from_trajectories`: every copy's transitions laid end to end,
        copy 0 first, with their `env_ids` (column numbers); {} when there are none."""
        rollout = self.numpy()
        if not len(rollout):
            return {}
        env_major = rollout.valid.T
        flat = {
            name: getattr(rollout, name).swapaxes(0, 1)[env_major] for name in PER_STEP if name != "valid"
        }
        flat["env_ids"] = np.nonzero(env_major)[0]
        rows, columns = np.nonzero(rollout.ends)  # row-major: the order of final_states
        flat["final_states"] = rollout.final_states[np.argsort(columns * self.shape[0] + rows, kind="stable")]
        return flat


@overload
def _as_array(x: None) -> None: ...
@overload
def _as_array(x: Data) -> np.ndarray: ...
def _as_array(x: Data | None) -> np.ndarray | None:
    """`x` as a NumPy array (a tensor copied to the CPU); None stays None."""
    if x is None:
        return None
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements share its group (0 for the first)."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    positions = np.arange(len(groups))
    first = np.ones(len(groups), dtype=bool)
    first[1:] = sorted_groups[1:] != sorted_groups[:-1]
    group_start = np.maximum.accumulate(np.where(first, positions, 0)) if len(groups) else positions
    ranks = np.empty_like(positions)
    ranks[order] = positions - group_start
    return ranks


def _on_grid(flat: dict[str, Any], rows: np.ndarray, columns: np.ndarray) -> dict[str, np.ndarray]:
    """`Rollout.from_trajectories`'s per-step fields laid out on the [T, N] grid: flat step i
    at (rows[i], columns[i]), marked valid; the other cells blank. Missing `log_probs` are NaN."""
    length = len(rows)
    shape = (int(rows.max()) + 1 if length else 0, int(columns.max()) + 1 if length else 0)
    grid = {"valid": np.zeros(shape, dtype=bool)}
    grid["valid"][rows, columns] = True
    for name in PER_STEP:
        if name == "valid":
            continue
        column = flat[name]
        if name == "log_probs" and column is None:
            column = np.full(length, np.nan, dtype=np.float32)
        dtype = bool if name in ("terminated", "truncated", "episode_starts") else column.dtype
        grid[name] = np.full(shape + column.shape[1:], _blank_value(name), dtype=dtype)
        grid[name][rows, columns] = column
    return grid


def concatenate(rollouts: Sequence[Rollout], axis: int) -> Rollout:
    """NumPy rollouts joined along time (`axis=0`: later rollouts of the same copies) or along
    copies (`axis=1`: e.g. workers' slices, in copy order). The other dimension is padded with
    invalid rows up to the largest."""
    if len(rollouts) == 1:
        return rollouts[0]
    other = 1 - axis
    size = max(r.shape[other] for r in rollouts)
    padded = [_pad(r, other, size) for r in rollouts]
    joined = {name: np.concatenate([getattr(r, name) for r in padded], axis=axis) for name in PER_STEP}
    # final states: each part's row-major order, re-sorted into the joined grid's
    keys, offset = [], 0
    width = joined["valid"].shape[1]
    for part in padded:
        rows, columns = np.nonzero(part.ends)
        if axis == 0:
            rows = rows + offset
        else:
            columns = columns + offset
        keys.append(rows * width + columns)
        offset += part.shape[axis]
    order = np.argsort(np.concatenate(keys), kind="stable")
    finals = np.concatenate([r.final_states for r in padded])[order]
    return Rollout(final_states=finals, **joined)


def _pad(rollout: Rollout, axis: int, size: int) -> Rollout:
    missing = size - rollout.shape[axis]
    if missing == 0:
        return rollout
    padded = {}
    for name in PER_STEP:
        array = getattr(rollout, name)
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, missing)
        padded[name] = np.pad(array, widths, constant_values=_blank_value(name))
    return replace(rollout, **padded)


def empty_rollout(like: Rollout, num_steps: int, num_envs: int) -> Rollout:
    """A rollout of `num_envs` copies with no transitions, its fields typed like `like`'s."""

    def blank(name: str) -> np.ndarray:
        array = getattr(like, name)
        return np.full((num_steps, num_envs) + array.shape[2:], _blank_value(name), dtype=array.dtype)

    return Rollout(final_states=like.final_states[:0], **{name: blank(name) for name in PER_STEP})


class Memory:
    """Queues rollouts until `PPO.learn()` takes them, as one rollout on the learner's device."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._rollouts: list[Rollout] = []

    def add(self, rollout: Rollout) -> None:
        """Stores a Rollout (NumPy arrays or tensors; checked, then kept as NumPy until
        `take`). Rollouts of the same copies follow each other in time."""
        if not isinstance(rollout, Rollout):
            raise TypeError(
                f"rollout: expected a Rollout (flat trajectories go through "
                f"add_trajectories), got {type(rollout).__name__}"
            )
        rollout = rollout.numpy().check()
        if len(rollout):
            self._rollouts.append(rollout)

    def add_trajectories(
        self,
        states: Data,
        actions: Data,
        rewards: Data,
        terminated: Data,
        truncated: Data,
        final_states: Data,
        env_ids: Data | None = None,
        episode_starts: Data | None = None,
        log_probs: Data | None = None,
    ) -> None:
        """Stores trajectories laid end to end (the flat layout of `Rollout.from_trajectories`)."""
        self.add(
            Rollout.from_trajectories(
                states,
                actions,
                rewards,
                terminated,
                truncated,
                final_states,
                env_ids,
                episode_starts,
                log_probs,
            )
        )

    def __len__(self) -> int:
        """The number of stored transitions."""
        return sum(len(rollout) for rollout in self._rollouts)

    def take(self) -> Rollout:
        """Everything stored as one rollout of tensors on the device (joined along time);
        empties the memory."""
        if not self._rollouts:
            raise ValueError("memory is empty: transfer trajectories before learning")
        rollout = concatenate(self._rollouts, axis=0).to(self.device)
        self.clear()
        return rollout

    def clear(self) -> None:
        """Drops every stored rollout."""
        self._rollouts.clear()

    def state(self) -> list[dict[str, torch.Tensor]]:
        """The stored rollouts as plain dicts of tensors (for checkpoints)."""
        return [
            {f.name: torch.from_numpy(np.ascontiguousarray(getattr(r, f.name))) for f in fields(r)}
            for r in self._rollouts
        ]

    def load_state(self, rollouts: list[dict[str, torch.Tensor]]) -> None:
        """Replaces the contents with rollouts from `state()` (or, from checkpoints written
        before rollouts were time-major, flat trajectories)."""
        arrays = [{name: value.numpy() for name, value in r.items()} for r in rollouts]
        self._rollouts = [Rollout(**r) if "valid" in r else Rollout.from_trajectories(**r) for r in arrays]
