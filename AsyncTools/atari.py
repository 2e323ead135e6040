"""Standard Atari envs for PPO, built from gymnasium and ale-py alone.

`make_atari_env` gives the preprocessing of Mnih et al. (2015) as used by CleanRL's
ppo_atari.py and Stable-Baselines3's AtariWrapper: no-op starts, frame skip with a max over
the last two frames, 84x84 grayscale, end of episode on life loss for the learner, FIRE on
reset, rewards clipped to their sign and 4 stacked frames, channels first.

The wrappers, innermost first:

1. `AtariPreprocessing` (gymnasium): no-op reset, frame skip + max-pool, resize, grayscale.
2. `TimeLimit`, only when `max_episode_steps` is given: counts agent steps of a whole game.
3. `RecordEpisodeStatistics` (gymnasium): it sits inside the life and reward wrappers, so
   `info["episode"]` holds the real, unclipped score and length (in agent steps) of a whole
   game, and appears only on the step where the game really ends.
4. `EpisodicLifeEnv`: a lost life ends the learner's episode; the game goes on.
5. `FireResetEnv`, for games that have FIRE: starts play after every reset (also after a
   lost life, when e.g. Breakout waits for FIRE to serve a new ball).
6. Reward clipping by sign: what the learner sees, nothing else.
7. `FrameStackObservation` (gymnasium): uint8 observations of shape (frame_stack, size, size).

`AtariPreprocessing` resizes with OpenCV, so besides ale-py this needs `opencv-python` (or
`opencv-python-headless`).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AtariPreprocessing,
    FrameStackObservation,
    RecordEpisodeStatistics,
    TimeLimit,
    TransformReward,
)

from PPO.checks import check_non_negative_int, check_positive_int

__all__ = ["make_atari_env", "wrap_atari", "EpisodicLifeEnv", "FireResetEnv", "sign_reward"]

# ALE's own cap on a game: 108,000 frames (30 minutes of play at 60 Hz), as in Machado et
# al. (2018); the game is then truncated.
MAX_FRAMES_PER_GAME = 108_000

NOOP = 0  # ALE's action 0 is NOOP in every game's minimal action set.


class EpisodicLifeEnv(gym.Wrapper):
    """Ends the learner's episode (`terminated=True`) when a life is lost.

    The game itself goes on: after a lost life, `reset()` does not restart it but takes one
    NOOP step and returns that observation, so the next episode starts with the lives that
    are left. Only when the game is really over (terminated or truncated by the env), or when
    a `seed` is passed, does `reset()` reset the wrapped env.

    Lives are read from `env.unwrapped.ale.lives()`.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())  # type: ignore[attr-defined]  # an ALE env's emulator

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Steps the game; a life lost on this step ends the learner's episode."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = bool(terminated or truncated)
        lives = self._ale_lives()
        if lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Restarts the game if it is over (or a seed is given), else continues it."""
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(NOOP)
            if terminated or truncated:  # the game ended in that one step
                obs, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self._ale_lives()
        return obs, info


class FireResetEnv(gym.Wrapper):
    """Presses FIRE once after every reset, for games that wait for it before play starts.

    Raises ValueError if the game's action meanings (`env.unwrapped.get_action_meanings()`)
    have no "FIRE". If pressing FIRE ends the episode, the env is reset once more.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = list(env.unwrapped.get_action_meanings())  # type: ignore[attr-defined]  # an ALE env's
        if "FIRE" not in meanings:
            raise ValueError(f"FireResetEnv needs a game with a FIRE action; its actions are {meanings}")
        self.fire_action = meanings.index("FIRE")

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Resets the env, then steps FIRE and returns that step's observation."""
        self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, info = self.env.step(self.fire_action)
        if terminated or truncated:
            obs, info = self.env.reset(options=options)
        return obs, info


def sign_reward(reward: SupportsFloat) -> float:
    """Clips a reward to -1, 0 or 1 by its sign (a module-level function, so picklable)."""
    return float(np.sign(float(reward)))


def _check_arguments(
    noop_max: Any, frame_skip: Any, screen_size: Any, frame_stack: Any, max_episode_steps: Any
) -> None:
    check_positive_int("frame_skip", frame_skip)
    check_positive_int("screen_size", screen_size)
    check_positive_int("frame_stack", frame_stack)
    if max_episode_steps is not None:
        check_positive_int("max_episode_steps", max_episode_steps)
    check_non_negative_int("noop_max", noop_max)


def wrap_atari(
    env: gym.Env,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    episodic_life: bool = True,
    fire_reset: bool = True,
    clip_rewards: bool = True,
    max_episode_steps: int | None = None,
) -> gym.Env:
    """Wraps an ALE env that does no frame skip of its own in the standard PPO preprocessing.

    `env` must step one frame per step (`env.unwrapped._frameskip == 1` when `frame_skip >
    1`) and expose `env.unwrapped.ale` and `env.unwrapped.get_action_meanings()`. See
    `make_atari_env` for the arguments and the module docstring for the wrapper order.
    Raises ValueError for a non-positive `frame_skip`, `screen_size`, `frame_stack` or
    `max_episode_steps`, or a negative `noop_max`.
    """
    _check_arguments(noop_max, frame_skip, screen_size, frame_stack, max_episode_steps)
    env = AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    if max_episode_steps is not None:
        env = TimeLimit(env, max_episode_steps=max_episode_steps)
    env = RecordEpisodeStatistics(env)
    if episodic_life:
        env = EpisodicLifeEnv(env)
    if fire_reset and "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]  # ALE's
        env = FireResetEnv(env)
    if clip_rewards:
        env = TransformReward(env, sign_reward)
    return FrameStackObservation(env, frame_stack)


def _import_dependencies() -> Any:
    try:
        import ale_py
    except ImportError as err:
        raise ImportError("make_atari_env needs the Arcade Learning Environment: pip install ale-py") from err
    try:
        import cv2  # noqa: F401  (AtariPreprocessing resizes frames with it)
    except ImportError as err:
        raise ImportError(
            "make_atari_env needs OpenCV to resize frames: pip install opencv-python-headless"
        ) from err
    return ale_py


def _make_ale_env(env_id: str, render_mode: str | None, make_kwargs: dict[str, Any]) -> gym.Env:
    """make_atari_env's unwrapped env: the ALE game `env_id`, stepping one frame per step, with
    `make_kwargs` (edited in place: ALE's cap on a game and a grayscale observation by default)."""
    if "frameskip" in make_kwargs:
        raise ValueError(
            "pass frame_skip, not frameskip: the env itself must not skip frames, "
            f"got frameskip={make_kwargs['frameskip']!r}"
        )
    ale_py = _import_dependencies()
    gym.register_envs(ale_py)
    make_kwargs.setdefault("max_num_frames_per_episode", MAX_FRAMES_PER_GAME)
    # AtariPreprocessing reads the screen from the ALE itself and ignores the observation,
    # so a grayscale one (cheaper to copy than RGB) is enough.
    make_kwargs.setdefault("obs_type", "grayscale")
    return gym.make(env_id, frameskip=1, render_mode=render_mode, **make_kwargs)


def make_atari_env(
    env_id: str = "BreakoutNoFrameskip-v4",
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    episodic_life: bool = True,
    fire_reset: bool = True,
    clip_rewards: bool = True,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
    **make_kwargs: Any,
) -> gym.Env:
    """Makes an Atari env preprocessed for PPO, as CleanRL's ppo_atari.py and SB3 do.

    Args:
        env_id: an ALE id such as "BreakoutNoFrameskip-v4" or "ALE/Breakout-v5". The env
            is made with `frameskip=1` whatever the id says, since the frame skip is done
            here (with a max over the last two frames). Other settings keep the id's
            defaults unless given in `make_kwargs`: v5 ids have sticky actions
            (`repeat_action_probability=0.25`), v4 ids have none.
        noop_max: at most this many NOOP steps (at least one) after a real game reset; 0: none.
        frame_skip: frames per agent step; the action is repeated on each.
        screen_size: observations are `screen_size` x `screen_size` grayscale frames.
        frame_stack: how many of the last frames one observation holds.
        episodic_life: a lost life ends the learner's episode (the game goes on).
        fire_reset: press FIRE after each reset, for games that have FIRE.
        clip_rewards: the learner gets the sign of each reward (-1, 0 or 1).
        max_episode_steps: truncate a game after this many agent steps. None: only ALE's own
            cap of 108,000 frames (27,000 agent steps at frame_skip=4) applies.
        render_mode: passed to `gym.make` ("rgb_array" or "human").
        **make_kwargs: passed to `gym.make`, e.g. `repeat_action_probability`,
            `full_action_space`, `mode`, `difficulty`.

    Returns:
        The wrapped env: a Discrete action space and uint8 observations of shape
        `(frame_stack, screen_size, screen_size)`. `info["episode"]` (keys "r", "l", "t")
        appears on the step that ends a game, with the unclipped score of the whole game.

    Raises:
        ImportError: ale-py (or OpenCV) is not installed.
        ValueError: a non-positive `frame_skip`, `screen_size`, `frame_stack` or
            `max_episode_steps`, a negative `noop_max`, or `frameskip` in `make_kwargs`.
    """
    _check_arguments(noop_max, frame_skip, screen_size, frame_stack, max_episode_steps)
    env = _make_ale_env(env_id, render_mode, make_kwargs)
    return wrap_atari(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        frame_stack=frame_stack,
        episodic_life=episodic_life,
        fire_reset=fire_reset,
        clip_rewards=clip_rewards,
        max_episode_steps=max_episode_steps,
    )
