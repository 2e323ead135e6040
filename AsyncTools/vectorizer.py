"""EnvVectorizer: N independent copies of one gym env stepped in lockstep in this process."""
from __future__ import annotations

import copy
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from PPO.checks import check_positive_int


class EnvStepError(RuntimeError):
    """An env copy raised inside `reset` or `step`; `env_index` says which, `__cause__` is the
    original exception."""

    def __init__(self, env_index: int, num_envs: int, method: str, error: BaseException):
        super().__init__(f"env copy {env_index} of {num_envs} raised {type(error).__name__} in "
                         f"{method}(): {error}")
        self.env_index = env_index


class EpisodeOverFlags(np.ndarray):
    """A bool array, True where that env's episode is over (the original's `envs_active`).

    It remembers the EnvVectorizer it describes, so that `utils.buffer_append` can read the
    last step's termination/truncation flags and final observations from it; arrays derived
    from it (copies, `|`, `~`) remember it too.
    """

    vectorizer: "EnvVectorizer | None" = None

    def __array_finalize__(self, obj: Any) -> None:
        self.vectorizer = getattr(obj, "vectorizer", None)


def _copy_env(env: gym.Env) -> gym.Env:
    try:
        return copy.deepcopy(env)
    except Exception as error:
        if env.spec is None:
            raise TypeError("env could not be copied (deepcopy failed) and has no spec to re-make "
                            "it from; pass a function that creates the env instead") from error
        return gym.make(env.spec)


class EnvVectorizer:
    """Steps `num_envs` independent copies of `env` (a gym.Env with all its wrappers, or a
    function returning a new one) in lockstep.

    Episode-synchronous, as in the original: `reset()` starts an episode in every copy; `step`
    takes actions for, and returns results of, only the copies whose episode is still running,
    in env order. `envs_active[i]` is True once copy i's episode is over (the original's name).

    Every copy has its own RNG: copy i is seeded with `seed + i` on the first reset when `seed`
    is given, and from fresh OS entropy otherwise. Continuous actions are clipped to the action
    space before the env sees them (`clip_actions`).
    """

    def __init__(self, env: gym.Env | Callable[[], gym.Env], num_envs: int = 1,
                 seed: int | None = None, clip_actions: bool = True):
        self.num_envs = check_positive_int("num_envs", num_envs)
        if callable(env) and not isinstance(env, gym.Env):
            self.envs = [env() for _ in range(self.num_envs)]
        elif isinstance(env, gym.Env):
            self.envs = [env] + [_copy_env(env) for _ in range(self.num_envs - 1)]
        else:
            raise TypeError(f"env must be a gymnasium.Env or a function returning one, got "
                            f"{type(env).__name__}")
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self._clip_bounds = None
        if clip_actions and isinstance(self.action_space, gym.spaces.Box):
            self._clip_bounds = (self.action_space.low, self.action_space.high)
        if seed is None:
            seeds = np.random.SeedSequence().generate_state(self.num_envs)
        else:
            seeds = seed + np.arange(self.num_envs)
        self._pending_seeds: list[int] | None = [int(s) for s in seeds]
        self.envs_active = np.zeros(self.num_envs, dtype=bool)
        self.last_terminated = np.zeros(self.num_envs, dtype=bool)
        self.last_truncated = np.zeros(self.num_envs, dtype=bool)
        self.last_next_states: np.ndarray | None = None

    @property
    def envs_active(self) -> EpisodeOverFlags:
        return self._episode_over

    @envs_active.setter
    def envs_active(self, flags) -> None:
        flags = np.asarray(flags)
        if flags.shape != (self.num_envs,) or flags.dtype != bool:
            raise ValueError(f"envs_active: expected a bool array of shape ({self.num_envs},), got "
                             f"{flags.dtype} array of shape {flags.shape}")
        self._episode_over = flags.copy().view(EpisodeOverFlags)
        self._episode_over.vectorizer = self

    def active_indices(self) -> np.ndarray:
        """Indices of the copies whose episode is still running."""
        return np.flatnonzero(~self._episode_over)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, list[dict]]:
        """Starts a new episode in every copy; returns (states [N, *obs_shape], infos)."""
        if seed is not None:
            self._pending_seeds = [seed + i for i in range(self.num_envs)]
        seeds = self._pending_seeds or [None] * self.num_envs
        self._pending_seeds = None
        results = [self._call(i, "reset", seed=seeds[i]) for i in range(self.num_envs)]
        states = self._stack_states([obs for obs, _ in results], np.arange(self.num_envs))
        self.envs_active = np.zeros(self.num_envs, dtype=bool)
        self.last_next_states = states.copy()
        return states, [info for _, info in results]

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        """Steps the running copies with one action each (in env order). Returns their
        (next_states, rewards, terminated, truncated, infos); a finished copy is not stepped."""
        indices = self.active_indices()
        actions = np.asarray(actions)
        if actions.shape[:1] != (len(indices),):
            raise ValueError(f"actions: expected one action per running env ({len(indices)}), got "
                             f"an array of shape {actions.shape}")
        env_actions = actions if self._clip_bounds is None else np.clip(actions, *self._clip_bounds)
        results = [self._call(i, "step", a) for i, a in zip(indices, env_actions)]
        next_states = self._stack_states([r[0] for r in results], indices)
        rewards = np.array([r[1] for r in results], dtype=np.float32)
        terminated = np.array([r[2] for r in results], dtype=bool)
        truncated = np.array([r[3] for r in results], dtype=bool)
        self.last_terminated[indices] = terminated
        self.last_truncated[indices] = truncated
        self.last_next_states[indices] = next_states
        return next_states, rewards, terminated, truncated, [r[4] for r in results]

    def _call(self, index: int, method: str, *args, **kwargs):
        try:
            return getattr(self.envs[index], method)(*args, **kwargs)
        except Exception as error:
            raise EnvStepError(index, self.num_envs, method, error) from error

    def _stack_states(self, states: list, indices: np.ndarray) -> np.ndarray:
        stacked = np.stack(states).astype(np.float32, copy=False)
        if not np.isfinite(stacked).all():
            bad = indices[~np.isfinite(stacked.reshape(len(states), -1)).all(axis=1)]
            raise ValueError(f"env copies {bad.tolist()} returned non-finite observations")
        return stacked

    def close(self) -> None:
        for env in self.envs:
            env.close()
