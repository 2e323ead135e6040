"""Envs from ids, as the command line and the presets name them: `gym.make(env_id)`, except
that Atari ids get the standard Atari preprocessing (`atari.make_atari_env`), which PPO on
Atari needs to learn (frame skip, 84x84 grey frames, life loss, clipped rewards, 4 frames)."""

from __future__ import annotations

import functools
import os
import pickle
import sys
from collections.abc import Callable
from typing import cast, overload

import gymnasium as gym
import numpy as np

from .atari import make_atari_env

FLATTENED = (
    gym.spaces.Discrete,
    gym.spaces.Dict,
    gym.spaces.Tuple,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)  # observation spaces that env_from_id flattens


def is_image_space(space: gym.Space) -> bool:
    """uint8 Box observations of three dimensions (HxWxC or CxHxW): frames for the CNN."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def flattened_parts(space: gym.Space) -> list[list[int]]:
    """How gymnasium's `flatten` lays out an observation of `space`: the shapes of its parts in
    order (Dict entries in the space's key order, Tuple entries in order), an image keeping its
    three dimensions and any other part given as its flat size."""
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        subspaces = space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces
        return [part for subspace in subspaces for part in flattened_parts(subspace)]
    if is_image_space(space):
        return [list(cast("tuple[int, ...]", space.shape))]  # an image space: a Box, shaped
    return [[int(gym.spaces.flatdim(space))]]


def describe_space(space: gym.Space) -> dict:
    """A plain, JSON-ready description of an observation space's structure: what a saved model
    records of the space its flat observations come from (`PPO(observation_space=...)`), so that
    an env's raw observations can be checked against it and flattened the same way. Box bounds
    are left out (flattening does not use them); Dict entries keep their order."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, gym.spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    if isinstance(space, gym.spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": [[key, describe_space(sub)] for key, sub in space.spaces.items()]}
    if isinstance(space, gym.spaces.Tuple):
        return {"type": "Tuple", "spaces": [describe_space(sub) for sub in space.spaces]}
    raise TypeError(
        f"observation_space: only Box, Discrete, MultiDiscrete, MultiBinary, Dict and "
        f"Tuple observations are supported, got {space}"
    )


class FlattenParts(gym.wrappers.FlattenObservation):
    """gymnasium's FlattenObservation (one flat float vector; one-hot for Discrete) that also
    says how the vector is laid out: `observation_parts`, from `flattened_parts`, with which
    `ppo_for_env` sends the images among a Dict's entries to a CNN, and what it was flattened
    from: `flattened_from`, the `describe_space` of the env's own observation space."""

    def __init__(self, env: gym.Env):
        self.observation_parts = flattened_parts(env.observation_space)
        self.flattened_from = describe_space(env.observation_space)
        super().__init__(env)


class FlatObservationsFactory:
    """A function making envs (`make`, called with no arguments) whose envs come with flat
    observations (`with_flat_observations`); it pickles where `make` does."""

    def __init__(self, make: Callable[[], gym.Env]):
        self.make = make

    def __call__(self) -> gym.Env:
        env = self.make()
        return with_flat_observations(env) if isinstance(env, gym.Env) else env

    def __repr__(self) -> str:
        return repr(self.make)


@overload
def with_flat_observations(env: gym.Env) -> gym.Env: ...
@overload
def with_flat_observations(env: gym.vector.VectorEnv) -> gym.vector.VectorEnv: ...
@overload
def with_flat_observations(env: str) -> str: ...
@overload
def with_flat_observations(env: Callable[[], gym.Env]) -> Callable[[], gym.Env]: ...
def with_flat_observations(
    env: gym.Env | gym.vector.VectorEnv | str | Callable[[], gym.Env],
) -> gym.Env | gym.vector.VectorEnv | str | Callable[[], gym.Env]:
    """`env` as the learner takes it: an env whose observation space is Discrete,
    MultiDiscrete, MultiBinary, Dict or Tuple is wrapped in `FlattenParts` (one flat vector,
    one-hot for discrete parts, images among Dict entries kept for a CNN); a function making
    envs becomes one whose envs are so wrapped; anything else (a Box env, a VectorEnv, an id) is
    returned as it is. What env ids get in `env_from_id`, for envs and factories alike."""
    if isinstance(env, gym.Env):
        return FlattenParts(env) if isinstance(env.observation_space, FLATTENED) else env
    if callable(env) and not isinstance(env, (gym.vector.VectorEnv, FlatObservationsFactory)):
        return FlatObservationsFactory(env)
    return env


def flat_for_learner(env: gym.Env, recorded: dict | None) -> gym.Env:
    """`with_flat_observations(env)`, checked against `recorded`, the observation space a
    learner was trained on (PPO's `observation_space`): ValueError naming both if the env's
    space differs from it."""
    flat = with_flat_observations(env)
    found = flattened_from(flat)
    if recorded is not None and found is not None and found != recorded:
        raise ValueError(
            f"observation_space: the model was trained on observations flattened "
            f"from {recorded}, but this env's observations are {found}"
        )
    return flat


def flattened_from(env: gym.Env | gym.vector.VectorEnv) -> dict | None:
    """The `describe_space` of the observation space that a FlattenParts wrapper in `env`'s
    stack flattens; None where nothing is flattened."""
    try:
        return env.get_wrapper_attr("flattened_from")  # type: ignore[union-attr]  # else AttributeError
    except AttributeError:
        return None


def observation_parts_of(env: gym.Env | gym.vector.VectorEnv) -> list[list[int]] | None:
    """The layout that a FlattenParts wrapper around `env` declares, where its observations
    hold an image (alone or among other parts); None otherwise."""
    try:
        parts = env.get_wrapper_attr("observation_parts")  # type: ignore[union-attr]  # else AttributeError
    except AttributeError:
        return None
    return parts if any(len(part) == 3 for part in parts) else None


def atari_id(env_id: str) -> str | None:
    """The registered ALE id that `env_id` names ("ALE/Breakout-v5", "BreakoutNoFrameskip-v4",
    or "Breakout-v5" for "ALE/Breakout-v5"), or None if it is not an Atari game (or ale-py,
    which registers them, is not installed)."""
    try:
        import ale_py
    except ImportError:
        return None
    gym.register_envs(ale_py)
    for candidate in (env_id, f"ALE/{env_id}"):
        try:
            spec = gym.spec(candidate)
        except gym.error.Error:
            continue
        if str(spec.entry_point).startswith("ale_py"):
            return candidate
    return None


def env_from_id(env_id: str, render_mode: str | None = None) -> gym.Env:
    """`gym.make(env_id)`, or the preprocessed Atari env for an Atari id. Discrete, Dict and
    Tuple observations (FrozenLake, Taxi, ...) are flattened into one vector (one-hot for
    Discrete) by `FlattenParts` (gymnasium's FlattenObservation, declaring where the images among
    a Dict's entries lie, which then go to a CNN). Recording (`render_mode="rgb_array"`) on Linux
    without a display renders MuJoCo through EGL unless MUJOCO_GL is set."""
    if render_mode == "rgb_array" and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo's default (GLFW) needs a display
    game = atari_id(env_id)
    if game is not None:
        return make_atari_env(game, render_mode=render_mode)
    if render_mode is None:  # as gymnasium does: an env asked for no rendering gets no argument
        return with_flat_observations(gym.make(env_id))
    try:
        env = gym.make(env_id, render_mode=render_mode)
    except TypeError as error:
        if "render_mode" not in str(error):
            raise
        raise ValueError(
            f"render_mode: recording needs frames from {env_id} "
            f"(render_mode={render_mode!r}), but its constructor takes no "
            f"render_mode argument; give the env's __init__ a render_mode "
            f"argument and a render() method that returns an RGB array "
            f"(gymnasium's Env API) to record it"
        ) from error
    return with_flat_observations(env)


def env_source(env_id: str) -> gym.Env | Callable[[], gym.Env]:
    """What `AsyncPPO` copies for `env_id`: the env itself (copied per env copy, and eligible
    for gymnasium's native vector env), or, for Atari ids, a picklable function making the
    preprocessed Atari env anew for each copy (ALE envs cannot be copied)."""
    if atari_id(env_id) is not None:
        return functools.partial(env_from_id, env_id)
    return env_from_id(env_id)


def picklable_env_factory(env: gym.Env | Callable[[], gym.Env], destination: str) -> Callable[[], gym.Env]:
    """A function that builds a new copy of `env` in another process (`destination`, for the
    messages): `gym.make(env.spec)` for an env, the function itself for a factory. Raises
    TypeError naming `env` where that cannot work: an env without a spec, a wrapper its spec
    cannot re-apply, or a function that does not pickle (a lambda or a function defined inside
    another one)."""
    if isinstance(env, gym.Env):
        spec = env.spec
        if spec is None:
            raise TypeError(
                f"env: {destination} re-make the env with gym.make(env.spec), but "
                f"this env has no spec; pass a module-level function that builds it "
                f"(or a functools.partial of one) instead"
            )
        unrecorded = [w.name for w in spec.additional_wrappers if w.kwargs is None]
        if unrecorded:
            raise TypeError(
                f"env: its wrappers {unrecorded} did not record their arguments in "
                f"env.spec, so gym.make(env.spec) cannot re-make it in "
                f"{destination}; pass a module-level function that builds the env "
                f"instead"
            )
        factory: Callable[[], gym.Env] = functools.partial(gym.make, spec)
    elif callable(env):
        factory = env
    else:
        raise TypeError(f"env must be a gymnasium.Env or a function returning one, got {type(env).__name__}")
    try:
        pickle.dumps(factory)
    except Exception as error:
        raise TypeError(
            f"env: {env!r} cannot be pickled to send it to {destination} ({error}); "
            f"a lambda or a function defined inside another function does not work "
            f"across processes: pass a module-level function or a functools.partial "
            f"of one"
        ) from error
    return factory
