"""Acting: the states a learner is asked to act on, checked, and the actions drawn for them;
and the action bounds a continuous learner maps its Gaussian onto, checked.

`PPO.get_action` and `PPO.sample_actions` call `check_states` and `act` with the learner's
policy, its NumPy actor and its generator; `PPO.set_action_bounds` and the constructor call the
bounds checks. Plain functions of what they are given, as PPO/losses.py's are.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numpy.typing import ArrayLike

from .ActorCritic import ActorCritic
from .numpy_actor import NumpyActor


def non_finite_rows(x: np.ndarray | torch.Tensor) -> list[int]:
    """The rows of a [B, ...] batch holding NaN or inf (none for integer data)."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fc" or np.isfinite(x).all():
            return []
        return np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1)).tolist()
    if not x.is_floating_point():
        return []
    # NumPy is several times quicker than torch for this on the small CPU batches of a rollout.
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return non_finite_rows(x.detach().numpy())
    if bool(torch.isfinite(x).all()):
        return []
    return torch.nonzero(~torch.isfinite(x.reshape(len(x), -1)).all(1)).flatten().tolist()


def check_states(
    state: np.ndarray | torch.Tensor, observation_shape: tuple[int, ...], observ_dim: int
) -> tuple[np.ndarray | torch.Tensor, bool]:
    """Returns the states as a [B, ...] array or tensor (as given) of `observ_dim` values per
    row, and whether a single unbatched state was given."""
    if not isinstance(state, (np.ndarray, torch.Tensor)):
        raise TypeError(f"state must be a torch.Tensor or numpy array, got {type(state).__name__}")
    shape = tuple(state.shape)
    single = len(shape) == 1 or shape == observation_shape != (observ_dim,)
    if single:
        state = state[None]
    if state.ndim < 2 or state.shape[0] == 0 or math.prod(state.shape[1:]) != observ_dim:
        expected = ", ".join(str(d) for d in observation_shape)
        raise ValueError(
            f"state: expected shape [batch, {expected}] (batch >= 1) or [{expected}], got {list(shape)}"
        )
    bad_rows = non_finite_rows(state)
    if bad_rows:
        raise ValueError(f"state: non-finite values (NaN or inf) in rows {bad_rows[:10]}")
    return state, single


@torch.no_grad()
def act(
    policy: ActorCritic,
    numpy_actor: NumpyActor | None,
    states: np.ndarray | torch.Tensor,
    device: torch.device,
    generator: torch.Generator,
    deterministic: bool,
    with_log_probs: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The actions [B, ...] of `policy` for checked states [B, ...] (`check_states`), drawn from
    `generator` (the most likely ones if `deterministic`), and their log-probs [B] if
    `with_log_probs` (else None). States on the CPU go through `numpy_actor` where there is
    one (same actions, less overhead per call); others through the policy on `device`."""
    if numpy_actor is not None and (isinstance(states, np.ndarray) or states.device.type == "cpu"):
        states = states if isinstance(states, np.ndarray) else states.detach().numpy()
        out_array = numpy_actor.actor_output(np.asarray(states, dtype=np.float32).reshape(len(states), -1))
        actions = numpy_actor.sample(out_array, generator, deterministic)
        out = torch.from_numpy(out_array)
    else:
        states = torch.as_tensor(states).to(device, non_blocking=True)
        out = policy.actor(policy.features(states))
        actions = policy.sample(out, generator, deterministic).cpu().numpy()
    if not with_log_probs:
        return actions, None
    log_probs, _ = policy.log_prob_entropy(out, torch.as_tensor(actions).to(out.device), with_entropy=False)
    return actions, log_probs.cpu().numpy()


def action_vector(name: str, value: ArrayLike, action_dim: int) -> torch.Tensor:
    """`value` (one number, or `action_dim` of them) as a float32 vector of `action_dim`;
    ValueError naming `name` unless it is that and finite."""
    vector = torch.as_tensor(np.asarray(value, dtype=np.float32)).flatten()
    if vector.numel() == 1:
        vector = vector.expand(action_dim)
    if vector.numel() != action_dim or not torch.all(torch.isfinite(vector)):
        raise ValueError(f"{name} must be a finite number or {action_dim} finite numbers, got {value!r}")
    return vector


def initial_action_bounds(
    action_scaling: ArrayLike | None,
    action_low: ArrayLike | None,
    action_high: ArrayLike | None,
    action_dim: int,
) -> tuple[ArrayLike, ArrayLike] | None:
    """The (low, high) a continuous PPO is built with: (-action_scaling, action_scaling),
    (action_low, action_high), or None where neither is given (`set_action_bounds` checks
    them further)."""
    if action_scaling is not None and action_low is not None:
        raise ValueError("pass either action_scaling or action_low/action_high, not both")
    if action_scaling is not None:
        scale = action_vector("action_scaling", action_scaling, action_dim)
        if not torch.all(scale > 0):
            raise ValueError(f"action_scaling must be positive, got {action_scaling!r}")
        return -scale, scale
    if action_low is not None or action_high is not None:
        if action_low is None or action_high is None:
            raise ValueError("action_low and action_high must be given together")
        return action_low, action_high
    return None


def checked_action_bounds(
    low: ArrayLike, high: ArrayLike, action_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`low` and `high` as vectors of `action_dim` (`action_vector`), with high > low
    everywhere; ValueError otherwise."""
    low, high = action_vector("action_low", low, action_dim), action_vector("action_high", high, action_dim)
    if not torch.all(high > low):
        raise ValueError(
            f"action_high must exceed action_low everywhere, got low={low.tolist()}, high={high.tolist()}"
        )
    return low, high
