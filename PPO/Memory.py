"""The learner's batch: whole trajectories as tensors on the learner's device."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


@dataclass
class Batch:
    """Trajectories laid end to end: step i of the flat batch is (states[i], actions[i], rewards[i]).

    Every trajectory closes with a step whose `terminated` or `truncated` flag is set. `truncated`
    means "cut without termination" (a time limit, or collection stopped mid-episode): the value of
    `final_states[k]` is bootstrapped there, k counting the closing steps in order. `final_states`
    holds one row per closing step, terminated ones too (RND scores them as next observations).

    `env_ids[i]` names the env copy step i came from (one env's rows are contiguous and in time
    order), and `episode_starts[i]` is True where step i is the first of an episode. Reward
    scaling and RND's non-episodic returns use them to carry each env's return across batches.
    Left out, every trajectory counts as its own env's and as the start of an episode.
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_states: torch.Tensor
    env_ids: Optional[torch.Tensor] = None
    episode_starts: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        self.terminated, self.truncated = self.terminated.bool(), self.truncated.bool()
        ends = self.segment_ends.long()
        if self.env_ids is None:
            self.env_ids = torch.cumsum(ends, 0) - ends
        if self.episode_starts is None:
            self.episode_starts = torch.roll(ends, 1).bool()
            if len(ends):
                self.episode_starts[0] = True
        self.env_ids, self.episode_starts = self.env_ids.long(), self.episode_starts.bool()

    @property
    def segment_ends(self) -> torch.Tensor:
        return self.terminated | self.truncated

    def __len__(self) -> int:
        return self.states.shape[0]

    def next_states(self) -> torch.Tensor:
        """s_{i+1} for every step: the following row inside a trajectory, the final state at its end."""
        next_states = torch.roll(self.states, -1, dims=0)
        next_states[self.segment_ends] = self.final_states.to(next_states.dtype)
        return next_states


class Memory:
    """Accumulates transferred trajectories until `PPO.learn()` takes them.

    `add` receives arrays (numpy or torch) shaped as in `Batch`; they are moved to `device` once.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._chunks: list[Batch] = []

    def add(self, states, actions, rewards, terminated, truncated, final_states,
            env_ids=None, episode_starts=None) -> None:
        columns = {"states": states, "actions": actions, "rewards": rewards, "terminated": terminated,
                   "truncated": truncated, "env_ids": env_ids, "episode_starts": episode_starts}
        columns = {name: None if x is None else self._to_tensor(x) for name, x in columns.items()}
        num_steps = columns["states"].shape[0]
        for name, column in columns.items():
            if column is not None and column.shape[:1] != (num_steps,):
                raise ValueError(f"{name}: expected {num_steps} rows like states, "
                                 f"got shape {tuple(column.shape)}")
        if num_steps == 0:
            return
        chunk = Batch(final_states=self._to_tensor(final_states), **columns)
        num_ends = int(chunk.segment_ends.sum())
        if not bool(chunk.segment_ends[-1]) or chunk.final_states.shape[0] != num_ends:
            raise ValueError("trajectories must each close with a terminated or truncated step and "
                             f"one final state per closing step: got {num_ends} closing steps and "
                             f"{chunk.final_states.shape[0]} final states")
        self._chunks.append(chunk)

    def _to_tensor(self, x) -> torch.Tensor:
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        return torch.as_tensor(x).to(self.device, non_blocking=True)

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self._chunks)

    def take(self) -> Batch:
        """Returns everything stored as one Batch and empties the memory."""
        if not self._chunks:
            raise ValueError("memory is empty: transfer trajectories before learning")
        fields = Batch.__dataclass_fields__
        batch = Batch(*(torch.cat([getattr(c, name) for c in self._chunks]) for name in fields))
        self.clear()
        return batch

    def clear(self) -> None:
        self._chunks.clear()

    def state(self) -> list[dict[str, torch.Tensor]]:
        """The stored chunks as plain dicts of tensors (for checkpoints)."""
        return [dict(vars(chunk)) for chunk in self._chunks]

    def load_state(self, chunks: list[dict[str, torch.Tensor]]) -> None:
        """Replaces the contents with chunks from `state()`."""
        self._chunks = [Batch(**{name: value.to(self.device) for name, value in chunk.items()})
                        for chunk in chunks]
