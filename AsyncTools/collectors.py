"""Collection as one interface: a `Collector` steps `num_envs` copies of an env with a learner's
policy and hands back rounds in one format, whatever steps the copies.

    collector = make_collector(env, ppo, num_envs, backend="auto", seed=0)
    rollout, collected = collector.collect(ppo)   # one round
    ppo.memory.add(rollout)
    if ppo.learn() is not None:
        collector.sync(ppo)                            # the next round acts with the new weights

The modules, each importing only those below it:

- AsyncTools/collector_base.py: the interface, `Collector` and `PendingRound`;
- AsyncTools/acting.py: the policy copy acting away from the learner, and its weights' format;
- AsyncTools/local_collector.py: `LocalCollector`, acting in this process on copies stepped by
  an `EnvVectorizer` (the in-process loop, gymnasium's native vector envs, a given VectorEnv,
  subprocess workers, EnvPool's C++ pool: AsyncTools/envpool_backend.py), and
  `make_local_collector`;
- AsyncTools/process_collector.py: `ProcessCollector`, a LocalCollector in a child process;
- AsyncTools/ray_backend.py: `RayCollector`, acting on Ray actors;
- this module: `make_collector`, the one factory, the only module that imports the
  implementations; Ray itself is imported only when a RayCollector is built, EnvPool only when
  an EnvPool collector is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym

from PPO import PPO

from .collector_base import BackgroundRound, Collector, PendingRound
from .envs import env_source
from .local_collector import LocalCollector, make_local_collector
from .process_collector import ProcessCollector
from .ray_backend import RayCollector
from .rollout import EPISODE_STEP_CAP
from .vectorizer import BACKENDS

__all__ = [
    "Collector",
    "PendingRound",
    "BackgroundRound",
    "LocalCollector",
    "ProcessCollector",
    "RayCollector",
    "COLLECTOR_BACKENDS",
    "make_collector",
]

COLLECTOR_BACKENDS = BACKENDS + ("ray", "envpool")


def make_collector(
    env: str | gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv,
    ppo: PPO,
    num_envs: int,
    *,
    backend: str = "auto",
    seed: int,
    rollout: str = "steps",
    num_steps: int = 64,
    episode_step_cap: int = EPISODE_STEP_CAP,
    non_finite_rewards: str = "raise",
    ray_workers: int | None = None,
    ray_address: str | None = None,
    in_child_process: bool = False,
    made_in: str | None = None,
) -> Collector:
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
    local_options: dict[str, Any] = dict(
        seed=seed,
        rollout=rollout,
        num_steps=num_steps,
        episode_step_cap=episode_step_cap,
        non_finite_rewards=non_finite_rewards,
    )
    if in_child_process:
        return ProcessCollector(
            _for_child_process(env, backend), ppo, num_envs, backend=backend, **local_options
        )
    if backend == "envpool":
        return make_local_collector(env, num_envs, backend=backend, **local_options)
    if isinstance(env, str):
        env = env_source(env)
    if backend == "ray":
        return _make_ray_collector(
            env,
            ppo,
            num_envs,
            seed=seed,
            rollout=rollout,
            num_steps=num_steps,
            non_finite_rewards=non_finite_rewards,
            ray_workers=ray_workers,
            ray_address=ray_address,
        )
    if ray_workers is not None or ray_address is not None:
        raise ValueError(f"ray_workers and ray_address are for backend='ray', not {backend!r}")
    return make_local_collector(env, num_envs, backend=backend, made_in=made_in, **local_options)


def _for_child_process(
    env: str | gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv, backend: str
) -> str | gym.Env | Callable[[], gym.Env]:
    """make_collector's in_child_process: `env`, checked; what cannot be moved into a child
    process raises."""
    if backend == "ray" or isinstance(env, gym.vector.VectorEnv):
        raise ValueError(
            "in_child_process: Ray's copies already step in other processes, "
            "and a VectorEnv passed as env cannot be sent to one"
        )
    return env


def _make_ray_collector(
    env: gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv,
    ppo: PPO,
    num_envs: int,
    *,
    seed: int,
    rollout: str,
    num_steps: int,
    non_finite_rewards: str,
    ray_workers: int | None,
    ray_address: str | None,
) -> Collector:
    """make_collector's backend="ray": the checks that are Ray's own, then the RayCollector."""
    if isinstance(env, gym.vector.VectorEnv):
        raise ValueError(
            "backend='ray' steps env copies on Ray workers; a VectorEnv "
            "passed as env steps its own copies (leave backend='auto')"
        )
    if non_finite_rewards != "raise":
        raise ValueError(
            f"non_finite_rewards={non_finite_rewards!r} is for the local "
            f"backends; the Ray workers always raise on a non-finite reward"
        )
    return RayCollector(
        env,
        ppo,
        num_envs,
        seed=seed,
        rollout=rollout,
        num_steps=num_steps,
        num_workers=ray_workers,
        address=ray_address,
    )
