"""The learner's batch: whole trajectories as tensors on the learner's device."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """Trajectories laid end to end: step i of the flat batch is (states[i], actions[i], rewards[i]).

    Every trajectory closes with a step whose `terminated` or `truncated` flag is set. `truncated`
    means "cut without termination" (a time limit, or collection stopped mid-episode): the value of
    `final_states[k]` is bootstrapped there, k counting the closing steps in order. `final_states`
    holds one row per closing step, terminated ones too (RND scores them as next observations).
    """

    states: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_states: torch.Tensor

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

    def add(self, states, actions, rewards, terminated, truncated, final_states) -> None:
        chunk = Batch(*(self._to_tensor(x) for x in
                        (states, actions, rewards, terminated, truncated, final_states)))
        num_steps = len(chunk)
        for name in ("actions", "rewards", "terminated", "truncated"):
            if getattr(chunk, name).shape[0] != num_steps:
                raise ValueError(f"{name}: expected {num_steps} rows like states, "
                                 f"got {getattr(chunk, name).shape[0]}")
        if num_steps == 0:
            return
        chunk.terminated, chunk.truncated = chunk.terminated.bool(), chunk.truncated.bool()
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
