"""Collection as one interface: a `Collector` steps `num_envs` copies of an env with a learner's
policy and hands back rounds in one format, whatever steps the copies.

    collector = make_collector(env, ppo, num_envs, backend="auto", seed=0)
    rollout, collected = collector.collect(ppo)   # one round
    ppo.memory.add(rollout)
    if ppo.learn() is not None:
        collector.sync(ppo)                            # the next round acts with the new weights

Implementations: `LocalCollector` acts in this process on copies stepped by an `EnvVectorizer`
(the in-process loop, gymnasium's native vector envs, a given VectorEnv, subprocess workers,
EnvPool's C++ pool: AsyncTools/envpool_backend.py); `RayCollector` (AsyncTools/ray_backend.py)
acts on Ray actors. `make_collector` is the only place the optional engines (Ray, EnvPool) are
imported.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Callable

import gymnasium as gym
import numpy as np

from PPO import PPO
from PPO.Memory import Rollout

from .rollout import (EPISODE_STEP_CAP, EpisodeRound, FixedHorizonLoop, check_rollout,
                      collect_episodes, random_observations)
from .vec_memory import VecMemory
from .envs import env_source
from .vectorizer import BACKENDS, EnvVectorizer


class PendingRound(ABC):
    """A round under way (`Collector.start_collect`)."""

    @abstractmethod
    def wait(self) -> None:
        """Returns once the round is collected (or failed)."""

    @abstractmethod
    def result(self) -> tuple[Rollout | None, EpisodeRound]:
        """Waits, then returns what `collect` returns, or raises its error."""


class BackgroundRound(PendingRound):
    """One call run in its own thread; `result()` waits for it and returns its value or raises
    its error. The thread ends with the call."""

    def __init__(self, call: Callable, *args):
        self._value = self._error = None
        self._thread = threading.Thread(target=self._run, args=(call, *args),
                                        name="ppo-collector", daemon=True)
        self._thread.start()

    def _run(self, call: Callable, *args) -> None:
        try:
            self._value = call(*args)
        except BaseException as error:  # raised again in the caller's thread by result()
            self._error = error

    def wait(self) -> None:
        self._thread.join()

    def result(self):
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value


class Collector(ABC):
    """Steps `num_envs` copies of an env with a learner's policy, one round per `collect`.

    A round is `rollout="steps"` (every copy steps `num_steps` times, episodes running on across
    rounds) or `rollout="episodes"` (one whole episode in every copy). `collect` returns the
    round's `Rollout` (time-major [T, N], column n for copy n, with the behaviour log-probs and
    the final observations that truncated steps bootstrap from) and its EpisodeRound.
    """

    num_envs: int
    observation_space: gym.Space
    action_space: gym.Space
    worker_restarts: int = 0  # copies' workers that died and were restarted (Ray)
    # True: `collect(ppo)` acts with the `ppo` object it is given; False: with the weights of
    # the last `sync(ppo)`, in other processes (Ray actors, a collector process)
    acts_in_this_process: bool = True

    @property
    @abstractmethod
    def env(self):
        """What steps the copies: an EnvVectorizer, or the RayCollector itself."""

    @abstractmethod
    def collect(self, ppo: PPO, should_stop: Callable[[], bool] | None = None
                ) -> tuple[Rollout | None, EpisodeRound]:
        """One round acted by `ppo`'s policy as last synced (None for a round without steps).
        `should_stop()` turning True cuts an episodes round at the step under way (where the
        collector can)."""

    def start_collect(self, ppo: PPO, should_stop: Callable[[], bool] | None = None
                      ) -> PendingRound:
        """Starts `collect(ppo, should_stop)` and returns at once (here: in a background thread;
        collectors acting in other processes start the round there). Until its `result()`,
        nothing else may use this collector, nor, for an in-process one, `ppo`."""
        return BackgroundRound(self.collect, ppo, should_stop)

    def sync(self, ppo: PPO) -> None:
        """Makes `ppo`'s current weights the ones the next round acts with (in-process
        collectors act with `ppo` itself: nothing to do)."""

    @abstractmethod
    def random_observations(self, num_steps: int) -> np.ndarray:
        """Observations of `num_steps` uniformly random steps of every copy (RND's warm-up)."""

    @abstractmethod
    def close(self) -> None:
        """Closes the copies and any workers; safe to call twice."""


class LocalCollector(Collector):
    """Acts in this process (the policy's `get_action`, the most likely action with
    `deterministic=True`) on the copies of `vectorizer`; `seed` seeds the random warm-up."""

    def __init__(self, vectorizer: EnvVectorizer, *, rollout: str = "steps", num_steps: int = 64,
                 episode_step_cap: int = EPISODE_STEP_CAP, seed: int | None = None,
                 deterministic: bool = False):
        self.vectorizer = vectorizer
        self.deterministic = deterministic
        self.num_envs = vectorizer.num_envs
        self.observation_space = vectorizer.observation_space
        self.action_space = vectorizer.action_space
        self.rollout, self.num_steps = check_rollout(rollout), num_steps
        self.episode_step_cap, self.seed = episode_step_cap, seed
        self._buffer = VecMemory(self.num_envs)
        self._horizon = FixedHorizonLoop(vectorizer)

    @property
    def env(self) -> EnvVectorizer:
        return self.vectorizer

    def collect(self, ppo: PPO, should_stop: Callable[[], bool] | None = None
                ) -> tuple[Rollout | None, EpisodeRound]:
        def act(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return ppo.sample_actions(states, deterministic=self.deterministic)

        if self.rollout == "episodes":
            collected = collect_episodes(self.vectorizer, self._buffer, act,
                                         episode_step_cap=self.episode_step_cap,
                                         should_stop=should_stop)
        else:
            collected = self._horizon.collect(self._buffer, act, self.num_steps)
        rollout = self._buffer.rollout()
        self._buffer.clear()
        return rollout, collected

    def random_observations(self, num_steps: int) -> np.ndarray:
        return random_observations(self.vectorizer, num_steps, self.seed)

    def close(self) -> None:
        self.vectorizer.close()


COLLECTOR_BACKENDS = BACKENDS + ("ray", "envpool")


def make_collector(env, ppo: PPO, num_envs: int, *, backend: str = "auto", seed: int,
                   rollout: str = "steps", num_steps: int = 64,
                   episode_step_cap: int = EPISODE_STEP_CAP, non_finite_rewards: str = "raise",
                   ray_workers: int | None = None, ray_address: str | None = None,
                   in_child_process: bool = False, made_in: str | None = None) -> Collector:
    """The collector for `backend` (one of COLLECTOR_BACKENDS): "ray" (Ray actors;
    `ray_workers`, `ray_address`), "envpool" (EnvPool's C++ pool, from an env id), or an
    EnvVectorizer backend ("auto", "loop", "native", "subprocess") acting in this process, or,
    with `in_child_process`, in a child process of its own (AsyncTools/process_collector.py).
    `env` is what AsyncPPO takes: an env id, an env, a function making one, or a gymnasium
    VectorEnv. `made_in`: where this runs when not in the caller's process (EnvVectorizer's).

    A local collector's copies are all made before it is returned: one that cannot be made
    raises here (an EnvStepError naming it), after every process started for the copies
    ended."""
    if backend not in COLLECTOR_BACKENDS:
        raise ValueError(f"backend must be one of {COLLECTOR_BACKENDS}, got {backend!r}")
    if in_child_process:
        if backend == "ray" or isinstance(env, gym.vector.VectorEnv):
            raise ValueError("in_child_process: Ray's copies already step in other processes, "
                             "and a VectorEnv passed as env cannot be sent to one")
        from .process_collector import ProcessCollector
        return ProcessCollector(env, ppo, num_envs, seed=seed, backend=backend, rollout=rollout,
                                num_steps=num_steps, episode_step_cap=episode_step_cap,
                                non_finite_rewards=non_finite_rewards)
    if backend == "envpool":
        from .envpool_backend import make_envpool_env  # EnvPool is imported only when asked for
        vectorizer = EnvVectorizer(make_envpool_env(env, num_envs, seed), num_envs, seed=seed,
                                   backend="auto", non_finite_rewards=non_finite_rewards)
        return _started(vectorizer, rollout=rollout, num_steps=num_steps,
                        episode_step_cap=episode_step_cap, seed=seed)
    if isinstance(env, str):
        env = env_source(env)
    if backend == "ray":
        if isinstance(env, gym.vector.VectorEnv):
            raise ValueError("backend='ray' steps env copies on Ray workers; a VectorEnv "
                             "passed as env steps its own copies (leave backend='auto')")
        if non_finite_rewards != "raise":
            raise ValueError(f"non_finite_rewards={non_finite_rewards!r} is for the local "
                             f"backends; the Ray workers always raise on a non-finite reward")
        from .ray_backend import RayCollector  # Ray is imported only when asked for
        collector = RayCollector(env, ppo, num_envs, seed=seed, rollout=rollout,
                                 num_steps=num_steps, num_workers=ray_workers, address=ray_address)
        return collector
    if ray_workers is not None or ray_address is not None:
        raise ValueError(f"ray_workers and ray_address are for backend='ray', not {backend!r}")
    vectorizer = EnvVectorizer(env, num_envs, seed=seed, backend=backend,
                               non_finite_rewards=non_finite_rewards, made_in=made_in)
    return _started(vectorizer, rollout=rollout, num_steps=num_steps,
                    episode_step_cap=episode_step_cap, seed=seed)


def _started(vectorizer: EnvVectorizer, **options) -> LocalCollector:
    """A LocalCollector over `vectorizer` once every copy is made; else the vectorizer is
    closed (its worker processes ended) and the error raised."""
    try:
        vectorizer.check_started()
        return LocalCollector(vectorizer, **options)
    except BaseException:
        vectorizer.close()
        raise
