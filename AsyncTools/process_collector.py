"""A collector in its own process: the env copies and a copy of the policy that acts on them
live in a child process, so that collection and learning run on different cores
(`AsyncPPO(..., overlap=True)` with a local backend).

The child builds the same `LocalCollector` that `make_local_collector` builds in this process
(same backend, same seeds: the same rounds), acts with a CPU copy of the policy
(AsyncTools/acting.py: `acting_copy` with the learner's seed, so it samples from the learner's
own stream) whose weights (`weights_of`) arrive with the first `collect` call after a `sync`, and
answers every call with its result or its error; an answer to a call that stepped the copies
also carries the child's count of non-finite rewards replaced by 0.0
(`non_finite_rewards="zero"`), which `non_finite_rewards_replaced` shows here. It ignores
SIGINT and SIGTERM (which a terminal's Ctrl-C and a scheduler send to the whole process group):
they are the parent's to handle (the run stops after the round under way, saves, then ends the
child), so an overlapped run stops as a synchronous one does (exit 130 or 143 from train.py).
The child also ends when it finds the parent's end of the pipe closed (the parent killed).
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import sys
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from PPO import PPO
from PPO.Memory import Rollout

from .acting import Weights, acting_copy, load_into, weights_of
from .collector_base import Collector, PendingRound
from .envs import picklable_env_factory
from .local_collector import make_local_collector
from .rollout import EpisodeRound
from .vectorizer import EnvStepError, make_named, picklable_error

HERE = "the collector process"  # how its errors name where the copies were to be made
START_TIMEOUT = 300.0  # seconds for the child to import torch and build its env copies
# Linux: fork (as torch's DataLoader workers do; the child acts on the CPU only), so a script
# need not guard its main code; elsewhere spawn, which re-imports the main module: there a
# script using overlap=True needs `if __name__ == "__main__":`.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def portable_env(env: str | gym.Env | Callable[[], gym.Env]) -> tuple[str, Any]:
    """How the child re-makes `env`: ("id", env id), ("instance", a function making one env
    that the collector copies, as it copies an env passed here) or ("factory", a function it
    calls for every copy). An env is re-made from its spec, a function sent as it is. Where
    that cannot cross to another process (an env without a spec, a lambda), the child, forked,
    starts with a copy of this process's memory and takes `env` itself; elsewhere (spawn) a
    TypeError says what to pass instead."""
    if isinstance(env, str):
        return "id", env
    kind = "instance" if isinstance(env, gym.Env) else "factory"
    try:
        return kind, picklable_env_factory(env, "the collector process")
    except TypeError:
        if START_METHOD != "fork":
            raise
    return kind, functools.partial(itself, cast(gym.Env, env)) if kind == "instance" else env


def itself(env: gym.Env) -> gym.Env:
    """`env` (the forked child's copy of it): what an "instance" source gives there."""
    return env


class ProcessCollector(Collector):
    """A `LocalCollector` for `env` (see `make_collector` for the options) running in a child
    process; it acts with the weights of the last `sync(ppo)`. `non_finite_rewards_replaced`
    counts the non-finite rewards the child's copies replaced by 0.0 (`non_finite_rewards=
    "zero"`) up to the last round answered, as the EnvVectorizer of a local run counts them."""

    acts_in_this_process = False

    def __init__(
        self,
        env: str | gym.Env | Callable[[], gym.Env],
        ppo: PPO,
        num_envs: int,
        *,
        seed: int,
        **collector_options: Any,
    ):
        context = multiprocessing.get_context(START_METHOD)
        self._conn, child_end = context.Pipe()
        # not a daemon, so that it may start subprocess workers of its own; ended by close(),
        # at exit, or when it finds this end of the pipe closed
        self._process = context.Process(  # type: ignore[attr-defined]  # BaseContext's stub lacks it
            target=serve,
            name="ppo-collector",
            daemon=False,
            args=(child_end, portable_env(env), num_envs, seed, collector_options, ppo.config, ppo.seed),
        )
        self._process.start()
        child_end.close()
        self._finalizer = weakref.finalize(self, shut_down, self._conn, self._process)
        self._synced = False
        self._new_weights: Weights | None = None  # not yet sent to the child
        self._replaced = 0  # the child's non_finite_rewards_replaced, as of its last answer
        self.num_envs = num_envs
        try:
            spaces = self.receive("ready", timeout=START_TIMEOUT)  # the child speaks first
        except BaseException:
            self.close()
            raise
        self.observation_space, self.action_space = spaces

    @property
    def env(self) -> ProcessCollector:
        """This collector: the child steps the copies, and this object speaks for them."""
        return self

    @property
    def non_finite_rewards_replaced(self) -> int:
        """Non-finite rewards the child replaced by 0.0, up to the last round answered."""
        return self._replaced

    def sync(self, ppo: PPO) -> None:
        """The next round acts with `ppo`'s current weights (sent with the next `collect`)."""
        self._new_weights = weights_of(ppo)
        self._synced = True

    def collect(
        self, ppo: PPO | None = None, should_stop: Callable[[], bool] | None = None
    ) -> tuple[Rollout | None, EpisodeRound]:
        """One round in the child with the weights of the last `sync`. An episodes round is
        not cut by `should_stop` (the child cannot ask the caller)."""
        return self.start_collect(ppo, should_stop).result()

    def start_collect(
        self, ppo: PPO | None = None, should_stop: Callable[[], bool] | None = None
    ) -> ChildRound:
        """Sends the child the order for one round and returns at once: no thread of this
        process works while the child collects."""
        if not self._synced:
            raise RuntimeError("sync(ppo) must be called before the first collect()")
        weights, self._new_weights = self._new_weights, None  # sent once; the child keeps them
        self._send("collect", weights)
        return ChildRound(self)

    def random_observations(self, num_steps: int) -> np.ndarray:
        """Observations of `num_steps` uniformly random steps of every copy, in the child."""
        self._send("random_observations", num_steps)
        return self.receive_stepped("random_observations")

    def receive_stepped(self, command: str) -> Any:
        """The answer to `command`, one that stepped the copies: its value (or its error raised
        here); the child's count of replaced rewards, which comes with it, is kept."""
        value, self._replaced = self.receive(command)
        return value

    def receive(self, command: str, timeout: float | None = None) -> Any:
        """The child's answer to `command`: its value, or its error raised here."""
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the collector process did not answer {command!r} within {timeout:g} s")
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError) as error:
            raise EnvStepError(
                f"the collector process died during {command!r} (exit code "
                f"{self._exit_code()}): a crash in an env copy or in the "
                f"process itself"
            ) from error
        if status == "error":
            child_error, cause = value  # the child's error, and its cause (pickling drops the chain)
            if cause is not None:
                raise child_error from cause
            raise child_error
        return value

    def _send(self, command: str, payload: Any) -> None:
        try:
            self._conn.send((command, payload))
        except (BrokenPipeError, OSError) as error:
            raise EnvStepError(f"the collector process is gone (exit code {self._exit_code()})") from error

    def _exit_code(self) -> int | None:
        self._process.join(timeout=1.0)
        return self._process.exitcode

    def close(self) -> None:
        """Closes the child's env copies and ends it; safe to call twice."""
        self._finalizer()


class ChildRound(PendingRound):
    """A round the collector process is collecting."""

    def __init__(self, collector: ProcessCollector):
        self._collector = collector
        self._answer: Any = None
        self._received = False

    def wait(self) -> None:
        """Returns once the child has answered (with the round or an error)."""
        if not self._received:
            self._received = True
            try:
                self._answer = ("ok", self._collector.receive_stepped("collect"))
            except BaseException as error:
                self._answer = ("error", error)

    def result(self) -> tuple[Rollout | None, EpisodeRound]:
        """Waits, then returns the child's round, or raises its error."""
        self.wait()
        status, value = self._answer
        if status == "error":
            raise value
        return value


def shut_down(conn: Connection, process: BaseProcess) -> None:
    """Asks the child to close its copies and end, ending it by force after 10 s."""
    if process.is_alive():
        try:
            conn.send(("close", None))
            conn.poll(10.0)
        except (BrokenPipeError, OSError):
            pass
        process.join(timeout=10.0)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5.0)
        if process.is_alive():
            process.kill()
            process.join()
    conn.close()


def serve(
    conn: Connection,
    env: tuple[str, Any],
    num_envs: int,
    seed: int,
    collector_options: dict,
    ppo_config: dict,
    learner_seed: int,
) -> None:
    """The child's loop: builds the collector and the acting policy, then answers calls."""
    # Ctrl-C and a scheduler's SIGTERM reach the whole process group: they are the parent's to
    # handle (it stops after the round under way, saves, then ends this process)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)  # the learner's process has the other cores
    collector = None
    try:
        kind, source = env
        made = make_named(source, 0, num_envs, HERE) if kind == "instance" else source
        # every copy is made (and any worker of its own started) before it answers
        collector = make_local_collector(made, num_envs, seed=seed, made_in=HERE, **collector_options)
        acting = acting_copy(ppo_config, learner_seed)  # it acts for all the copies, from 0
        conn.send(("ok", (collector.observation_space, collector.action_space)))
    except BaseException as error:
        if collector is not None:
            collector.close()  # no worker of its own outlives a failed start
        conn.send(("error", _portable_error(error)))
        return
    while True:
        try:
            command, payload = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            collector.close()
            return
        try:
            if command == "close":
                collector.close()
                conn.send(("ok", None))
                return
            if command == "collect":
                if payload is not None:  # new weights (the first round's always are)
                    load_into(acting, payload)
                value: Any = collector.collect(acting)
            else:
                value = collector.random_observations(payload)
            conn.send(("ok", (value, collector.env.non_finite_rewards_replaced)))
        except BaseException as error:
            conn.send(("error", _portable_error(error)))


def _portable_error(error: BaseException) -> tuple[BaseException, BaseException | None]:
    """(`error`, its `__cause__`) as they survive pickling, which drops the chain (the parent
    raises the one from the other): each itself, or else, for `error`, a RuntimeError carrying
    its type and message (None for a cause that does not pickle)."""
    cause = error.__cause__
    portable = picklable_error(error) or RuntimeError(
        f"{type(error).__name__} in the collector process: {error}"
    )
    return portable, None if cause is None else picklable_error(cause)
