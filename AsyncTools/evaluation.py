"""Evaluation: play whole episodes with a PPO's policy and record them as a GIF or an MP4.

    returns = evaluate(ppo, gym.make("CartPole-v1"), episodes=10, seed=0)
    record_gif(ppo, gym.make("CartPole-v1", render_mode="rgb_array"), "runs/cartpole.gif")
    record_video(ppo, gym.make("CartPole-v1", render_mode="rgb_array"), "runs/videos")

All three play episodes with the same loop (`play_episodes`): episode k is reset with
`seed + k` when a seed is given, and continuous actions are clipped to the action space, as the
training collectors clip them. Frame convention of the recordings: one frame after the reset
and one after every step, so an episode of n steps gives n + 1 frames.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from PPO import PPO
from PPO.checkpoint import atomic_write
from PPO.checks import check_bool, check_positive_int

from .envs import flat_for_learner
from .episodes import EpisodeCounter, game_returns
from .rollout import EPISODE_STEP_CAP, check_episode_step_cap, warn_episode_cut
from .vectorizer import wrapper_types

__all__ = ["evaluate", "play_episodes", "record_gif", "record_video", "PeriodicEvaluation"]

_THE_ENV = np.arange(1)  # evaluation plays one env: copy 0 of its EpisodeCounter and infos


def play_episodes(
    ppo: PPO,
    env: gym.Env,
    episodes: int,
    deterministic: bool = True,
    seed: int | None = None,
    on_frame: Callable[[], None] | None = None,
    *,
    episode_step_cap: int = EPISODE_STEP_CAP,
) -> list[float]:
    """Plays `episodes` whole episodes with `ppo.get_action`; returns each episode's return.

    Where the env reports whole games (a RecordEpisodeStatistics wrapper in its stack, as the
    Atari helper has inside its life-loss and reward-clipping wrappers), an episode is a whole
    game, played on through lost lives, and its return is the reported, unclipped score.
    `on_frame` is called after every reset and after every step (the moments a recorder
    renders a frame). Episode k is reset with `seed + k` when `seed` is given; sampled actions
    (`deterministic=False`) draw from a generator of their own, seeded with `seed`, so playing
    never moves the learner's sampling stream. An episode still running after
    `episode_step_cap` steps is ended there, with a warning."""
    episodes = check_positive_int("episodes", episodes)
    episode_step_cap = check_episode_step_cap(episode_step_cap)
    deterministic = check_bool("deterministic", deterministic)
    env = flat_for_learner(env, ppo.observation_space)  # Discrete, Dict...: as in training
    bounds = _action_bounds(env.action_space)
    whole_games = reports_games(env)
    generator = None if deterministic else _sampling_generator(ppo, seed)
    returns, episode = [], EpisodeCounter(1)
    for k in range(episodes):
        obs, _ = env.reset(seed=None if seed is None else seed + k)
        if on_frame is not None:
            on_frame()
        score = None  # the reported score of the whole game, where the env reports games
        while True:
            # A batch of one: works for every observation shape, flattened or image.
            action = ppo.get_action(np.asarray(obs)[None], deterministic=deterministic, generator=generator)[
                0
            ]
            if bounds is not None:
                action = np.clip(action, *bounds)
            obs, reward, terminated, truncated, info = env.step(action)
            episode.add(float(reward))
            if on_frame is not None:
                on_frame()
            if terminated or truncated:
                score = game_returns([info], _THE_ENV) if whole_games else None
                if not whole_games or score is not None:
                    break
                obs, _ = env.reset()  # a lost life: the game goes on (its steps count on)
                if on_frame is not None:
                    on_frame()
            if episode.lengths[0] >= episode_step_cap:
                warn_episode_cut(f"evaluation episode {k}", episode_step_cap)
                break
        counted, _ = episode.end(_THE_ENV)  # a whole game's return is its reported score
        returns.append(float(counted[0] if score is None else score[0]))
    return returns


def _action_bounds(action_space: gym.Space) -> tuple[np.ndarray, np.ndarray] | None:
    """The (low, high) that continuous actions are clipped to; None for other spaces."""
    if isinstance(action_space, gym.spaces.Box):
        return action_space.low, action_space.high
    return None


def _sampling_generator(ppo: PPO, seed: int | None) -> torch.Generator:
    """play_episodes' own generator for sampled actions, on `ppo`'s device: seeded with `seed`,
    or from fresh entropy when it is None."""
    generator = torch.Generator(ppo.device)
    generator.seed() if seed is None else generator.manual_seed(seed)
    return generator


def reports_games(env: gym.Env) -> bool:
    """True if a RecordEpisodeStatistics wrapper in `env`'s stack reports whole games."""
    return any(issubclass(kind, gym.wrappers.RecordEpisodeStatistics) for kind in wrapper_types(env))


def evaluate(
    ppo: PPO,
    env: gym.Env,
    episodes: int = 10,
    deterministic: bool = True,
    seed: int | None = None,
    *,
    episode_step_cap: int = EPISODE_STEP_CAP,
) -> list[float]:
    """The returns of `episodes` whole episodes played by `ppo` in `env` (the most likely
    action with `deterministic=True`, a sampled one otherwise); an episode still running after
    `episode_step_cap` steps is ended there, with a warning."""
    return play_episodes(ppo, env, episodes, deterministic, seed, episode_step_cap=episode_step_cap)


EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes are seeded apart from the training copies


class PeriodicEvaluation:
    """Evaluation of a learner every `every` env steps on an env copy of its own (made by
    `make_env` at the first evaluation), with its most likely actions (`deterministic=True`)
    or sampled ones. Every evaluation plays the same `episodes` episodes (episode k seeded
    `seed + k`), so evaluations compare like with like; the best mean return so far is kept in
    `best_return`, the latest in `last_return`."""

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        every: int,
        episodes: int,
        seed: int,
        *,
        deterministic: bool = True,
        episode_step_cap: int = EPISODE_STEP_CAP,
        start_step: int = 0,
        best_return: float | None = None,
    ):
        self.every = check_positive_int("eval_every", every)
        self.episodes = check_positive_int("eval_episodes", episodes)
        self.deterministic = check_bool("eval_deterministic", deterministic)
        self.seed, self.episode_step_cap = seed, episode_step_cap
        self.next_step = start_step + self.every
        self.best_return: float | None = best_return
        self.last_return: float | None = None
        self._make_env = make_env
        self._env: gym.Env | None = None

    def due(self, steps: int) -> bool:
        """True once `steps` env steps have passed the next evaluation's turn."""
        return steps >= self.next_step

    def __call__(self, ppo: PPO, steps: int) -> tuple[float, bool]:
        """Evaluates `ppo` now (at `steps` env steps); returns (mean return, True if it is the
        best so far)."""
        if self._env is None:
            self._env = self._make_env()
        returns = evaluate(
            ppo,
            self._env,
            self.episodes,
            self.deterministic,
            seed=self.seed,
            episode_step_cap=self.episode_step_cap,
        )
        self.last_return = float(np.mean(returns))
        improved = self.best_return is None or self.last_return > self.best_return
        if improved:
            self.best_return = self.last_return
        self.next_step = steps + self.every
        return self.last_return, improved

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def _check_rgb_array(env: gym.Env, caller: str) -> None:
    if env.render_mode != "rgb_array":
        raise ValueError(
            f"{caller}: the env renders with render_mode={env.render_mode!r}; make "
            f'the env with render_mode="rgb_array" '
            f'(e.g. gym.make(env_id, render_mode="rgb_array"))'
        )


def record_gif(
    ppo: PPO,
    env: gym.Env,
    file: str | os.PathLike,
    *,
    episodes: int = 1,
    deterministic: bool = True,
    seed: int | None = None,
    fps: int = 30,
    max_frames: int | None = None,
) -> list[float]:
    """Plays `episodes` episodes and writes their frames (`env.render()`, one after the reset
    and one after every step) to the animated GIF `file`; returns the episodes' returns.

    `max_frames` caps the frames written; the episodes are still played to their end (their
    returns are whole-episode returns) but nothing is rendered past the cap. Parent folders are
    created, and the file is written to a temporary name and renamed, so it is never half
    written. Pillow merges identical consecutive frames into one longer frame, so the GIF may
    hold fewer frames than were rendered (the total duration is unchanged). Each frame lasts
    round(1000 / fps) ms, which GIF stores in steps of 10 ms (fps=30 shows 30 ms frames)."""
    _check_rgb_array(env, "record_gif")
    fps = check_positive_int("fps", fps)
    if max_frames is not None:
        max_frames = check_positive_int("max_frames", max_frames)
    from PIL import Image  # pillow is only needed for GIFs

    frames: list[np.ndarray] = []

    def capture() -> None:
        if max_frames is None or len(frames) < max_frames:
            frames.append(np.asarray(env.render(), dtype=np.uint8))

    returns = play_episodes(ppo, env, episodes, deterministic, seed, on_frame=capture)
    images = [Image.fromarray(frame) for frame in frames]
    atomic_write(
        Path(file),
        lambda handle: images[0].save(
            handle, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        ),
    )
    return returns


def record_video(
    ppo: PPO,
    env: gym.Env,
    folder: str | os.PathLike,
    *,
    episodes: int = 1,
    deterministic: bool = True,
    seed: int | None = None,
    name_prefix: str = "eval",
    fps: int | None = None,
) -> list[float]:
    """Plays `episodes` episodes and writes one MP4 per episode into `folder`
    (`{name_prefix}-episode-{k}.mp4`, k from 0, replacing files of the same name) with
    gymnasium's `RecordVideo`, which needs `moviepy`; returns the episodes' returns.
    `fps` defaults to the env's `render_fps` (30 if it has none). `env` is not closed."""
    _check_rgb_array(env, "record_video")
    episodes = check_positive_int("episodes", episodes)  # before RecordVideo makes the folder
    try:
        import moviepy  # noqa: F401  (RecordVideo writes the MP4 files with it)
    except ImportError as error:
        raise ImportError("record_video needs moviepy to write MP4 files: pip install moviepy") from error
    recorder = gym.wrappers.RecordVideo(
        env,
        video_folder=str(folder),
        episode_trigger=lambda _: True,
        name_prefix=name_prefix,
        fps=fps,
        disable_logger=True,
    )
    returns = play_episodes(ppo, recorder, episodes, deterministic, seed)
    if recorder.recording:  # the last episode's video; closing the recorder would close env
        recorder.stop_recording()
    return returns
