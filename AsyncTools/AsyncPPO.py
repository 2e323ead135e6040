"""AsyncPPO: the one-liner that trains a PPO learner on N copies of an env.

`EnvVectorizer` and `VecMemory` are importable from here, as in the original project.
"""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from PPO import PPO
from PPO.checks import check_non_negative_int, check_positive_int

from . import utils
from .rollout import EpisodeRound, FixedHorizonCollector, collect_episodes, random_observations
from .vec_memory import VecMemory
from .vectorizer import EnvStepError, EnvVectorizer

__all__ = ["AsyncPPO", "EnvVectorizer", "VecMemory", "EnvStepError", "check_spaces", "ppo_for_env",
           "space_options"]


def _has_finite_bounds(action_space: gym.spaces.Box) -> bool:
    return bool(np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)))


def is_image_space(space: gym.Space) -> bool:
    """uint8 Box observations of three dimensions (HxWxC or CxHxW): frames for the CNN."""
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def space_options(observation_space: gym.Space, action_space: gym.Space) -> dict:
    """The PPO options that describe these spaces: `observ_dim` (and `observation_shape` for
    images), `is_continuous`, `action_dim` (and `action_nvec` for MultiDiscrete). Unsupported
    spaces raise TypeError naming the space."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(f"observation_space: only Box observations are supported (any shape; "
                        f"uint8 HxWxC or CxHxW frames go to a CNN), got {observation_space}")
    options: dict = dict(observ_dim=int(np.prod(observation_space.shape)))
    if is_image_space(observation_space):
        options["observation_shape"] = tuple(int(d) for d in observation_space.shape)
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            raise ValueError(f"action_space: Discrete spaces must start at 0, got {action_space}")
        return {**options, "is_continuous": False, "action_dim": int(action_space.n)}
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        if np.any(action_space.start != 0):
            raise ValueError(f"action_space: MultiDiscrete spaces must start at 0, got {action_space}")
        nvec = tuple(int(n) for n in action_space.nvec)
        return {**options, "is_continuous": False, "action_dim": sum(nvec), "action_nvec": nvec}
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return {**options, "is_continuous": True, "action_dim": int(action_space.shape[0])}
    raise TypeError(f"action_space: only Discrete, 1-D MultiDiscrete and 1-D Box actions are "
                    f"supported, got {action_space}")


def ppo_for_env(env: gym.Env, **ppo_options) -> PPO:
    """A PPO whose sizes (and, for Box actions, bounds) fit `env`; `ppo_options` are passed on."""
    options = space_options(env.observation_space, env.action_space)
    action_space = env.action_space
    if options["is_continuous"] and "action_scaling" not in ppo_options \
            and _has_finite_bounds(action_space):
        ppo_options.setdefault("action_low", action_space.low)
        ppo_options.setdefault("action_high", action_space.high)
    return PPO(**options, **ppo_options)


def check_spaces(observation_space: gym.Space, action_space: gym.Space, ppo: PPO) -> None:
    """Raises a clear error if the env's spaces do not fit the PPO learner, or are unsupported."""
    options = space_options(observation_space, action_space)
    if options["observ_dim"] != ppo.observ_dim:
        raise ValueError(f"observ_dim: the PPO was built with observ_dim={ppo.observ_dim}, but the "
                         f"env's observations have shape {observation_space.shape} "
                         f"({options['observ_dim']} values)")
    if options["is_continuous"] != ppo.is_continuous:
        kind = "continuous" if options["is_continuous"] else "discrete"
        raise ValueError(f"is_continuous: the env's action space {action_space} is {kind}, but "
                         f"the PPO was built with is_continuous={ppo.is_continuous}")
    if options["action_dim"] != ppo.action_dim or options.get("action_nvec") != ppo.action_nvec:
        built = f"action_dim={ppo.action_dim}"
        if ppo.action_nvec is not None:
            built += f", action_nvec={list(ppo.action_nvec)}"
        raise ValueError(f"action_dim: the PPO was built with {built}, but the env's action space "
                         f"is {action_space}")


ROLLOUTS = ("episodes", "steps")


class AsyncPPO:
    """Trains `ppo` on `num_envs` independent copies of `env` for `steps` env steps.

    Each round collects trajectories, hands them to `ppo.memory` and calls `ppo.learn()`:
    - `rollout="episodes"`: one episode in every copy (episode-synchronous, as in the original);
    - `rollout="steps"`: `num_steps` steps of every copy, episodes running on across rounds and
      bootstrapped at the horizon.
    `backend` picks how the copies are stepped (see `EnvVectorizer`). A continuous PPO built
    without `action_scaling`/`action_low` gets the env's Box bounds, and one with `anneal_lr`
    but no `total_steps` anneals over `steps`. With RND, `rnd_warmup_steps` random steps of
    every copy warm up RND's observation statistics before the first round (not counted in
    `steps`). Copies are seeded `seed + i` (default: the PPO's seed), so the same seeds give
    the same run on CPU.
    """

    def __init__(self, env: gym.Env | Callable[[], gym.Env], ppo: PPO, num_envs: int = 32,
                 steps: int = 100000, *, seed: int | None = None, progress_bar: bool = True,
                 rollout: str = "steps", num_steps: int = 64, backend: str = "auto",
                 rnd_warmup_steps: int = 64):
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.steps = check_positive_int("steps", steps)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.rnd_warmup_steps = check_non_negative_int("rnd_warmup_steps", rnd_warmup_steps)
        if rollout not in ROLLOUTS:
            raise ValueError(f"rollout must be one of {ROLLOUTS}, got {rollout!r}")
        self.rollout = rollout
        if not isinstance(ppo, PPO):
            raise TypeError(f"ppo must be a PPO instance, got {type(ppo).__name__}")
        self.ppo = ppo
        if ppo.anneal_lr and ppo.total_steps is None:
            ppo.total_steps = self.steps
        self.seed = ppo.seed if seed is None else seed
        self.env = EnvVectorizer(env, self.num_envs, seed=self.seed, backend=backend)
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
        self._rnd_warmed_up = False

    def train_round(self) -> EpisodeRound:
        """Collects one round, transfers it to `ppo.memory` and calls `ppo.learn()`."""
        if self.ppo.rnd is not None and not self._rnd_warmed_up:
            observations = random_observations(self.env, self.rnd_warmup_steps, self.seed)
            self.ppo.rnd.update_obs_stats(torch.from_numpy(observations).to(self.ppo.device))
            self._rnd_warmed_up = True
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
                    pbar.set_postfix_str(format_stats(self.ppo.stats), refresh=False)
                pbar.update(min(pbar.total - pbar.n, collected.steps))
        return self.episode_returns

    def close(self) -> None:
        self.env.close()


STATS_SHOWN = {"policy_loss": ("pi", ".3f"), "value_loss": ("v", ".3g"), "entropy": ("ent", ".3f"),
               "approx_kl": ("kl", ".4f"), "clip_fraction": ("clip", ".2f"),
               "explained_variance": ("ev", ".2f"), "intrinsic_reward": ("int", ".3g")}


def format_stats(stats: dict[str, float]) -> str:
    """The learner's last statistics, short, for the progress bar."""
    return " ".join(f"{short}={stats[name]:{spec}}" for name, (short, spec) in STATS_SHOWN.items()
                    if name in stats)
