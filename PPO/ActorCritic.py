"""Policy and value networks, and the action distributions they define.

Separate MLPs for the actor and the critic (the usual choice for vector observations), orthogonal
initialisation (hidden layers sqrt(2), policy head 0.01, value head 1, zero biases).

Discrete actions: a categorical over logits. Continuous actions: a diagonal Gaussian with a
state-independent log std, expressed directly in the env's units: the network's mean `mu` and
std live in [-1, 1]-ish units and are mapped by `action_center + action_half_range * (.)`.
With `squash_actions=True` the Gaussian sample is passed through tanh first, and the log-prob
carries the tanh correction, so it is the log-prob of exactly the action the env was sent.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .normalization import RunningMeanStd

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
TANH_EPS = 1e-6
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def layer_init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [layer_init(nn.Linear(in_dim, size), math.sqrt(2)), nn.Tanh()]
        in_dim = size
    layers.append(layer_init(nn.Linear(in_dim, out_dim), out_gain))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Actor and critic MLPs plus everything needed to act from raw observations: the
    observation normaliser (optional) and the action bounds, all saved in `state_dict`."""

    def __init__(
        self,
        is_continuous: bool,
        observ_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        squash_actions: bool = False,
        normalize_obs: bool = False,
        log_std_init: float = 0.0,
    ):
        super().__init__()
        self.is_continuous = is_continuous
        self.observ_dim = observ_dim
        self.action_dim = action_dim
        self.squash_actions = squash_actions
        self.actor = mlp(observ_dim, hidden_sizes, action_dim, out_gain=0.01)
        self.critic = mlp(observ_dim, hidden_sizes, 1, out_gain=1.0)
        self.obs_normalizer = RunningMeanStd(observ_dim) if normalize_obs else None
        if is_continuous:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))
            self.register_buffer("action_low", -torch.ones(action_dim))
            self.register_buffer("action_high", torch.ones(action_dim))

    def set_action_bounds(self, low: torch.Tensor, high: torch.Tensor) -> None:
        with torch.no_grad():
            self.action_low.copy_(low)
            self.action_high.copy_(high)

    @property
    def action_center(self) -> torch.Tensor:
        return (self.action_high + self.action_low) / 2

    @property
    def action_half_range(self) -> torch.Tensor:
        return (self.action_high - self.action_low) / 2

    def preprocess(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.reshape(obs.shape[0], -1).float()
        return self.obs_normalizer.normalize(obs) if self.obs_normalizer is not None else obs

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs) for raw observations shaped [B, observ_dim]; returns [B]."""
        return self.critic(self.preprocess(obs)).squeeze(-1)

    def _log_std(self) -> torch.Tensor:
        return self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None,
            deterministic: bool = False) -> torch.Tensor:
        """Samples (or, deterministic, takes the mode of) the policy's actions for a batch."""
        features = self.preprocess(obs)
        out = self.actor(features)
        if not self.is_continuous:
            if deterministic:
                return out.argmax(-1)
            # Gumbel-max: argmax(logits + G) with G = -log(E), E ~ Exp(1), is a categorical sample.
            exponential = torch.empty_like(out).exponential_(generator=generator)
            return (out - exponential.log()).argmax(-1)
        if deterministic:
            u = out
        else:
            noise = torch.randn(out.shape, generator=generator, device=out.device)
            u = out + self._log_std().exp() * noise
        return self._to_env_units(u)

    def _to_env_units(self, u: torch.Tensor) -> torch.Tensor:
        if not self.squash_actions:
            return self.action_center + self.action_half_range * u
        actions = self.action_center + self.action_half_range * torch.tanh(u)
        # Rounding can land a saturated sample one ulp outside bounds that float32 cannot hold exactly.
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs of `actions` (exactly as they were returned by `act`), entropies and values."""
        features = self.preprocess(obs)
        values = self.critic(features).squeeze(-1)
        out = self.actor(features)
        if not self.is_continuous:
            log_probs_all = torch.log_softmax(out, dim=-1)
            log_probs = log_probs_all.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)
            entropy = -(log_probs_all.exp() * log_probs_all).sum(-1)
            return log_probs, entropy, values
        log_std = self._log_std().expand_as(out)
        unit_actions = (actions.reshape(out.shape) - self.action_center) / self.action_half_range
        if self.squash_actions:
            unit_actions = unit_actions.clamp(-1 + TANH_EPS, 1 - TANH_EPS)
            u = torch.atanh(unit_actions)
        else:
            u = unit_actions
        log_probs = (-0.5 * ((u - out) / log_std.exp()).square() - log_std - HALF_LOG_2PI).sum(-1)
        if self.squash_actions:
            log_probs = log_probs - torch.log1p(-unit_actions.square()).sum(-1)
        # Jacobian of the affine map to env units; constant, but keeps log_probs exact densities.
        log_probs = log_probs - torch.log(self.action_half_range).sum()
        # Entropy of the Gaussian before squashing (the squashed one has no closed form).
        entropy = (0.5 + HALF_LOG_2PI + log_std).sum(-1) + torch.log(self.action_half_range).sum()
        return log_probs, entropy, values
