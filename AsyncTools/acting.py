"""The policy copy that acts away from the learner, and the one format its weights travel in.

A collector process (AsyncTools/process_collector.py), every Ray worker (ray_backend.py) and
an overlapped in-process collector (overlap.py) act with a copy of the learner's policy, built
by `acting_copy` from the learner's `config`, whose weights arrive as `weights_of(learner)`
(`{name: NumPy array}`, the policy's state_dict: picklable without torch's shared memory, one
costly file descriptor per tensor, and put into Ray's object store as plain arrays) and are
loaded by `load_into`.

The seed rule: the copy acting for env copies `first_copy ..` samples its actions from a
generator seeded `learner_seed + first_copy`. That seed sets nothing else that acts: the
initial weights it also draws are replaced by the first `load_into` before any round, and the
learner's own generators (update shuffling, RND) go unused in a copy that only acts. A copy
acting for all the copies (a collector process, overlap) thus samples from the stream the
learner itself samples from in a synchronous run (the same seed: the same rounds, as long as
the weights are the same); Ray workers, acting for slices, each get their own stream.
"""

from __future__ import annotations

import numpy as np
import torch

from PPO import PPO

Weights = dict[str, np.ndarray]  # the policy's state_dict as NumPy arrays


def acting_copy(
    config: dict, learner_seed: int, first_copy: int = 0, device: str | torch.device = "cpu"
) -> PPO:
    """A PPO of the learner's structure (its `config`) on `device`, sampling from a generator
    seeded `learner_seed + first_copy` (the module's seed rule), with torch's thread count as
    it is here (a process acting away from the learner sets it to 1 first). Its weights are
    the learner's only after `load_into`."""
    return PPO(**config, device=device, seed=learner_seed + first_copy, num_threads=torch.get_num_threads())


def weights_of(ppo: PPO) -> Weights:
    """`ppo`'s policy weights (parameters and buffers: observation statistics, action bounds)
    as NumPy arrays of their own, copied off any device."""
    return {name: tensor.detach().cpu().numpy().copy() for name, tensor in ppo.policy.state_dict().items()}


@torch.no_grad()
def load_into(acting: PPO, weights: Weights) -> None:
    """Copies `weights` (from `weights_of`) into `acting`'s policy, on its device."""
    acting.policy.load_state_dict(
        {name: torch.from_numpy(_writable(array)) for name, array in weights.items()}
    )
    if acting.numpy_actor is not None:
        acting.numpy_actor.refresh()


def _writable(array: np.ndarray) -> np.ndarray:
    """`array`, or a copy of it where it is read-only (Ray hands out its object store's
    arrays so), which torch would warn about."""
    return array if array.flags.writeable else array.copy()
