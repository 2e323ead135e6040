"""The collection interface: `Collector` (what every way of stepping the copies offers) and
`PendingRound` (a round under way), with `BackgroundRound`, the in-process default.

The bottom of the collection modules: it imports none of them. The implementations import it
(AsyncTools/local_collector.py, process_collector.py, ray_backend.py), and
AsyncTools/collectors.py, the factory, imports them all.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from PPO import PPO
from PPO.Memory import Rollout

from .rollout import EpisodeRound
from .vectorizer import EnvVectorizer


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

    def __init__(self, call: Callable[..., tuple[Rollout | None, EpisodeRound]], *args: Any):
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(call, *args), name="ppo-collector", daemon=True
        )
        self._thread.start()

    def _run(self, call: Callable[..., tuple[Rollout | None, EpisodeRound]], *args: Any) -> None:
        try:
            self._value = call(*args)
        except BaseException as error:  # raised again in the caller's thread by result()
            self._error = error

    def wait(self) -> None:
        """Returns once the call has returned or raised."""
        self._thread.join()

    def result(self) -> tuple[Rollout | None, EpisodeRound]:
        """Waits, then returns the call's value, or raises its error."""
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
    def env(self) -> EnvVectorizer | Collector:
        """What steps the copies: an EnvVectorizer, or the collector itself where the copies
        step in other processes (a ProcessCollector, a RayCollector)."""

    @abstractmethod
    def collect(
        self, ppo: PPO, should_stop: Callable[[], bool] | None = None
    ) -> tuple[Rollout | None, EpisodeRound]:
        """One round acted by `ppo`'s policy as last synced (None for a round without steps).
        `should_stop()` turning True cuts an episodes round at the step under way (where the
        collector can)."""

    def start_collect(self, ppo: PPO, should_stop: Callable[[], bool] | None = None) -> PendingRound:
        """Starts `collect(ppo, should_stop)` and returns at once (here: in a background thread;
        collectors acting in other processes start the round there). Until its `result()`,
        nothing else may use this collector, nor, for an in-process one, `ppo`."""
        return BackgroundRound(self.collect, ppo, should_stop)

    def sync(self, ppo: PPO) -> None:  # noqa: B027 (an optional hook, a no-op unless overridden)
        """Makes `ppo`'s current weights the ones the next round acts with (in-process
        collectors act with `ppo` itself: nothing to do)."""

    @abstractmethod
    def random_observations(self, num_steps: int) -> np.ndarray:
        """Observations of `num_steps` uniformly random steps of every copy (RND's warm-up)."""

    @abstractmethod
    def close(self) -> None:
        """Closes the copies and any workers; safe to call twice."""
