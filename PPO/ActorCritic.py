"""Policy and value networks, and the action distributions they define.

Vector observations: separate MLPs for the actor and the critic (tanh by default, the usual
choice for them; relu on request), each with its own hidden sizes if wanted.
Image observations (uint8 frames, HxWxC or CxHxW): one Nature CNN torso shared by a policy head
and a value head, the frames scaled to [0, 1] inside the network. Orthogonal initialisation
everywhere (hidden layers sqrt(2), policy head 0.01, value head 1, zero biases).

Discrete actions: a categorical over logits; MultiDiscrete: independent categoricals, one per
sub-action, whose log-probs and entropies add up. Continuous actions: a diagonal Gaussian with a
state-independent log std, expressed directly in the env's units: the network's mean `mu` and
std live in [-1, 1]-ish units and are mapped by `action_center + action_half_range * (.)`.
With `squash_actions=True` the Gaussian sample is passed through tanh first, and the log-prob
carries the tanh correction, so it is the log-prob of exactly the action the env was sent.

The critic has one value head, or two (extrinsic and intrinsic) when RND is on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from .normalization import RunningMeanStd

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
TANH_EPS = 1e-6
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def layer_init(layer: nn.Module, gain: float) -> nn.Module:
    nn.init.orthogonal_(cast(torch.Tensor, layer.weight), gain)  # a Linear or Conv2d: tensors
    nn.init.zeros_(cast(torch.Tensor, layer.bias))  # every layer here is built with a bias
    return layer


ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}  # of the vector policies' hidden layers


def mlp(
    in_dim: int, hidden_sizes: Sequence[int], out_dim: int, out_gain: float, activation: str = "tanh"
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [layer_init(nn.Linear(in_dim, size), math.sqrt(2)), ACTIVATIONS[activation]()]
        in_dim = size
    layers.append(layer_init(nn.Linear(in_dim, out_dim), out_gain))
    return nn.Sequential(*layers)


def is_channels_last(shape: Sequence[int]) -> bool:
    """HxWxC when the last axis is the shortest (84x84x3), CxHxW otherwise (4x84x84)."""
    return shape[-1] < shape[0]


class NatureCNN(nn.Module):
    """The Atari torso of Mnih et al. (2015): three ReLU convolutions and a 512-unit ReLU layer,
    over uint8 frames scaled to [0, 1] here (by `input_scale`). Frames are HxWxC or CxHxW
    (`is_channels_last`)."""

    def __init__(self, observation_shape: Sequence[int], features: int = 512, input_scale: float = 1 / 255):
        super().__init__()
        shape = tuple(int(d) for d in observation_shape)
        self.input_scale = input_scale
        self.channels_last = is_channels_last(shape)
        channels, height, width = (shape[2], shape[0], shape[1]) if self.channels_last else shape
        self.convs = nn.Sequential(
            layer_init(nn.Conv2d(channels, 32, 8, stride=4), math.sqrt(2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2), math.sqrt(2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1), math.sqrt(2)),
            nn.ReLU(),
            nn.Flatten(),
        )
        if height < 36 or width < 36:
            raise ValueError(f"observation_shape: the Nature CNN needs frames of at least 36x36, got {shape}")
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, channels, height, width)).shape[1]
        self.linear = nn.Sequential(layer_init(nn.Linear(flat, features), math.sqrt(2)), nn.ReLU())
        self.out_features = features

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float() * self.input_scale
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return self.linear(self.convs(x))


class MultiInputTorso(nn.Module):
    """Flat observations laid out in `parts` (their shapes, in order: how gymnasium flattens a
    Dict or Tuple observation) -> one feature vector: each three-dimensional part (an image,
    pixels 0-255) through its own Nature CNN, every other part as it is, concatenated."""

    def __init__(self, parts: Sequence[Sequence[int]]):
        super().__init__()
        self.parts = [tuple(int(d) for d in part) for part in parts]
        self.sizes = [math.prod(part) for part in self.parts]
        cnns = [NatureCNN(part) for part in self.parts if len(part) == 3]
        self.cnns = nn.ModuleList(cnns)
        self.out_features = sum(cnn.out_features for cnn in cnns) + sum(
            size for part, size in zip(self.parts, self.sizes, strict=True) if len(part) != 3
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        cnns, pieces = iter(self.cnns), []
        chunks = obs.reshape(obs.shape[0], -1).split(self.sizes, dim=1)
        for part, chunk in zip(self.parts, chunks, strict=True):
            pieces.append(next(cnns)(chunk.reshape(-1, *part)) if len(part) == 3 else chunk.float())
        return torch.cat(pieces, dim=1)


class ActorCritic(nn.Module):
    """Actor and critic plus everything needed to act from raw observations: the observation
    normaliser (optional, vector observations) and the action bounds, all saved in `state_dict`.

    `observation_shape` of three dimensions selects the image torso; `observation_parts`
    (flat observations made of images and vectors) the MultiInputTorso, followed by MLP heads;
    `action_nvec` (discrete
    only) splits the `action_dim` logits into independent categoricals of those sizes;
    `orthogonal_init=False` keeps PyTorch's default initialisation. Vector policies: the actor's
    hidden layers are `hidden_sizes`, the critic's `critic_hidden_sizes` (default: the same),
    with `activation` ("tanh" or "relu") between layers.
    """

    # for type checkers: the torso, and the bounds' buffers (registered for continuous actions)
    torso: NatureCNN | MultiInputTorso | None
    action_low: torch.Tensor
    action_high: torch.Tensor

    def __init__(
        self,
        is_continuous: bool,
        observ_dim: int,
        action_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        squash_actions: bool = False,
        normalize_obs: bool = False,
        log_std_init: float = 0.0,
        *,
        observation_shape: Sequence[int] | None = None,
        action_nvec: Sequence[int] | None = None,
        num_values: int = 1,
        orthogonal_init: bool = True,
        activation: str = "tanh",
        critic_hidden_sizes: Sequence[int] | None = None,
        observation_parts: Sequence[Sequence[int]] | None = None,
    ):
        super().__init__()
        self.is_continuous = is_continuous
        self.observ_dim = observ_dim
        self.action_dim = action_dim
        self.squash_actions = squash_actions
        self.num_values = num_values
        self.action_nvec = None if is_continuous else tuple(action_nvec or (action_dim,))
        self.observation_shape = tuple(observation_shape) if observation_shape else (observ_dim,)
        self.is_image = len(self.observation_shape) == 3
        self.activation = activation
        if self.is_image:
            self.torso = NatureCNN(self.observation_shape)
            self.actor = layer_init(nn.Linear(self.torso.out_features, action_dim), 0.01)
            self.critic = layer_init(nn.Linear(self.torso.out_features, num_values), 1.0)
        else:
            self.torso = None if observation_parts is None else MultiInputTorso(observation_parts)
            inputs = observ_dim if self.torso is None else self.torso.out_features
            self.actor = mlp(inputs, hidden_sizes, action_dim, 0.01, activation)
            self.critic = mlp(
                inputs,
                hidden_sizes if critic_hidden_sizes is None else critic_hidden_sizes,
                num_values,
                1.0,
                activation,
            )
        if not orthogonal_init:  # PyTorch's default initialisation instead
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Conv2d)):
                    module.reset_parameters()
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

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Raw observations [B, ...] -> what the heads read: CNN features for images, the
        MultiInputTorso's features for observations made of parts, the flattened (and
        normalised, if on) observation for vectors."""
        if self.is_image:
            return cast(NatureCNN, self.torso)(obs.reshape(obs.shape[0], *self.observation_shape))
        if self.torso is not None:
            return self.torso(obs)
        obs = obs.reshape(obs.shape[0], -1).float()
        return self.obs_normalizer.normalize(obs) if self.obs_normalizer is not None else obs

    def _values(self, features: torch.Tensor) -> torch.Tensor:
        values = self.critic(features)
        return values.squeeze(-1) if self.num_values == 1 else values

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(obs) for raw observations [B, ...]: [B], or [B, 2] (extrinsic, intrinsic) with two heads."""
        return self._values(self.features(obs))

    def _log_std(self) -> torch.Tensor:
        return self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> torch.Tensor:
        """Samples (or, deterministic, takes the mode of) the policy's actions for a batch."""
        return self.sample(self.actor(self.features(obs)), generator, deterministic)

    def sample(
        self, out: torch.Tensor, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> torch.Tensor:
        """Actions for the actor's output `out` (logits, or the Gaussian's mean in unit space)."""
        noise = None if deterministic else self.draw_noise(out.shape[0], generator, out.device)
        if not self.is_continuous:
            blocks = out.split(self.action_nvec, dim=-1)
            noises: list[torch.Tensor | None] = [None] * len(blocks) if noise is None else list(noise)
            actions = [
                _sample_categorical(logits, block_noise)
                for logits, block_noise in zip(blocks, noises, strict=True)
            ]
            return actions[0] if len(actions) == 1 else torch.stack(actions, dim=-1)
        u = out if noise is None else out + self._log_std().exp() * noise[0]  # None: deterministic
        return self._to_env_units(u)

    def draw_noise(
        self, batch: int, generator: torch.Generator | None, device: torch.device | None = None
    ) -> list[torch.Tensor]:
        """The random draws behind one batch of sampled actions, in the order `act` uses them:
        Exp(1) noise for each categorical block (Gumbel-max), or N(0, 1) noise for the Gaussian.
        The NumPy actor draws the same, so both sample the same actions from the same generator."""
        if self.is_continuous:
            return [torch.randn((batch, self.action_dim), generator=generator, device=device)]
        return [
            torch.empty((batch, n), device=device).exponential_(generator=generator)
            for n in cast("tuple[int, ...]", self.action_nvec)
        ]  # set for discrete actions

    def _to_env_units(self, u: torch.Tensor) -> torch.Tensor:
        if not self.squash_actions:
            return self.action_center + self.action_half_range * u
        actions = self.action_center + self.action_half_range * torch.tanh(u)
        # Rounding can land a saturated sample one ulp outside bounds that float32 cannot hold exactly.
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low)

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probs of `actions` (exactly as they were returned by `act`), entropies and values."""
        features = self.features(obs)
        log_probs, entropy = self.log_prob_entropy(self.actor(features), actions)
        return log_probs, cast(torch.Tensor, entropy), self._values(features)  # with_entropy: a tensor

    def log_prob_entropy(
        self, out: torch.Tensor, actions: torch.Tensor, with_entropy: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs of `actions` (as `sample` returned them, in env units) under the
        distribution of the actor's output `out`, and that distribution's entropies (None
        without `with_entropy`)."""
        if not self.is_continuous:
            return _categorical_log_prob_entropy(
                out,
                actions.long().reshape(out.shape[0], -1),
                cast("tuple[int, ...]", self.action_nvec),  # discrete
                with_entropy,
            )
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
        if not with_entropy:
            return log_probs, None
        # Entropy of the Gaussian before squashing (the squashed one has no closed form).
        entropy = (0.5 + HALF_LOG_2PI + log_std).sum(-1) + torch.log(self.action_half_range).sum()
        return log_probs, entropy


def _sample_categorical(logits: torch.Tensor, exponential: torch.Tensor | None) -> torch.Tensor:
    """The mode without noise; with Exp(1) noise E, the Gumbel-max sample argmax(logits - log E),
    which is distributed as the categorical of `logits`."""
    if exponential is None:
        return logits.argmax(-1)
    return (logits - exponential.log()).argmax(-1)


def _categorical_log_prob_entropy(
    logits: torch.Tensor, actions: torch.Tensor, nvec: Sequence[int], with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Independent categoricals over the blocks of `logits` sized `nvec`; actions [B, len(nvec)].
    Log-probs and entropies of the blocks add up."""
    log_probs, entropies = [], []
    blocks = [logits] if len(nvec) == 1 else logits.split(tuple(nvec), dim=-1)
    for k, block in enumerate(blocks):
        block_log_probs = torch.log_softmax(block, dim=-1)
        log_probs.append(block_log_probs.gather(-1, actions[:, k : k + 1]).squeeze(-1))
        if with_entropy:
            entropies.append(-(block_log_probs.exp() * block_log_probs).sum(-1))
    if len(nvec) == 1:
        return log_probs[0], entropies[0] if with_entropy else None
    return torch.stack(log_probs).sum(0), torch.stack(entropies).sum(0) if with_entropy else None
