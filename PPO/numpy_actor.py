"""The actor's forward pass in NumPy, for sampling rollout actions on the CPU.

At rollout batch sizes (tens of envs) a small MLP costs far more in PyTorch's per-operation
overhead than in arithmetic; NumPy does the same float32 arithmetic with a fraction of that
overhead. `NumpyActor` takes its random draws from `ActorCritic.draw_noise`, so for the same
generator state it samples the same actions as `ActorCritic.act` (tests/test_numpy_actor.py).

It keeps contiguous copies of the weights (a transposed view multiplies about twice as slowly) and
renews them whenever a parameter or buffer it reads has changed in place, which bumps the tensor's
`_version`; the fused Adam step does not, so the learner calls `refresh()` after it.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import nn

from .ActorCritic import LOG_STD_MAX, LOG_STD_MIN, ActorCritic


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().numpy()


class NumpyActor:
    """Samples the actions of a CPU `ActorCritic` over vector observations, in NumPy."""

    def __init__(self, policy: ActorCritic):
        if policy.is_image:
            raise ValueError(
                "policy: the NumPy actor is for vector observations; image policies "
                "act through their CNN in torch"
            )
        self.policy = policy
        self._linears = [m for m in cast(nn.Sequential, policy.actor) if isinstance(m, nn.Linear)]  # an MLP
        self._relu = policy.activation == "relu"
        self._layers: list[tuple[np.ndarray, np.ndarray]] = []
        self._obs_mean: np.ndarray | None = None
        self._obs_std: np.ndarray | None = None
        self._std: np.ndarray | None = None
        self._low = self._high = self._center = self._half_range = None
        self.refresh()

    def refresh(self) -> None:
        """Renews the copies on the next call. Needed after changes that the tensors' versions
        do not show: the fused Adam step, or parameters replaced rather than changed in place."""
        self._tensors = self._tensors_read()
        self._versions: list[int] | None = None

    def _tensors_read(self) -> list[torch.Tensor]:
        policy = self.policy
        tensors = [t for linear in self._linears for t in (linear.weight, linear.bias)]
        if policy.obs_normalizer is not None:
            tensors += [policy.obs_normalizer.mean, policy.obs_normalizer.var]
        if policy.is_continuous:
            tensors += [policy.log_std, policy.action_low, policy.action_high]
        return tensors

    def _update_copies(self) -> None:
        versions = [t._version for t in self._tensors]
        if versions == self._versions:
            return
        policy = self.policy
        self._layers = [
            (np.ascontiguousarray(_array(linear.weight).T), _array(linear.bias).copy())
            for linear in self._linears
        ]
        normalizer = policy.obs_normalizer
        if normalizer is not None:  # as RunningMeanStd.normalize computes them for float32 input
            self._obs_mean = _array(normalizer.mean).astype(np.float32)
            self._obs_std = np.sqrt(_array(normalizer.var) + normalizer.eps).astype(np.float32)
        if policy.is_continuous:
            self._std = np.exp(np.clip(_array(policy.log_std), LOG_STD_MIN, LOG_STD_MAX))
            low, high = _array(policy.action_low), _array(policy.action_high)
            self._low, self._high = low.copy(), high.copy()
            self._center, self._half_range = (high + low) / 2, (high - low) / 2
        self._versions = versions

    def actor_output(self, obs: np.ndarray) -> np.ndarray:
        """Logits (discrete) or the Gaussian's mean (continuous, unit space) for float32
        observations [B, observ_dim]: what `policy.actor(policy.features(obs))` computes."""
        self._update_copies()
        hidden = obs
        normalizer = self.policy.obs_normalizer
        if normalizer is not None:
            hidden = np.clip((hidden - self._obs_mean) / self._obs_std, -normalizer.clip, normalizer.clip)
        last = len(self._layers) - 1
        for i, (weight_t, bias) in enumerate(self._layers):
            hidden = hidden @ weight_t
            hidden += bias
            if i < last and self._relu:
                np.maximum(hidden, 0, out=hidden)
            elif i < last:
                np.tanh(hidden, out=hidden)
        return hidden

    def act(
        self, obs: np.ndarray, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> np.ndarray:
        """`ActorCritic.act` for a NumPy batch of observations [B, ...]."""
        return self.sample(
            self.actor_output(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)),
            generator,
            deterministic,
        )

    def sample(
        self, out: np.ndarray, generator: torch.Generator | None = None, deterministic: bool = False
    ) -> np.ndarray:
        """`ActorCritic.sample` for the actor's output computed by `actor_output`."""
        policy = self.policy
        noise = None if deterministic else [_array(n) for n in policy.draw_noise(len(out), generator)]
        if not policy.is_continuous:
            nvec = cast("tuple[int, ...]", policy.action_nvec)  # set for discrete actions
            blocks = [out] if len(nvec) == 1 else np.split(out, np.cumsum(nvec)[:-1], axis=-1)
            if noise is not None:  # Gumbel-max, as in ActorCritic.sample
                blocks = [block - np.log(gumbel) for block, gumbel in zip(blocks, noise, strict=True)]
            actions = [block.argmax(-1) for block in blocks]
            return actions[0] if len(actions) == 1 else np.stack(actions, axis=-1)
        self._update_copies()
        u = out if noise is None else out + self._std * noise[0]
        if not policy.squash_actions:
            return self._center + self._half_range * u
        return np.clip(self._center + self._half_range * np.tanh(u), self._low, self._high)
