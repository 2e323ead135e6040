"""`PPOConfig`: every option of a PPO learner, checked in one place.

`PPO(**keywords)` builds one from its keywords (the original project's positional parameters
first, in its order); `ppo.options` is the checked config and `ppo.config` its plain dict, the
JSON that the weights file and checkpoints hold and `PPO(**ppo.config)` rebuilds the learner
from. The options that describe where and how fast the learner runs (device, seed, threads,
compilation) are the learner's own, not part of the config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from .ActorCritic import ACTIVATIONS
from .checks import (
    check_bool,
    check_finite_float,
    check_non_negative_float,
    check_positive_float,
    check_positive_int,
    check_shape,
    check_unit_interval,
)


@dataclass
class PPOConfig:
    """A PPO learner's options (see `PPO` for what each does). Checked when made: a bad value
    raises TypeError or ValueError naming the option, what was expected and what came; defaults
    that depend on other options (`entropy_coef`, `normalize_reward`, `observation_shape`) are
    resolved. The action bounds (`action_scaling`, `action_low`, `action_high`) are taken as
    given here and checked by the learner, which saves them with the weights."""

    is_continuous: bool
    observ_dim: int
    action_dim: int
    action_scaling: float | Sequence[float] | None = None
    lr: float = 3e-3
    k_epochs: int = 4
    policy_clip: float = 0.2
    GAE_lambda: float = 0.95
    gamma: float = 0.99
    batch_size: int = 2048
    mini_batch_size: int = 512
    use_RND: bool = False
    beta: float = 1.0
    hidden_sizes: Sequence[int] = (64, 64)
    entropy_coef: float | None = None  # None: 0.01 for discrete actions, 0 for continuous ones
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    value_clip: float | None = None
    target_kl: float | None = None
    normalize_advantages: bool = True
    normalize_obs: bool = False
    squash_actions: bool = False
    log_std_init: float = 0.0
    action_low: Sequence[float] | None = None
    action_high: Sequence[float] | None = None
    observation_shape: Sequence[int] | None = None  # None: (observ_dim,)
    action_nvec: Sequence[int] | None = None
    normalize_reward: bool | None = None  # None: True, except with use_RND (Burda et al.)
    anneal_lr: bool = False
    total_steps: int | None = None
    extrinsic_coef: float = 2.0
    intrinsic_gamma: float = 0.99
    rnd_update_fraction: float = 0.25
    orthogonal_init: bool = True
    adam_eps: float = 1e-5
    activation: str = "tanh"
    critic_hidden_sizes: Sequence[int] | None = None
    observation_parts: Sequence[Sequence[int]] | None = None
    max_lag_weight: float | None = None
    observation_space: dict | None = field(default=None)

    def __post_init__(self) -> None:
        self.is_continuous = check_bool("is_continuous", self.is_continuous)
        self.observ_dim = check_positive_int("observ_dim", self.observ_dim)
        self.action_dim = check_positive_int("action_dim", self.action_dim)
        self.lr = check_positive_float("lr", self.lr)
        self.k_epochs = check_positive_int("k_epochs", self.k_epochs)
        self.policy_clip = check_positive_float("policy_clip", self.policy_clip)
        self.GAE_lambda = check_unit_interval("GAE_lambda", self.GAE_lambda)
        self.gamma = check_unit_interval("gamma", self.gamma)
        self.batch_size = check_positive_int("batch_size", self.batch_size)
        self.mini_batch_size = check_positive_int("mini_batch_size", self.mini_batch_size)
        self.use_RND = check_bool("use_RND", self.use_RND)
        self.beta = check_non_negative_float("beta", self.beta)
        self._check_update_options()
        self._check_network_options()
        # RND's rule (Burda et al. scale only the intrinsic reward): unless given, the extrinsic
        # reward is scaled without RND and left as it is with RND (see PPO's docstring).
        if self.normalize_reward is None:
            self.normalize_reward = not self.use_RND
        self.normalize_reward = check_bool("normalize_reward", self.normalize_reward)
        self.anneal_lr = check_bool("anneal_lr", self.anneal_lr)
        if self.total_steps is not None:
            self.total_steps = check_positive_int("total_steps", self.total_steps)
        self.extrinsic_coef = check_non_negative_float("extrinsic_coef", self.extrinsic_coef)
        self.intrinsic_gamma = check_unit_interval("intrinsic_gamma", self.intrinsic_gamma)
        self.rnd_update_fraction = check_unit_interval("rnd_update_fraction", self.rnd_update_fraction)
        self.observation_parts = self._checked_observation_parts()
        if self.observation_space is not None and not isinstance(self.observation_space, dict):
            raise TypeError(
                f"observation_space: expected None or a dict from "
                f"AsyncTools.envs.describe_space, got {type(self.observation_space).__name__}"
            )
        if self.has_images and self.normalize_obs:
            raise ValueError(
                "normalize_obs: image observations are scaled to [0, 1] inside the "
                "network; normalize_obs=True is for vector observations"
            )
        self.squash_actions = check_bool("squash_actions", self.squash_actions)
        self.orthogonal_init = check_bool("orthogonal_init", self.orthogonal_init)
        self.adam_eps = check_positive_float("adam_eps", self.adam_eps)

    def _check_update_options(self) -> None:
        if self.entropy_coef is None:
            self.entropy_coef = 0.0 if self.is_continuous else 0.01
        self.entropy_coef = check_non_negative_float("entropy_coef", self.entropy_coef)
        self.value_coef = check_non_negative_float("value_coef", self.value_coef)
        self.max_grad_norm = check_positive_float("max_grad_norm", self.max_grad_norm)
        if self.value_clip is not None:
            self.value_clip = check_positive_float("value_clip", self.value_clip)
        if self.target_kl is not None:
            self.target_kl = check_positive_float("target_kl", self.target_kl)
        if self.max_lag_weight is not None:
            self.max_lag_weight = check_positive_float("max_lag_weight", self.max_lag_weight)
        self.normalize_advantages = check_bool("normalize_advantages", self.normalize_advantages)

    def _check_network_options(self) -> None:
        self.log_std_init = check_finite_float("log_std_init", self.log_std_init)
        self.hidden_sizes = check_shape("hidden_sizes", self.hidden_sizes)
        if self.critic_hidden_sizes is not None:
            self.critic_hidden_sizes = check_shape("critic_hidden_sizes", self.critic_hidden_sizes)
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        self.observation_shape = self._checked_observation_shape()
        self.action_nvec = self._checked_action_nvec()
        self.normalize_obs = check_bool("normalize_obs", self.normalize_obs)

    def _checked_observation_shape(self) -> tuple[int, ...]:
        if self.observation_shape is None:
            return (self.observ_dim,)
        shape = check_shape("observation_shape", self.observation_shape)
        if math.prod(shape) != self.observ_dim:
            raise ValueError(
                f"observation_shape: {shape} holds {math.prod(shape)} values, but "
                f"observ_dim={self.observ_dim}"
            )
        return shape

    def _checked_action_nvec(self) -> tuple[int, ...] | None:
        if self.action_nvec is None:
            return None
        nvec = check_shape("action_nvec", self.action_nvec)
        if self.is_continuous:
            raise ValueError("action_nvec: MultiDiscrete sizes need is_continuous=False")
        if sum(nvec) != self.action_dim:
            raise ValueError(
                f"action_nvec: sizes {list(nvec)} add up to {sum(nvec)} logits, but "
                f"action_dim={self.action_dim} (it must be their sum)"
            )
        return nvec

    def _checked_observation_parts(self) -> list[list[int]] | None:
        """The layout of a flat observation made of parts (at least one an image), or None."""
        parts = self.observation_parts
        if parts is None:
            return None
        try:
            checked = [list(check_shape("observation_parts", part)) for part in parts]
        except (TypeError, ValueError):
            raise ValueError(
                f"observation_parts: expected a list of shapes of positive sizes, "
                f"e.g. [[64, 64, 3], [5]], got {parts!r}"
            ) from None
        if not any(len(part) == 3 for part in checked):
            raise ValueError(
                f"observation_parts: is for observations holding an image (a part "
                f"of three dimensions); without one, leave it None, got {checked}"
            )
        if len(cast("tuple[int, ...]", self.observation_shape)) != 1:
            raise ValueError(
                "observation_parts: give either observation_parts or an image's observation_shape, not both"
            )
        total = sum(math.prod(part) for part in checked)
        if total != self.observ_dim:
            raise ValueError(
                f"observation_parts: {checked} hold {total} values, but observ_dim={self.observ_dim}"
            )
        return checked

    @property
    def is_image(self) -> bool:
        """The whole observation is one image (a 3-D observation_shape)."""
        return len(cast("tuple[int, ...]", self.observation_shape)) == 3

    @property
    def has_images(self) -> bool:
        """Images in the observation (all of it, or parts of it): a CNN torso, no obs normaliser."""
        return self.is_image or self.observation_parts is not None

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON-ready dict saved with the weights (`ppo.config`): every option, with
        sequences as lists and the action bounds as None (the bounds are saved as weights)."""
        plain = {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}
        return dict(plain, action_scaling=None, action_low=None, action_high=None)


def _plain(value: Any) -> Any:
    """Tuples (and NumPy values) as plain JSON-ready Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
