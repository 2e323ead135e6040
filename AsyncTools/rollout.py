"""Collection loops, written with the same helpers a hand-written loop uses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import utils
from .vec_memory import VecMemory
from .vectorizer import EnvVectorizer


@dataclass
class EpisodeRound:
    """What one episode-synchronous round collected: one episode per env."""

    steps: int
    episode_returns: np.ndarray
    episode_lengths: np.ndarray


def collect_episodes(env: EnvVectorizer, buffer: VecMemory,
                     get_action: Callable[[np.ndarray], np.ndarray]) -> EpisodeRound:
    """Runs one episode in every env copy, storing every step in `buffer`; returns when all
    episodes are over (the original project's collection)."""
    states = env.reset()[0]
    episode_returns = np.zeros(env.num_envs)
    episode_lengths = np.zeros(env.num_envs, dtype=np.int64)
    while True:
        actions = get_action(states)
        running = env.active_indices()
        next_states, rewards, terminated, truncated, _ = env.step(actions)
        dones = terminated | truncated
        utils.buffer_append(buffer, states, actions, rewards, dones,
                            is_env_terminal=env.envs_active, num_envs=env.num_envs)
        episode_returns[running] += rewards
        episode_lengths[running] += 1
        states = utils.inactive_states_dropout(next_states, dones)
        env.envs_active = utils.update_active_environments_list(env.envs_active, dones)
        if np.all(env.envs_active):
            return EpisodeRound(int(episode_lengths.sum()), episode_returns, episode_lengths)
