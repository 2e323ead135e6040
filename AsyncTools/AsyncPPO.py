"""AsyncPPO: the one-liner that trains a PPO learner on N copies of an env.

`EnvVectorizer` and `VecMemory` are importable from here, as in the original project.
"""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from PPO import PPO
from PPO.checks import check_positive_int

from . import utils
from .rollout import EpisodeRound, FixedHorizonCollector, collect_episodes
from .vec_memory import VecMemory
from .vectorizer import EnvStepError, EnvVectorizer

__all__ = ["AsyncPPO", "EnvVectorizer", "VecMemory", "EnvStepError", "check_spaces", "ppo_for_env"]


def _check_observation_space(observation_space: gym.Space) -> None:
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(f"observation_space: only Box observations are supported, got "
                        f"{observation_space}")


def _has_finite_bounds(action_space: gym.spaces.Box) -> bool:
    return bool(np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)))


def ppo_for_env(env: gym.Env, **ppo_options) -> PPO:
    """A PPO whose `is_continuous`, `observ_dim`, `action_dim` (and action bounds) fit `env`."""
    observation_space, action_space = env.observation_space, env.action_space
    _check_observation_space(observation_space)
    if isinstance(action_space, gym.spaces.Discrete):
        dims = dict(is_continuous=False, action_dim=int(action_space.n))
    elif isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        dims = dict(is_continuous=True, action_dim=int(action_space.shape[0]))
        if "action_scaling" not in ppo_options and _has_finite_bounds(action_space):
            ppo_options.setdefault("action_low", action_space.low)
            ppo_options.setdefault("action_high", action_space.high)
    else:
        raise TypeError(f"action_space: only Discrete and 1-D Box actions are supported, got "
                        f"{action_space}")
    ppo = PPO(observ_dim=int(np.prod(observation_space.shape)), **dims, **ppo_options)
    check_spaces(observation_space, action_space, ppo)
    return ppo


def check_spaces(observation_space: gym.Space, action_space: gym.Space, ppo: PPO) -> None:
    """Raises a clear error if the env's spaces do not fit the PPO learner, or are unsupported."""
    _check_observation_space(observation_space)
    obs_size = int(np.prod(observation_space.shape))
    if obs_size != ppo.observ_dim:
        raise ValueError(f"observ_dim: the PPO was built with observ_dim={ppo.observ_dim}, but the "
                         f"env's observations have shape {observation_space.shape} ({obs_size} values)")
    if isinstance(action_space, gym.spaces.Discrete):
        if ppo.is_continuous:
            raise ValueError(f"is_continuous: the env's action space {action_space} is discrete, "
                             "but the PPO was built with is_continuous=True")
        if int(action_space.start) != 0:
            raise ValueError(f"action_space: Discrete spaces must start at 0, got {action_space}")
        if int(action_space.n) != ppo.action_dim:
            raise ValueError(f"action_dim: the PPO was built with action_dim={ppo.action_dim}, but "
                             f"the env has {action_space.n} actions")
    elif isinstance(action_space, gym.spaces.Box):
        if not ppo.is_continuous:
            raise ValueError(f"is_continuous: the env's action space {action_space} is continuous, "
                             "but the PPO was built with is_continuous=False")
        if action_space.shape != (ppo.action_dim,):
            raise ValueError(f"action_dim: the PPO was built with action_dim={ppo.action_dim}, but "
                             f"the env's actions have shape {action_space.shape}")
    else:
        raise TypeError(f"action_space: only Discrete and Box actions are supported, got {action_space}")


ROLLOUTS = ("episodes", "steps")


class AsyncPPO:
    """Trains `ppo` on `num_envs` independent copies of `env` for `steps` env steps.

    Each round collects trajectories, hands them to `ppo.memory` and calls `ppo.learn()`:
    - `rollout="episodes"`: one episode in every copy (episode-synchronous, as in the original);
    - `rollout="steps"`: `num_steps` steps of every copy, episodes running on across rounds and
      bootstrapped at the horizon.
    `backend` picks how the copies are stepped (see `EnvVectorizer`). A continuous PPO built
    without `action_scaling`/`action_low` gets the env's Box bounds. Copies are seeded
    `seed + i` (default: the PPO's seed), so the same seeds give the same run on CPU.
    """

    def __init__(self, env: gym.Env | Callable[[], gym.Env], ppo: PPO, num_envs: int = 32,
                 steps: int = 100000, *, seed: int | None = None, progress_bar: bool = True,
                 rollout: str = "steps", num_steps: int = 64, backend: str = "auto"):
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.steps = check_positive_int("steps", steps)
        self.num_steps = check_positive_int("num_steps", num_steps)
        if rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {ROLLOUTS}, got {rollout!r}")
        self.rollout = rollout
        if not isinstance(ppo, PPO):
            raise TypeError(f"ppo must be a PPO instance, got {type(ppo).__name__}")
        self.ppo = ppo
        self.env = EnvVectorizer(env, self.num_envs, seed=ppo.seed if seed is None else seed,
                                 backend=backend)
        try:
            check_spaces(self.env.observation_space, self.env.action_space, ppo)
        except (TypeError, ValueError):
            self.env.close()  # subprocess workers must not outlive a refused configuration
            raise
        space = self.env.action_space
        if ppo.is_continuous and not ppo.action_bounds_given and _has_finite_bounds(space):
            ppo.set_action_bounds(space.low, space.high)
        self.buffer = VecMemory(self.num_envs)
        self.collector = FixedHorizonCollector(self.env)
        self.progress_bar = progress_bar
        self.total_steps = 0
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []

    def train_round(self) -> EpisodeRound:
        """Collects one round, transfers it to `ppo.memory` and calls `ppo.learn()`."""
        if self.rollout == "episodes":
            collected = collect_episodes(self.env, self.buffer, self.ppo.get_action)
        else:
            collected = self.collector.collect(self.buffer, self.ppo.get_action, self.num_steps)
        utils.buffer_to_target_buffer_transfer(self.buffer, self.ppo.memory)
        self.ppo.learn()
        self.total_steps += collected.steps
        self.episode_returns.extend(collected.episode_returns.tolist())
        self.episode_lengths.extend(collected.episode_lengths.tolist())
        return collected

    def run(self) -> list[float]:
        """Trains until `steps` env steps are collected; returns every finished episode's return."""
        with tqdm(total=self.steps, initial=min(self.total_steps, self.steps), unit="step",
                  disable=not self.progress_bar, dynamic_ncols=True) as pbar:
            while self.total_steps < self.steps:
                collected = self.train_round()
                recent = self.episode_returns[-self.num_envs:]
                if recent:
                    pbar.set_description(f"Mean reward {np.mean(recent): .1f}", refresh=False)
                if self.ppo.stats:
                    pbar.set_postfix(kl=f"{self.ppo.stats['approx_kl']:.4f}",
                                     ev=f"{self.ppo.stats['explained_variance']:.2f}", refresh=False)
                pbar.update(min(pbar.total - pbar.n, collected.steps))
        return self.episode_returns

    def close(self) -> None:
        self.env.close()
