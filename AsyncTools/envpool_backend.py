"""EnvPool as a backend: `backend="envpool"` steps the copies in EnvPool's C++ thread pool.

EnvPool (optional: `pip install -e .[envpool]`) builds N copies of a task from its id and steps
them as one gymnasium VectorEnv with gymnasium's next-step autoreset, which the EnvVectorizer
takes as it is. Ids are EnvPool's (`Pong-v5`, `HalfCheetah-v5`, `CartPole-v1`); the Atari ids
this project takes elsewhere (`ALE/Pong-v5`, `PongNoFrameskip-v4`) name the same game.

Atari tasks come with EnvPool's own preprocessing, as in CleanRL's `ppo_atari_envpool.py`:
no-op starts, frame skip 4 with max-pooling, 84x84 grey frames, 4 stacked (`(4, 84, 84)` uint8,
like `AsyncTools.atari`), episodic life and sign-clipped rewards for learning. The game score
reported (bar, CSVs, learning curve) is the real one: `EnvPoolVectorEnv` adds up EnvPool's unclipped
`info["reward"]` over a whole game (until `info["terminated"]`, game over, or a time limit) and
reports it as gymnasium's RecordEpisodeStatistics would (`info["episode"]["r"]`). With episodic
life, the step after a lost life continues the game; like every next-step autoreset row, it is
not stored (one transition per life).
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from .episodes import ALL, EpisodeCounter


def import_envpool() -> ModuleType:
    """The `envpool` module, or an ImportError that says how to install it."""
    try:
        import envpool
    except ImportError as error:
        raise ImportError(
            "backend='envpool' needs the envpool package: pip install -e .[envpool] "
            "(Linux, macOS or Windows on x86-64 or arm64)"
        ) from error
    return envpool


def envpool_task_id(env_id: str) -> str:
    """EnvPool's name for `env_id`: "ALE/Pong-v5" and "PongNoFrameskip-v4" are "Pong-v5"."""
    envpool = import_envpool()
    candidates = [
        env_id,
        env_id.removeprefix("ALE/"),
        re.sub(r"NoFrameskip-v4$", "-v5", env_id.removeprefix("ALE/")),
    ]
    known = set(envpool.list_all_envs())
    for candidate in candidates:
        if candidate in known:
            return candidate
    raise ValueError(
        f"env: EnvPool has no task {env_id!r} (it has Atari games as 'Pong-v5', "
        f"MuJoCo as 'HalfCheetah-v5', classic control as 'CartPole-v1'; see "
        f"envpool.list_all_envs())"
    )


def is_atari_task(task_id: str) -> bool:
    """True for EnvPool's Atari tasks (those with an `episodic_life` option)."""
    return "episodic_life" in import_envpool().make_spec(task_id).config._fields


def make_envpool_env(env_id: object, num_envs: int, seed: int) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` in one EnvPool VectorEnv, seeded from `seed`; Atari games
    with the learning preprocessing and their real scores reported. `env_id` is whatever was
    passed as the env: anything but an id raises TypeError."""
    if not isinstance(env_id, str):
        raise TypeError(
            f"env: backend='envpool' builds the copies itself from an env id "
            f"(e.g. 'Pong-v5' or 'HalfCheetah-v5'), got {type(env_id).__name__}"
        )
    envpool = import_envpool()
    task = envpool_task_id(env_id)
    seed = int(seed) % 2**31  # EnvPool takes int32 seeds
    atari = is_atari_task(task)
    options = dict(episodic_life=True, reward_clip=True) if atari else {}
    pool = envpool.make(task, env_type="gymnasium", num_envs=num_envs, seed=seed, **options)
    return EnvPoolVectorEnv(pool, report_games=atari)


class EnvPoolVectorEnv(gym.vector.VectorWrapper):
    """An EnvPool pool as the EnvVectorizer takes it. EnvPool seeds its copies once, when the
    pool is made, so `reset` leaves out a seed (EnvPool would warn and ignore it). With
    `report_games` (Atari) each finished game's real score is reported in
    `info["episode"]["r"]` (mask `info["_episode"]`), as gymnasium's RecordEpisodeStatistics
    would: the sum of EnvPool's unclipped `info["reward"]` since the game began."""

    def __init__(self, pool: gym.vector.VectorEnv, report_games: bool):
        super().__init__(pool)
        self.report_games = report_games
        self.games = EpisodeCounter(self.num_envs)  # each copy's score of the game under way

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Resets every copy (`seed` is left out: EnvPool seeded them when the pool was made)
        and starts each one's game score afresh."""
        self.games.end(ALL)
        return self.env.reset(options=options)

    def step(self, actions: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every copy; with `report_games`, `info` also reports the games that ended."""
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        if not self.report_games:
            return obs, rewards, terminated, truncated, info
        self.games.add(info["reward"])
        game_over = (np.asarray(info["terminated"]) == 1) | np.asarray(truncated)
        info = dict(info, episode={"r": self.games.returns.copy()}, _episode=game_over)
        self.games.end(game_over)
        return obs, rewards, terminated, truncated, info
