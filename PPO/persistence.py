"""A learner's files: the weights file `save_weights` writes (`Policy_weights.pth`: the policy,
the observation and reward statistics, the action bounds, RND's networks as `rnd.*` entries and
the constructor's options as JSON bytes) and the training state a checkpoint holds. Tensors and
plain values only, loaded with `weights_only=True`; everything is checked against the learner
before anything is loaded. The functions take the learner (`ppo`, a `PPO`) whose files they
read or write; `PPO`'s methods of the same names call them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import nn

from .ActorCritic import ActorCritic
from .checkpoint import atomic_save, check_compatible, load_tensors
from .Memory import Memory
from .normalization import RewardScaler
from .RND import RND

POLICY_FILE = "Policy_weights.pth"
RND_PREFIX = "rnd."  # RND's entries in the policy file
LEGACY_RND_FILE = "RND_weights.pth"
# The options that decide the networks' layout: a weights file fits only a PPO built with the same.
STRUCTURE = (
    "is_continuous",
    "observ_dim",
    "action_dim",
    "observation_shape",
    "action_nvec",
    "hidden_sizes",
    "normalize_obs",
    "normalize_reward",
    "use_RND",
    "squash_actions",
    "activation",
    "critic_hidden_sizes",
    "observation_parts",
)
# What files saved before an option existed were built with.
STRUCTURE_DEFAULTS = {"activation": "tanh", "critic_hidden_sizes": None, "observation_parts": None}


class LearnerParts(Protocol):
    """What these functions read and set of a learner: a `PPO` (PPO/ppo_base.py's `PPOBase`,
    which imports this module, so it is described here rather than imported)."""

    samples_learned: int
    action_bounds_given: bool

    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def is_continuous(self) -> bool: ...
    @property
    def policy(self) -> ActorCritic: ...
    @property
    def rnd(self) -> RND | None: ...
    @property
    def reward_scaler(self) -> RewardScaler | None: ...
    @property
    def intrinsic_scaler(self) -> RewardScaler | None: ...
    @property
    def optimizer(self) -> torch.optim.Optimizer: ...
    @property
    def sample_generator(self) -> torch.Generator: ...
    @property
    def shuffle_generator(self) -> torch.Generator: ...
    @property
    def memory(self) -> Memory: ...


def config_tensors(config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The constructor's options, as JSON bytes in a uint8 tensor (no pickled objects)."""
    encoded = json.dumps(config, sort_keys=True).encode()
    return {"config.json": torch.tensor(list(encoded), dtype=torch.uint8)}


def read_config(state: dict[str, torch.Tensor], file: Path) -> dict[str, Any]:
    """The constructor options stored by `save_weights`; removes them from `state`."""
    if "config.json" not in state:
        raise ValueError(f"{file} was not written by PPO.save_weights (no config.json entry)")
    try:
        return json.loads(bytes(state.pop("config.json").tolist()).decode())
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} has an unreadable config.json entry: {error}") from error


def policy_state(ppo: LearnerParts) -> dict[str, torch.Tensor]:
    """The policy's weights and statistics, and the reward scaler's."""
    state = dict(ppo.policy.state_dict())
    if ppo.reward_scaler is not None:
        state.update({f"reward_scaler.{k}": v for k, v in ppo.reward_scaler.state_dict().items()})
    return state


def rnd_state(ppo: LearnerParts) -> dict[str, torch.Tensor]:
    """RND's networks and statistics, and the intrinsic reward scaler's (of a learner with RND)."""
    rnd, scaler = cast(RND, ppo.rnd), cast(RewardScaler, ppo.intrinsic_scaler)  # both made with RND
    return {
        **rnd.state_dict(),
        **{f"intrinsic_scaler.{k}": v for k, v in scaler.state_dict().items()},
    }


def weights_state(ppo: LearnerParts) -> dict[str, torch.Tensor]:
    """Everything the weights file holds, by entry name."""
    state = {**policy_state(ppo), **config_tensors(ppo.config)}
    if ppo.rnd is not None:
        state.update({RND_PREFIX + k: v for k, v in rnd_state(ppo).items()})
    return state


def save_weights(ppo: LearnerParts, path: str | Path) -> None:
    """Writes `ppo`'s weights file into the directory `path` (see `PPO.save_weights`)."""
    directory = Path(path)
    atomic_save(weights_state(ppo), directory / POLICY_FILE)
    # Saves before RND moved into the policy file wrote RND_weights.pth beside it.
    (directory / LEGACY_RND_FILE).unlink(missing_ok=True)


def load_weights(ppo: LearnerParts, path: str | Path) -> None:
    """Loads the weights file in the directory `path` into `ppo` (see `PPO.load_weights`)."""
    policy_file = Path(path) / POLICY_FILE
    apply_weights(ppo, *checked_weights(ppo, load_tensors(policy_file, ppo.device), policy_file))


def saved_config(path: str | Path) -> dict[str, Any]:
    """The constructor options of the weights file in the directory `path`."""
    file = Path(path) / POLICY_FILE
    return read_config(load_tensors(file, torch.device("cpu")), file)


def checked_weights(
    ppo: LearnerParts, state: dict[str, torch.Tensor], file: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """`state` (as `weights_state` makes it) split into the policy's and RND's entries, once its
    options and tensor shapes are found to fit `ppo`; ValueError naming what differs.
    Everything is checked before anything is loaded."""
    state = dict(state)
    rnd_entries = {k[len(RND_PREFIX) :]: state.pop(k) for k in list(state) if k.startswith(RND_PREFIX)}
    check_config(ppo.config, read_config(state, file), file)
    check_compatible(policy_state(ppo), state, file)
    if ppo.rnd is not None:
        check_compatible(rnd_state(ppo), rnd_entries, file)
    return state, rnd_entries


def apply_weights(
    ppo: LearnerParts, state: dict[str, torch.Tensor], rnd_entries: dict[str, torch.Tensor] | None
) -> None:
    """Loads checked entries (`checked_weights`) into `ppo`'s modules."""
    _load_prefixed(state, {"": ppo.policy, "reward_scaler.": ppo.reward_scaler})
    if ppo.rnd is not None:
        rnd_state = cast("dict[str, torch.Tensor]", rnd_entries)  # checked present with RND
        _load_prefixed(rnd_state, {"": ppo.rnd, "intrinsic_scaler.": ppo.intrinsic_scaler})
    ppo.action_bounds_given = ppo.is_continuous


def training_state(ppo: LearnerParts) -> dict[str, Any]:
    """What a checkpoint holds of the learner (see `PPO.training_state`)."""
    state: dict[str, Any] = {
        "weights": weights_state(ppo),
        "optimizer": ppo.optimizer.state_dict(),
        "sample_generator": ppo.sample_generator.get_state(),
        "shuffle_generator": ppo.shuffle_generator.get_state(),
        "samples_learned": ppo.samples_learned,
        "memory": ppo.memory.state(),
    }
    if ppo.reward_scaler is not None:
        state["reward_scaler_carried"] = ppo.reward_scaler.carried_returns
    if ppo.rnd is not None:
        intrinsic_scaler = cast(RewardScaler, ppo.intrinsic_scaler)  # made with RND
        state.update(
            rnd_optimizer=ppo.rnd.optimizer.state_dict(),
            intrinsic_scaler_carried=intrinsic_scaler.carried_returns,
        )
    return state


def load_training_state(ppo: LearnerParts, state: dict[str, Any], file: Path) -> None:
    """Restores what `training_state` returned into `ppo`, checked first."""
    apply_weights(ppo, *checked_weights(ppo, state["weights"], file))
    ppo.optimizer.load_state_dict(state["optimizer"])
    ppo.sample_generator.set_state(state["sample_generator"].cpu())
    ppo.shuffle_generator.set_state(state["shuffle_generator"].cpu())
    ppo.samples_learned = int(state["samples_learned"])
    ppo.memory.load_state(state["memory"])
    if ppo.reward_scaler is not None:
        ppo.reward_scaler.carried_returns = state["reward_scaler_carried"].to(ppo.device)
    if ppo.rnd is not None:
        ppo.rnd.optimizer.load_state_dict(state["rnd_optimizer"])
        intrinsic_scaler = cast(RewardScaler, ppo.intrinsic_scaler)  # made with RND
        intrinsic_scaler.carried_returns = state["intrinsic_scaler_carried"].to(ppo.device)


def check_config(config: dict[str, Any], saved: dict[str, Any], file: Path) -> None:
    """ValueError naming every option of STRUCTURE in which `saved` differs from `config`."""
    saved = {**STRUCTURE_DEFAULTS, **saved}
    differences = [
        f"{name}={saved.get(name)!r}, but this PPO has {name}={config[name]!r}"
        for name in STRUCTURE
        if saved.get(name) != config[name]
    ]
    if differences:
        raise ValueError(
            f"{file} was saved with "
            + "; with ".join(differences)
            + " (PPO.load(path) builds a PPO with the saved options)"
        )


def _load_prefixed(state: dict[str, torch.Tensor], modules: dict[str, nn.Module | None]) -> None:
    prefixes = [p for p in modules if p]
    for prefix, module in modules.items():
        if module is None:
            continue
        if prefix:
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        else:
            part = {k: v for k, v in state.items() if not any(k.startswith(p) for p in prefixes)}
        module.load_state_dict(part)
