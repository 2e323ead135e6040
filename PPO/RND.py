"""Random Network Distillation (Burda et al., 2018): novelty as the error of a predictor trained
to match a fixed, randomly initialised target network."""
from __future__ import annotations

import torch
from torch import nn

from .ActorCritic import mlp
from .normalization import RunningMeanStd


class RND(nn.Module):
    """Target and predictor networks over normalised observations (clipped to [-5, 5]).

    `intrinsic_reward` is the predictor's squared error, divided by the running std of the
    intrinsic rewards seen so far so that `beta` means the same on every env.
    The predictor trains on a random `update_fraction` of each batch.
    """

    def __init__(self, observ_dim: int, feature_dim: int = 64, hidden_sizes=(64, 64),
                 lr: float = 1e-3, update_fraction: float = 0.25):
        super().__init__()
        self.obs_normalizer = RunningMeanStd(observ_dim, clip=5.0)
        self.reward_normalizer = RunningMeanStd(())
        self.target = mlp(observ_dim, hidden_sizes, feature_dim, out_gain=1.0)
        self.predictor = mlp(observ_dim, hidden_sizes, feature_dim, out_gain=1.0)
        self.target.requires_grad_(False)
        self.update_fraction = update_fraction
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)

    def _errors(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.obs_normalizer.normalize(obs.reshape(obs.shape[0], -1).float())
        return (self.predictor(x) - self.target(x)).square().mean(-1)

    @torch.no_grad()
    def intrinsic_reward(self, obs: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        """Novelty of each observation in a batch [B, observ_dim] -> [B]."""
        if update_stats:
            self.obs_normalizer.update(obs.reshape(obs.shape[0], -1))
        errors = self._errors(obs)
        if update_stats:
            self.reward_normalizer.update(errors)
        return errors / torch.sqrt(self.reward_normalizer.var + 1e-8).to(errors.dtype)

    def train_predictor(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> float:
        """One gradient step of the predictor on a random fraction of `obs`; returns its loss."""
        count = max(1, int(obs.shape[0] * self.update_fraction))
        index = torch.randperm(obs.shape[0], generator=generator, device="cpu")[:count]
        loss = self._errors(obs[index.to(obs.device)]).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()
