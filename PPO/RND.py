"""Random Network Distillation (Burda et al., 2018): novelty as the error of a predictor trained
to match a fixed, randomly initialised target network."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .ActorCritic import NatureCNN, mlp
from .normalization import RunningMeanStd


def _network(observation_shape: tuple[int, ...], hidden_sizes: Sequence[int], feature_dim: int) -> nn.Module:
    if len(observation_shape) == 3:  # images: inputs are already normalised, so no 1/255
        cnn = NatureCNN(observation_shape, input_scale=1.0)
        return nn.Sequential(cnn, nn.Linear(cnn.out_features, feature_dim))
    return mlp(observation_shape[0], hidden_sizes, feature_dim, out_gain=1.0)


class RND(nn.Module):
    """Target and predictor networks over observations normalised by their running mean/std and
    clipped to [-5, 5] (statistics warmed up with `update_obs_stats` before training).

    `intrinsic_reward` is the predictor's squared error; the learner divides it by the running
    std of the discounted intrinsic return. The predictor trains on a random `update_fraction`
    of each mini-batch it is given.
    """

    def __init__(
        self,
        observ_dim: int,
        feature_dim: int = 64,
        hidden_sizes: Sequence[int] = (64, 64),
        lr: float = 1e-3,
        update_fraction: float = 0.25,
        *,
        observation_shape: Sequence[int] | None = None,
    ):
        super().__init__()
        shape = tuple(observation_shape) if observation_shape else (observ_dim,)
        self.observation_shape = shape
        self.obs_normalizer = RunningMeanStd(shape, clip=5.0)
        self.target = _network(shape, hidden_sizes, feature_dim)
        self.predictor = _network(shape, hidden_sizes, feature_dim)
        self.target.requires_grad_(False)
        self.update_fraction = update_fraction
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)

    def _errors(self, obs: torch.Tensor) -> torch.Tensor:
        x = self.obs_normalizer.normalize(obs.reshape(obs.shape[0], *self.observation_shape).float())
        return (self.predictor(x) - self.target(x)).square().mean(-1)

    @torch.no_grad()
    def update_obs_stats(self, obs: torch.Tensor) -> None:
        """Merges a batch of observations [B, ...] into the input normalisation statistics."""
        self.obs_normalizer.update(obs.reshape(obs.shape[0], *self.observation_shape))

    @torch.no_grad()
    def intrinsic_reward(self, obs: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
        """Novelty of each observation in a batch [B, ...] -> [B] (unscaled prediction error).
        With `update_stats`, the batch first joins the input statistics."""
        if update_stats:
            self.update_obs_stats(obs)
        return self._errors(obs)

    def train_predictor(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One gradient step of the predictor on a random fraction of `obs`; returns its loss
        (a detached 0-d tensor: no device sync)."""
        count = max(1, int(obs.shape[0] * self.update_fraction))
        index = torch.randperm(obs.shape[0], generator=generator, device="cpu")[:count]
        loss = self._errors(obs[index.to(obs.device)]).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
