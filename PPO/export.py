"""A trained policy for deployment: one file that needs torch and nothing of this project.

    ppo.export("cartpole.pt2")                       # after training
    policy = torch.export.load("cartpole.pt2").module()
    actions = policy(torch.as_tensor(observations))  # a batch [B, *observation_shape]

The file holds `DeployedPolicy` exported with `torch.export` (batch size free): raw observations
in, the most likely actions out (as `PPO.get_action(..., deterministic=True)` gives them: the
observation normaliser applied, continuous actions in the env's units clipped to its bounds).
Loading it runs no pickled code.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from .ActorCritic import ActorCritic
from .checkpoint import atomic_write


class DeployedPolicy(nn.Module):
    """Raw observations [B, ...] -> the most likely actions [B] (discrete) or [B, action_dim]."""

    def __init__(self, policy: ActorCritic):
        super().__init__()
        self.policy = copy.deepcopy(policy).cpu().eval()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        actions = self.policy.act(obs, None, deterministic=True)
        if self.policy.is_continuous:
            actions = torch.maximum(torch.minimum(actions, self.policy.action_high),
                                    self.policy.action_low)
        return actions


def export_policy(policy: ActorCritic, file: str | Path) -> Path:
    """Writes `policy`'s deterministic actor to `file` with torch.export (written atomically)."""
    file = Path(file)
    example = torch.zeros((2, *policy.observation_shape),
                          dtype=torch.uint8 if policy.is_image else torch.float32)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(DeployedPolicy(policy), (example,),
                                  dynamic_shapes={"obs": {0: batch}})
    atomic_write(file, lambda handle: torch.export.save(program, handle))
    return file
