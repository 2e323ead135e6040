"""The collector that acts in the process it lives in: `LocalCollector`, on the copies of an
`EnvVectorizer` (the in-process loop, gymnasium's native vector envs, a given VectorEnv,
subprocess workers, EnvPool's C++ pool: AsyncTools/envpool_backend.py), and
`make_local_collector`, which builds one for those backends.

`make_collector` (AsyncTools/collectors.py) builds it here; the child of a ProcessCollector
(process_collector.py) builds its own with `make_local_collector`, and every Ray worker
(ray_backend.py) steps its slice of the copies with one.
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from PPO import PPO
from PPO.Memory import Rollout

from .collector_base import Collector
from .envpool_backend import make_envpool_env
from .envs import env_source
from .rollout import (
    EPISODE_STEP_CAP,
    EpisodeRound,
    FixedHorizonLoop,
    check_rollout,
    collect_episodes,
    random_observations,
)
from .vec_memory import VecMemory
from .vectorizer import BACKENDS, EnvVectorizer

LOCAL_BACKENDS = BACKENDS + ("envpool",)


class LocalCollector(Collector):
    """Acts in this process with the PPO it is given (`sample_actions`: sampled, or the most
    likely action with `deterministic=True`, and their log-probs) on the copies of
    `vectorizer`; `seed` seeds the random warm-up."""

    def __init__(
        self,
        vectorizer: EnvVectorizer,
        *,
        rollout: str = "steps",
        num_steps: int = 64,
        episode_step_cap: int = EPISODE_STEP_CAP,
        seed: int | None = None,
        deterministic: bool = False,
    ):
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
        """The EnvVectorizer that steps the copies."""
        return self.vectorizer

    def collect(
        self, ppo: PPO, should_stop: Callable[[], bool] | None = None
    ) -> tuple[Rollout | None, EpisodeRound]:
        """One round acted by `ppo` itself, in this process (see `Collector.collect`);
        `should_stop()` turning True cuts an episodes round at the step under way."""

        def act(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """`ppo`'s actions for the copies' states, and their log-probs."""
            return ppo.sample_actions(states, deterministic=self.deterministic)

        if self.rollout == "episodes":
            collected = collect_episodes(
                self.vectorizer,
                self._buffer,
                act,
                episode_step_cap=self.episode_step_cap,
                should_stop=should_stop,
            )
        else:
            collected = self._horizon.collect(self._buffer, act, self.num_steps)
        return self._buffer.take(), collected

    def random_observations(self, num_steps: int) -> np.ndarray:
        """Observations of `num_steps` uniformly random steps of every copy (RND's warm-up)."""
        return random_observations(self.vectorizer, num_steps, self.seed)

    def close(self) -> None:
        """Closes the copies (and their worker processes)."""
        self.vectorizer.close()


def make_local_collector(
    env: str | gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv,
    num_envs: int,
    *,
    backend: str = "auto",
    seed: int,
    rollout: str = "steps",
    num_steps: int = 64,
    episode_step_cap: int = EPISODE_STEP_CAP,
    non_finite_rewards: str = "raise",
    made_in: str | None = None,
) -> LocalCollector:
    """A LocalCollector for `backend`, one of LOCAL_BACKENDS: "envpool" (EnvPool's C++ pool,
    from an env id; EnvPool itself is imported only then) or an EnvVectorizer backend ("auto",
    "loop", "native", "subprocess"). `env`, the options and `made_in` as for `make_collector`.

    Every copy is made before it is returned: one that cannot be made raises here (an
    EnvStepError naming it), after every process started for the copies ended."""
    if backend not in LOCAL_BACKENDS:
        raise ValueError(f"backend must be one of {LOCAL_BACKENDS}, got {backend!r}")
    if backend == "envpool":
        vectorizer = EnvVectorizer(
            make_envpool_env(env, num_envs, seed),
            num_envs,
            seed=seed,
            backend="auto",
            non_finite_rewards=non_finite_rewards,
        )
    else:
        vectorizer = EnvVectorizer(
            env_source(env) if isinstance(env, str) else env,
            num_envs,
            seed=seed,
            backend=backend,
            non_finite_rewards=non_finite_rewards,
            made_in=made_in,
        )
    try:
        vectorizer.check_started()
        return LocalCollector(
            vectorizer, rollout=rollout, num_steps=num_steps, episode_step_cap=episode_step_cap, seed=seed
        )
    except BaseException:
        vectorizer.close()  # its worker processes end before the error is raised
        raise
