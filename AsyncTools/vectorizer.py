"""EnvVectorizer: N independent copies of one gym env stepped in lockstep, on one of three
backends: an in-process loop, gymnasium's native vector env, or subprocess workers."""

from __future__ import annotations

import atexit
import contextlib
import copy
import functools
import multiprocessing.connection
import os
import pickle
import re
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.process import BaseProcess
from typing import Any, NoReturn, SupportsFloat, TypeGuard, cast

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from numpy.typing import ArrayLike

from PPO.checks import check_non_negative_int, check_positive_int

from .episodes import game_returns
from .vec_memory import as_state_array

BACKENDS = ("auto", "loop", "native", "subprocess")
NON_FINITE_REWARD_CHOICES = ("raise", "zero")

EnvSource = gym.Env | Callable[[], gym.Env]  # an env (copied) or a function making one (called)
# What a backend's `reset` or `step` returns as the copies' observations (a list of one per copy,
# or one array; EnvVectorizer checks and stacks them), and its `step`'s results for the copies
# stepped: (observations, rewards, terminated, truncated, infos), the rewards a list of one per
# copy or an array, the infos a list of per-copy dicts (loop) or gymnasium's dict of arrays.
Observations = Sequence[Any] | np.ndarray
Infos = list[dict[str, Any]] | dict[str, Any]
BackendStep = tuple[Observations, Sequence[Any] | np.ndarray, np.ndarray, np.ndarray, Infos]
Array = np.ndarray
# EnvVectorizer.step's (next_states, rewards, terminated, truncated, infos) of the copies stepped
StepResults = tuple[Array, Array, Array, Array, Infos]


class EnvStepError(RuntimeError):
    """An env copy raised inside `reset` or `step`; `env_index` says which. In-process, the
    original exception is `__cause__`; from a subprocess worker, its type and message are in
    the message."""

    def __init__(self, message: str | BaseException, env_index: int | None = None):
        super().__init__(str(message))
        if env_index is None:
            found = re.search(r"env copy (\d+)", str(message))
            env_index = int(found.group(1)) if found else None
        self.env_index = env_index


class EnvOutputError(EnvStepError, ValueError):
    """An env copy returned something unusable: an observation of the wrong shape or not
    finite, a reward that is not a scalar or (by default) not finite. `env_index` says which."""


def _copies(indices: Sequence[int], num_envs: int) -> str:
    """'env copy 2 of 8', or 'env copies [2, 5] of 8': how every error names the copies
    (EnvStepError reads the index back from 'env copy N')."""
    if len(indices) == 1:
        return f"env copy {indices[0]} of {num_envs}"
    return f"env copies {list(indices)} of {num_envs}"


def _wrong_observation_shape(
    index: int, num_envs: int, method: str, shape: Any, space: gym.Space
) -> EnvOutputError:
    return EnvOutputError(
        f"{_copies([index], num_envs)} returned an observation of shape "
        f"{shape} from {method}(), but its observation_space {space} has shape "
        f"{space.shape}",
        index,
    )


def _wrong_reward(index: int, num_envs: int, what: str) -> EnvOutputError:
    return EnvOutputError(
        f"{_copies([index], num_envs)} returned {what} from step(); a reward must be a scalar number", index
    )


def _shape_of(value: Any) -> Any:
    """np.shape(value), or 'ragged' where the value is a nested sequence of uneven lengths."""
    try:
        return np.shape(value)
    except ValueError:
        return "ragged"


def _reward_problem(reward: Any) -> str | None:
    """What is wrong with one copy's reward ('a reward of shape (1,)'), or None if it is a
    scalar number."""
    try:
        value = np.asarray(reward, dtype=np.float32)
    except (TypeError, ValueError):
        return f"a reward of type {type(reward).__name__}"
    return None if value.shape == () else f"a reward of shape {value.shape}"


def _observation_shape_error(
    states: Any, indices: np.ndarray, method: str, num_envs: int, space: gym.Space, backend_name: str
) -> EnvOutputError:
    """The error for observations of copies `indices` (from `method`) that do not stack to
    `space`'s shape: it names the first copy whose observation has another shape, else the
    backend (`backend_name`) that returned them."""
    for row, state in enumerate(states):
        if _shape_of(state) != space.shape:
            return _wrong_observation_shape(int(indices[row]), num_envs, method, _shape_of(state), space)
    return EnvOutputError(
        f"the {backend_name} returned observations of shape "
        f"{_shape_of(states)} from {method}() for {len(indices)} env "
        f"copies of observation_space {space}"
    )


def _reward_error(rewards: Any, indices: np.ndarray, num_envs: int, backend_name: str) -> EnvOutputError:
    """The error for rewards of copies `indices` that are not one scalar each: it names the
    first copy whose reward is not a scalar number, else the backend that returned them."""
    for row, reward in enumerate(rewards):
        problem = _reward_problem(reward)
        if problem is not None:
            return _wrong_reward(int(indices[row]), num_envs, problem)
    return EnvOutputError(
        f"the {backend_name} returned rewards of shape {_shape_of(rewards)} for {len(indices)} env copies"
    )


def _call_named(env: gym.Env, index: int, num_envs: int, method: str, *args: Any, **kwargs: Any) -> Any:
    """env.method(*args, **kwargs), with any exception re-raised as an EnvStepError naming the copy."""
    try:
        return getattr(env, method)(*args, **kwargs)
    except Exception as error:
        raise EnvStepError(
            f"{_copies([index], num_envs)} raised {type(error).__name__} in {method}(): {error}", index
        ) from error


class EpisodeOverFlags(np.ndarray):
    """A bool array, True where that env's episode is over (the original's `envs_active`).

    It remembers the EnvVectorizer it describes, so that `utils.buffer_append` can read the
    last step's termination flags and final observations from it; arrays derived from it
    (copies, `|`, `~`) remember it too.
    """

    vectorizer: EnvVectorizer | None = None

    def __array_finalize__(self, obj: Any) -> None:
        self.vectorizer = getattr(obj, "vectorizer", None)


# ------------------------------------------------------------------ backends
# Every backend steps with gymnasium's "next step" autoreset: a copy whose episode ended on the
# previous step is reset instead of stepped, and that row reports reward 0 and no end.


class LoopBackend:
    """The copies as Python objects in this process; can step any subset of them."""

    steps_subsets = True

    def __init__(self, envs: list[gym.Env]):
        self.envs = envs
        self.num_envs = len(envs)
        self._ended = np.zeros(self.num_envs, dtype=bool)

    def _call(self, index: int, method: str, *args: Any, **kwargs: Any) -> Any:
        return _call_named(self.envs[index], index, self.num_envs, method, *args, **kwargs)

    def reset(self, seeds: list[int] | None) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
        """Resets every copy, copy i with `seeds[i]`; returns (observations, infos), one per copy."""
        self._ended[:] = False
        results = [
            self._call(i, "reset", seed=None if seeds is None else seeds[i]) for i in range(self.num_envs)
        ]
        return [obs for obs, _ in results], [info for _, info in results]

    def step(self, actions: np.ndarray, indices: np.ndarray) -> BackendStep:
        """Steps copies `indices` with their rows of `actions` (one per copy, all N); a copy whose
        episode ended on its last step is reset instead. Returns their results, one per copy."""
        observations, rewards, terminated, truncated, infos = [], [], [], [], []
        chosen = actions[indices]
        # Plain ints for discrete actions: Discrete.contains takes its fast path for them.
        for i, action in zip(indices.tolist(), chosen.tolist() if chosen.ndim == 1 else chosen, strict=True):
            if self._ended[i]:
                obs, info = self._call(i, "reset")
                reward, term, trunc = 0.0, False, False
            else:
                obs, reward, term, trunc, info = self._call(i, "step", action)
            observations.append(obs)
            rewards.append(reward)
            infos.append(info)
            terminated.append(term)
            truncated.append(trunc)
        terminated_flags, truncated_flags = np.array(terminated, dtype=bool), np.array(truncated, dtype=bool)
        self._ended[indices] = terminated_flags | truncated_flags
        return observations, rewards, terminated_flags, truncated_flags, infos

    def close(self) -> None:
        """Closes every copy."""
        for env in self.envs:
            env.close()


class VectorEnvBackend:
    """A gymnasium VectorEnv (native vectorised, or AsyncVectorEnv workers); steps all copies."""

    steps_subsets = False

    def __init__(self, vector_env: gym.vector.VectorEnv, seed_all_from_first: bool):
        self.vector_env = vector_env
        self.num_envs = vector_env.num_envs
        self.seed_all_from_first = seed_all_from_first

    def reset(self, seeds: list[int] | None) -> tuple[Observations, dict[str, Any]]:
        """Resets every copy: one seed each, or the first seed for all (`seed_all_from_first`)."""
        seed = seeds if seeds is None or not self.seed_all_from_first else seeds[0]
        return self.vector_env.reset(seed=seed)  # type: ignore[arg-type]  # a list: one seed per copy

    def step(self, actions: np.ndarray, indices: np.ndarray) -> BackendStep:
        """Steps every copy with `actions` (all N); returns the results of copies `indices`."""
        obs, rewards, terminated, truncated, infos = self.vector_env.step(actions)
        if len(indices) == self.num_envs:
            return obs, rewards, terminated, truncated, infos
        return obs[indices], rewards[indices], terminated[indices], truncated[indices], infos

    def close(self) -> None:
        """Closes the VectorEnv."""
        self.vector_env.close()


class SubprocessBackend(VectorEnvBackend):
    """gymnasium's AsyncVectorEnv: one worker process per copy.

    A worker that dies (killed, out of memory) makes `reset`/`step` raise an EnvStepError
    naming its copy and how it died, instead of the bare EOFError or BrokenPipeError of its
    pipe; every later call raises it again. A copy whose constructor raised in its worker is
    found by `check_started` (at the latest by the first `reset`): it ends every worker, then
    raises an EnvStepError naming the copy, the env's error as its cause. `close` returns within
    a few seconds whatever state the workers are in; it also runs at interpreter exit for a
    backend left open, since the workers ignore the SIGTERM with which multiprocessing would
    stop them there.
    """

    vector_env: gym.vector.AsyncVectorEnv  # for type checkers: its pipes, processes and `call`

    def __init__(self, vector_env: gym.vector.AsyncVectorEnv):
        super().__init__(vector_env, seed_all_from_first=False)
        self._failure: EnvStepError | None = None  # a worker's death, or copies not made
        self._started = False  # every copy was made
        atexit.register(self.close)

    def check_started(self) -> None:
        """Asks the workers, once, whether their env copies were made. If one was not (or a
        worker died meanwhile), ends every worker and raises an EnvStepError naming the first
        such copy, the env's own error as its cause where it could cross from the worker;
        every later call raises it again."""
        if self._started:
            return
        try:
            with self._naming_dead_workers():
                reports = self.vector_env.call(START_REPORT)
        except BaseException:
            self.close()
            raise
        self._started = True
        failed = [(index, report) for index, report in enumerate(reports) if report is not None]
        if not failed:
            return
        index, (error, cause) = failed[0]
        first, _, rest = str(error).partition("\n")
        if len(failed) > 1:
            others = _copies([other for other, _ in failed[1:]], self.num_envs)
            first += f"\n({others} could not be made either)"
        self._failure = EnvStepError(f"{first}\n{rest}" if rest else first, index)
        self.close()
        raise self._failure from cause

    def reset(self, seeds: list[int] | None) -> tuple[Observations, dict[str, Any]]:
        """VectorEnvBackend's, after `check_started`; a dead worker raises an EnvStepError."""
        self.check_started()
        with self._naming_dead_workers():
            return super().reset(seeds)

    def step(self, actions: np.ndarray, indices: np.ndarray) -> BackendStep:
        """VectorEnvBackend's; a dead worker raises an EnvStepError naming its copy."""
        with self._naming_dead_workers():
            return super().step(actions, indices)

    @contextlib.contextmanager
    def _naming_dead_workers(self) -> Iterator[None]:
        """Turns the pipe error that a dead worker causes into an EnvStepError naming it."""
        if self._failure is not None:
            raise EnvStepError(str(self._failure), self._failure.env_index) from self._failure.__cause__
        try:
            yield
        except (EOFError, OSError) as error:  # OSError: BrokenPipeError, ConnectionResetError
            death = _worker_death_error(self.vector_env.processes)
            if death is None:
                raise
            self._failure = death
            raise death from error

    def close(self) -> None:
        """Asks the workers to close; stops the ones that do not within WORKER_CLOSE_SECONDS.
        Safe to call again, and after an error or a KeyboardInterrupt in `reset`/`step`."""
        if self.vector_env.closed:
            return
        _stop_workers(self.vector_env.parent_pipes, self.vector_env.processes)
        self.vector_env.closed = True  # its own close would wait on the workers without a bound
        atexit.unregister(self.close)


WORKER_CLOSE_SECONDS = 3.0  # how long `close` waits for the workers to finish on their own
WORKER_STOP_SECONDS = 1.0  # how long it then waits after terminating, and after killing, them


def _dead_workers(processes: Sequence[multiprocessing.Process], wait_seconds: float = 2.0) -> list[int]:
    """The indices of the worker processes that have ended, waiting up to `wait_seconds` for
    one to (a pipe can report the end a moment before the process does); the first is reaped,
    so that its exit code is known."""
    ended = multiprocessing.connection.wait([p.sentinel for p in processes], wait_seconds)
    dead = [i for i, process in enumerate(processes) if process.sentinel in ended]
    if dead:
        processes[dead[0]].join(wait_seconds)
    return dead


def _worker_death_error(
    processes: Sequence[multiprocessing.Process], wait_seconds: float = 2.0
) -> EnvStepError | None:
    """An EnvStepError naming the first worker process that has ended, or None if all still
    run after `wait_seconds`."""
    dead = _dead_workers(processes, wait_seconds)
    if not dead:
        return None
    message = (
        f"{_copies(dead[:1], len(processes))}: its worker process died "
        f"({_describe_exit(processes[dead[0]].exitcode)})"
    )
    if len(dead) > 1:
        message += f"; the workers of copies {dead[1:]} died too"
    return EnvStepError(message, dead[0])


def _describe_exit(exitcode: int | None) -> str:
    """'killed by signal 9, SIGKILL', 'exit code 1'."""
    if exitcode is None:
        return "exit code unknown"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        return f"killed by signal {-exitcode}, {signal.Signals(-exitcode).name}"
    except ValueError:
        return f"killed by signal {-exitcode}"


def _stop_workers(pipes: Sequence[Any], processes: Sequence[BaseProcess]) -> None:
    """Sends every worker gymnasium's 'close' command and waits WORKER_CLOSE_SECONDS for them
    to exit; terminates, then kills, the ones still running; closes the pipes. A worker busy
    with a step sent before (a KeyboardInterrupt left it unread) finishes it, then closes."""
    for pipe in pipes:
        if pipe is not None and not pipe.closed:
            try:
                pipe.send(("close", None))
            except OSError:  # that worker is gone already
                pass
    _join_all(processes, WORKER_CLOSE_SECONDS)
    # The workers ignore SIGTERM (see _WorkerEnvFactory), so `terminate` stops only those
    # whose env re-enabled it; `kill` stops the rest.
    for stop in (multiprocessing.Process.terminate, multiprocessing.Process.kill):
        running = [process for process in processes if process.is_alive()]
        for process in running:
            stop(process)
        _join_all(running, WORKER_STOP_SECONDS)
    for pipe in pipes:
        if pipe is not None:
            pipe.close()


def _join_all(processes: Sequence[BaseProcess], seconds: float) -> None:
    """Joins the processes, waiting at most `seconds` for all of them together."""
    deadline = time.monotonic() + seconds
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))


class _NameErrors(gym.Wrapper):
    """Runs inside a subprocess worker: re-raises an env's exception with the copy's index, and
    checks the shapes of its observations and rewards (the main process cannot: observations
    arrive there already written into the shared batch array)."""

    def __init__(self, env: gym.Env, index: int, num_envs: int):
        super().__init__(env)
        self.index, self.copies = index, num_envs

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        result = _call_named(self.env, self.index, self.copies, "step", action)
        self._check_observation(result[0], "step")
        problem = _reward_problem(result[1])
        if problem is not None:
            raise _wrong_reward(self.index, self.copies, problem)
        return result

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        result = _call_named(self.env, self.index, self.copies, "reset", **kwargs)
        self._check_observation(result[0], "reset")
        return result

    def copy_start_failure(self) -> None:
        """Its env copy was made (see `_FailedEnv.copy_start_failure`)."""
        return None

    def _check_observation(self, observation: Any, method: str) -> None:
        space = self.observation_space
        if space.shape is not None and _shape_of(observation) != space.shape:
            raise _wrong_observation_shape(self.index, self.copies, method, _shape_of(observation), space)


class _FailedEnv(gym.Env):
    """Stands in, inside a worker, for an env copy whose constructor raised: it has the copy's
    spaces, so the worker starts as usual; `copy_start_failure` (which SubprocessBackend asks
    every worker for before the first reset) reports the error, and `reset` and `step` raise
    it."""

    def __init__(
        self,
        error: EnvStepError,
        cause: BaseException | None,
        observation_space: gym.Space,
        action_space: gym.Space,
    ):
        self.error, self.cause = error, cause
        self.observation_space, self.action_space = observation_space, action_space

    def copy_start_failure(self) -> tuple[EnvStepError, BaseException | None]:
        """(the EnvStepError naming the copy, the constructor's own error where it pickles)."""
        return self.error, self.cause

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> NoReturn:
        raise self.error

    def step(self, action: Any) -> NoReturn:
        raise self.error


START_REPORT = "copy_start_failure"  # what SubprocessBackend asks every worker before starting


class _WorkerEnvFactory:
    """Makes env copy `index` for gymnasium's AsyncVectorEnv (a picklable callable).

    In a worker process it first makes the process ignore SIGINT and SIGTERM: Ctrl-C in a
    terminal signals the whole process group, and only the main process should decide what
    happens then (it closes the workers; a worker also ends when its pipe to the main process
    closes). If the env's constructor raises there, it returns a `_FailedEnv` whose first
    `reset` raises an EnvStepError naming the copy, with the original error and traceback. In
    the main process (gymnasium makes one copy there to read the spaces) it only makes the env.
    """

    def __init__(
        self,
        make_env: Callable[[], gym.Env],
        index: int,
        num_envs: int,
        observation_space: gym.Space,
        action_space: gym.Space,
        made_in: str | None = None,
    ):
        self.make_env, self.index, self.num_envs = make_env, index, num_envs
        self.observation_space, self.action_space = observation_space, action_space
        self.main_pid, self.made_in = os.getpid(), made_in

    def __call__(self) -> gym.Env:
        if os.getpid() == self.main_pid:
            env = make_named(self.make_env, self.index, self.num_envs, self.made_in)
            return _NameErrors(env, self.index, self.num_envs)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            env = self.make_env()
        except Exception as error:
            return _FailedEnv(
                _not_made_error(self.index, self.num_envs, "in its worker process", error),
                picklable_error(error),
                self.observation_space,
                self.action_space,
            )
        return _NameErrors(env, self.index, self.num_envs)


def _not_made_error(index: int, num_envs: int, where: str, error: BaseException) -> EnvStepError:
    """The error of an env copy whose constructor raised `error`: its first line names the copy,
    where it was to be made ('in its worker process', 'in the collector process') and the env's
    exception type and message; the traceback follows (it does not cross processes otherwise)."""
    trace = "".join(traceback.format_exception(error))
    return EnvStepError(
        f"{_copies([index], num_envs)} could not be made {where}: the env "
        f"constructor raised {type(error).__name__}: {error}\n{trace}",
        index,
    )


def make_named(make: Callable[[], gym.Env], index: int, num_envs: int, made_in: str | None) -> gym.Env:
    """make(); with `made_in` (where this process is: 'the collector process', 'ray worker 2'),
    an error it raises becomes an EnvStepError naming copy `index` of `num_envs` and that place,
    the error as its cause."""
    if made_in is None:
        return make()
    try:
        return make()
    except Exception as error:
        raise _not_made_error(index, num_envs, f"in {made_in}", error) from error


def picklable_error(error: BaseException) -> BaseException | None:
    """`error` if it survives pickling (to cross to another process), else None."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return None
    return error


def _start_workers(workers: Sequence[Callable[[], gym.Env]]) -> gym.vector.AsyncVectorEnv:
    """gymnasium's AsyncVectorEnv over `workers`. Where its start fails after worker processes
    started (one died before it answered, copies whose spaces differ), gymnasium leaves them
    running: they are ended here, before the error is raised (a worker that died as an
    EnvStepError)."""
    before = set(multiprocessing.active_children())
    try:
        return gym.vector.AsyncVectorEnv(workers, shared_memory=True)
    except BaseException as error:
        _stop_workers([], [p for p in multiprocessing.active_children() if p not in before])
        if not isinstance(error, (EOFError, OSError)):
            raise
        raise EnvStepError(
            f"a subprocess worker of the {len(workers)} env copies died while "
            f"starting ({type(error).__name__}), before its env could report an "
            f"error: a crash in the env's constructor, or a fork after another "
            f"library started threads in this process; backend='loop' steps the "
            f"copies in this process"
        ) from error


def _copy_env(env: gym.Env) -> gym.Env:
    try:
        return copy.deepcopy(env)
    except Exception as error:
        if env.spec is None:
            raise TypeError(
                "env could not be copied (deepcopy failed) and has no spec to re-make "
                "it from; pass a function that creates the env instead"
            ) from error
        return gym.make(env.spec)


def _check_env_source(env: object) -> None:
    """Raises TypeError unless `env` is a gymnasium.Env or callable."""
    if not isinstance(env, gym.Env) and not callable(env):
        raise TypeError(f"env must be a gymnasium.Env or a function returning one, got {type(env).__name__}")


def new_env(env: gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv) -> gym.Env:
    """A new copy of `env` (an env, copied; a function, called; a VectorEnv, one env made from
    its spec), independent of it."""
    if isinstance(env, gym.vector.VectorEnv):
        if env.spec is None:
            raise TypeError(
                "env: this VectorEnv has no spec to make a single copy from (for "
                "evaluation); pass the env to evaluate with, e.g. evaluate(env=...)"
            )
        return gym.make(env.spec.id)
    _check_env_source(env)
    return _copy_env(env) if isinstance(env, gym.Env) else env()


def _spaces_of(env: EnvSource) -> tuple[gym.Space, gym.Space]:
    """(observation_space, action_space) of `env`, an env or a function making one (called
    once here; the env it makes is closed)."""
    if isinstance(env, gym.Env):
        return env.observation_space, env.action_space
    probe = env()
    try:
        return probe.observation_space, probe.action_space
    finally:
        probe.close()


def _env_factories(env: EnvSource, num_envs: int) -> list[Callable[[], gym.Env]]:
    """A function making each env copy: for an env, the env itself first, then deep copies of
    it; for a function, the function itself."""
    _check_env_source(env)
    if isinstance(env, gym.Env):  # the first copy is the env itself
        return [lambda: env] + [lambda: _copy_env(env) for _ in range(num_envs - 1)]
    return [env] * num_envs


def has_native_vector_env(env: object) -> TypeGuard[gym.Env]:
    """True if `env` is exactly what `gym.make` builds for a spec with a vectorised
    implementation (e.g. CartPole-v1), so gymnasium's native vector env computes the same."""
    if not isinstance(env, gym.Env):
        return False
    spec = getattr(env, "spec", None)
    # Without a time limit in the spec, a vectorised env would apply its own default one.
    if (
        spec is None
        or spec.vector_entry_point is None
        or spec.additional_wrappers
        or spec.max_episode_steps is None
    ):
        return False
    reference = gym.make(spec)
    same_stack = wrapper_types(env) == wrapper_types(reference)
    reference.close()
    return same_stack


def wrapper_types(env: gym.Env) -> list[type]:
    """The types of `env`'s wrappers, outermost first, and of the env inside them."""
    types = [type(env)]
    while isinstance(env, gym.Wrapper):
        env = env.env
        types.append(type(env))
    return types


SUBPROCESS_MIN_STEP_SECONDS = 1e-3  # below this, sending a step to a worker costs more than it saves


def _seconds_per_step(env: gym.Env, probe_steps: int = 11) -> float:
    """The median time of a few random steps of `env` (it is reseeded before training starts):
    a step that the OS preempts on a busy machine does not change the answer."""
    env.reset(seed=0)
    times = []
    for _ in range(probe_steps):
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        times.append(time.perf_counter() - start)
        if terminated or truncated:
            env.reset()
    return float(np.median(times))


def _auto_backend(env: EnvSource, num_envs: int) -> str:
    """native where the env has an exact vectorised twin; subprocess for an env whose step
    costs over a millisecond when there are cores to run workers on; the loop otherwise."""
    if has_native_vector_env(env):
        return "native"
    if (
        num_envs > 1
        and (os.cpu_count() or 1) >= 4
        and isinstance(env, gym.Env)
        and _seconds_per_step(env) > SUBPROCESS_MIN_STEP_SECONDS
    ):
        return "subprocess"
    return "loop"


def _given_vector_env(
    vector_env: gym.vector.VectorEnv, num_envs: int, backend: str
) -> tuple[VectorEnvBackend, gym.Space, gym.Space]:
    """A gymnasium VectorEnv passed as the env: it steps its copies itself."""
    if backend != "auto":
        raise ValueError(
            f"backend: a gymnasium VectorEnv passed as env steps its copies itself; "
            f"leave backend='auto', got {backend!r}"
        )
    if vector_env.num_envs != num_envs:
        raise ValueError(
            f"num_envs: the VectorEnv passed as env has {vector_env.num_envs} copies, but num_envs={num_envs}"
        )
    mode = vector_env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    if mode != gym.vector.AutoresetMode.NEXT_STEP:
        raise ValueError(
            f"env: the VectorEnv's autoreset_mode is {mode}; only gymnasium's "
            f"default NEXT_STEP is supported (make it with that mode)"
        )
    # Sync/AsyncVectorEnv take one seed per copy; vectorised implementations take one seed.
    per_copy = isinstance(vector_env, (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv))
    return (
        VectorEnvBackend(vector_env, seed_all_from_first=not per_copy),
        vector_env.single_observation_space,
        vector_env.single_action_space,
    )


def _make_backend(
    env: EnvSource | gym.vector.VectorEnv,
    num_envs: int,
    backend: str,
    made_in: str | None = None,
    first_copy: int = 0,
    total_copies: int | None = None,
) -> tuple[LoopBackend | VectorEnvBackend, gym.Space, gym.Space]:
    """(backend, observation space, action space). With `made_in` (see EnvVectorizer), the
    copies that a factory makes in this process are named in its errors, as copies
    `first_copy + i` of `total_copies`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if isinstance(env, gym.vector.VectorEnv):
        return _given_vector_env(env, num_envs, backend)
    if backend == "auto":
        backend = _auto_backend(env, num_envs)
    if backend == "native":
        if not has_native_vector_env(env):
            raise ValueError(
                "backend='native' needs an env made by gym.make from an id with a "
                "vectorised implementation and no extra wrappers, e.g. CartPole-v1"
            )
        spec = cast(EnvSpec, env.spec)  # has_native_vector_env: it has one
        vector_env = gym.make_vec(spec, num_envs=num_envs, vectorization_mode="vector_entry_point")
        return VectorEnvBackend(vector_env, seed_all_from_first=True), env.observation_space, env.action_space
    factories = _env_factories(env, num_envs)
    if isinstance(env, gym.Env):
        made_in = None  # copies of an env object: no env constructor runs here
    total_copies = total_copies or first_copy + num_envs

    def named(i: int) -> Callable[[], gym.Env]:
        return functools.partial(make_named, factories[i], first_copy + i, total_copies, made_in)

    if backend == "subprocess":
        spaces = _spaces_of(env if isinstance(env, gym.Env) else named(0))
        workers = [
            _WorkerEnvFactory(make, i, num_envs, *spaces, made_in=made_in) for i, make in enumerate(factories)
        ]
        vector_env = _start_workers(workers)
        return (
            SubprocessBackend(vector_env),
            vector_env.single_observation_space,
            vector_env.single_action_space,
        )
    envs = []
    try:
        for i in range(num_envs):
            envs.append(named(i)())
    except BaseException:
        if not isinstance(env, gym.Env):  # the copies made so far are this vectorizer's own
            for made in envs:
                with contextlib.suppress(Exception):
                    made.close()
        raise
    return LoopBackend(envs), envs[0].observation_space, envs[0].action_space


def _valid_action(space: gym.Space) -> np.ndarray:
    """A fixed action inside `space`: what an all-copies backend sends to copies whose episode
    is over (their results are dropped)."""
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(space.start, dtype=space.dtype)
    if isinstance(space, gym.spaces.Box):
        return np.clip(np.zeros(space.shape, dtype=space.dtype), space.low, space.high)
    return np.zeros(space.shape, dtype=space.dtype)  # type: ignore[arg-type]  # MultiDiscrete, MultiBinary: both set


class EnvVectorizer:
    """Steps `num_envs` independent copies of `env` (a gym.Env with all its wrappers, or a
    function returning a new one) in lockstep.

    Two ways to step:
    - `reset()` + `step(actions)`, episode-synchronous as in the original: `step` takes
      actions for, and returns results of, only the copies whose episode is still running, in
      env order; `envs_active[i]` is True once copy i's episode is over (the original's name).
    - `reset()` + `step_autoreset(actions)`: every copy every step, gymnasium's "next step"
      autoreset (a copy whose episode just ended is reset on its next step, and that row is
      marked not `valid`).

    Backends: "loop" (in-process, steps only running copies), "native" (gymnasium's vectorised
    implementation, e.g. CartPole's NumPy one), "subprocess" (one worker process per copy,
    observations in shared memory), "auto" (native where the env has an exact vectorised twin;
    subprocess when one step of the env takes over 1 ms, timed on a few random steps, and the
    machine has at least 4 cores; else loop).

    Every copy has its own RNG: copy i is seeded with `seed + i` on the first reset when `seed`
    is given, and from fresh OS entropy otherwise (the native backend draws all copies from one
    generator seeded with `seed`); every later `reset()` reseeds each copy with a seed drawn from
    a generator seeded with `seed`, so episode rounds are the same on every backend. A
    vectorizer that steps part of a larger run (a Ray worker) says which part: copies
    `first_copy .. first_copy + num_envs - 1` of `total_copies`, seeded as those copies of one
    vectorizer of the whole run would be. Continuous actions are clipped to the action space
    before the env sees them (`clip_actions`); the caller's array is not changed.

    What the copies return is checked on every backend: an observation whose shape is not the
    observation space's, a non-finite observation, or a reward that is not a scalar raises an
    EnvOutputError (a ValueError and an EnvStepError) naming the copy. A NaN or infinite
    reward does too with `non_finite_rewards="raise"` (the default), naming the step
    (`step_count`, the number of `step`/`step_autoreset` calls); with `"zero"` it is replaced
    by 0.0 and counted in `non_finite_rewards_replaced`.

    A subprocess worker that dies makes `reset`/`step` raise an EnvStepError naming the copy;
    one whose env's constructor raised makes `check_started()` (at the latest the first
    `reset()`) end every worker, then raise an EnvStepError whose first line names the copy and
    the env's exception type and message ("env copy 1 of 3 could not be made in its worker
    process: the env constructor raised ConnectionRefusedError: ..."), that exception as its
    cause; a start that fails otherwise (a worker dying while it starts, copies whose spaces
    differ) ends every worker before it raises. The workers ignore SIGINT and SIGTERM (Ctrl-C
    is for the main process to handle). `close()` returns within a few seconds, also after such
    an error or a KeyboardInterrupt, and may be called twice.

    `made_in` says where this vectorizer runs when that is not its caller's process ("the
    collector process", "ray worker 2"): an env constructor that raises there (the factory's
    copies built in this process) raises an EnvStepError of that first line ("env copy 1 of 3
    could not be made in the collector process: ..."), the env's error as its cause.
    """

    def __init__(
        self,
        env: gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv,
        num_envs: int = 1,
        seed: int | None = None,
        clip_actions: bool = True,
        backend: str = "loop",
        non_finite_rewards: str = "raise",
        first_copy: int = 0,
        total_copies: int | None = None,
        made_in: str | None = None,
    ):
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.first_copy = check_non_negative_int("first_copy", first_copy)
        self.total_copies = (
            first_copy + num_envs
            if total_copies is None
            else check_positive_int("total_copies", total_copies)
        )
        if self.first_copy + self.num_envs > self.total_copies:
            raise ValueError(
                f"total_copies: copies {first_copy}..{first_copy + num_envs - 1} do "
                f"not fit in a run of {total_copies}"
            )
        if not isinstance(non_finite_rewards, str) or non_finite_rewards not in NON_FINITE_REWARD_CHOICES:
            raise ValueError(
                f"non_finite_rewards must be one of {NON_FINITE_REWARD_CHOICES}, got {non_finite_rewards!r}"
            )
        self.non_finite_rewards = non_finite_rewards
        self.non_finite_rewards_replaced = 0
        self.step_count = 0
        self.backend, self.observation_space, self.action_space = _make_backend(
            env, self.num_envs, backend, made_in, self.first_copy, self.total_copies
        )
        self.backend_name = type(self.backend).__name__
        self._clip_bounds = None
        if clip_actions and isinstance(self.action_space, gym.spaces.Box):
            self._clip_bounds = (self.action_space.low, self.action_space.high)
        if seed is None:
            seeds: np.ndarray = np.random.SeedSequence().generate_state(self.num_envs)
        else:
            seeds = seed + self.first_copy + np.arange(self.num_envs)
        self._pending_seeds: list[int] | None = [int(s) for s in seeds]
        # Later resets seed every copy afresh from this generator, so that a run does not depend
        # on whether a backend kept stepping (and drawing for) copies whose episode was over.
        self._reset_seeds = np.random.default_rng(seed)
        self._filler_action = _valid_action(self.action_space)
        self.envs_active = np.zeros(self.num_envs, dtype=bool)
        self.last_terminated = np.zeros(self.num_envs, dtype=bool)
        self.last_truncated = np.zeros(self.num_envs, dtype=bool)
        self.last_next_states: np.ndarray | None = None
        # Per stepped copy, the return of a whole game that ended at the last step, where the
        # env reports one (NaN elsewhere); None when no copy did (see `game_returns`).
        self.last_game_returns: np.ndarray | None = None
        self._ended = np.zeros(self.num_envs, dtype=bool)

    def check_started(self) -> None:
        """On the subprocess backend, raises the EnvStepError of an env copy that could not be
        made in its worker, after ending every worker (see the class's doc); the first `reset`
        does this too. Nothing to check on the other backends."""
        if isinstance(self.backend, SubprocessBackend):
            self.backend.check_started()

    @property
    def envs(self) -> list[gym.Env]:
        """The env copies (loop backend only)."""
        if not isinstance(self.backend, LoopBackend):
            raise AttributeError(f"envs: the {self.backend_name} does not hold env objects here")
        return self.backend.envs

    @property
    def envs_active(self) -> EpisodeOverFlags:
        """[N] bool: True where that copy's episode is over; set it with a bool array of [N]."""
        return self._episode_over

    @envs_active.setter
    def envs_active(self, flags: ArrayLike) -> None:
        flags = np.asarray(flags)
        if flags.shape != (self.num_envs,) or flags.dtype != bool:
            raise ValueError(
                f"envs_active: expected a bool array of shape ({self.num_envs},), got "
                f"{flags.dtype} array of shape {flags.shape}"
            )
        self._episode_over = flags.copy().view(EpisodeOverFlags)
        self._episode_over.vectorizer = self

    def active_indices(self) -> np.ndarray:
        """Indices of the copies whose episode is still running."""
        return np.flatnonzero(~self._episode_over)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, Infos]:
        """Starts a new episode in every copy; returns (states [N, *obs_shape], infos). With
        `seed`, copy i is seeded `seed + first_copy + i`."""
        if seed is not None:
            self._pending_seeds = [seed + self.first_copy + i for i in range(self.num_envs)]
        seeds, self._pending_seeds = self._pending_seeds, None
        if seeds is None:
            drawn = self._reset_seeds.integers(0, 2**31 - 1, self.total_copies)
            seeds = [int(s) for s in drawn[self.first_copy : self.first_copy + self.num_envs]]
        states, infos = self.backend.reset(seeds)
        states = self._as_states(states, np.arange(self.num_envs), "reset")
        self.envs_active = np.zeros(self.num_envs, dtype=bool)
        self._ended[:] = False
        self.last_next_states = states.copy()
        return states, infos

    def _env_actions(self, actions: np.ndarray, indices: np.ndarray) -> np.ndarray:
        if self.backend.steps_subsets and len(indices) == self.num_envs:
            full = actions
        else:
            full = np.empty((self.num_envs,) + actions.shape[1:], dtype=actions.dtype)
            full[:] = self._filler_action
            full[indices] = actions
        return full if self._clip_bounds is None else np.clip(full, *self._clip_bounds)

    def _step_backend(self, actions: ArrayLike, indices: np.ndarray) -> StepResults:
        actions = np.asarray(actions)
        if actions.shape[:1] != (len(indices),):
            raise ValueError(
                f"actions: expected one action per running env ({len(indices)}), got "
                f"an array of shape {actions.shape}"
            )
        self.step_count += 1
        next_states, rewards, terminated, truncated, infos = self.backend.step(
            self._env_actions(actions, indices), indices
        )
        next_states = self._as_states(next_states, indices, "step")
        rewards = self._as_rewards(rewards, indices)
        self.last_game_returns = game_returns(infos, indices)
        terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
        self.last_terminated[indices] = terminated
        self.last_truncated[indices] = truncated
        cast(np.ndarray, self.last_next_states)[indices] = next_states  # made by reset
        return next_states, rewards, terminated, truncated, infos

    def step(self, actions: ArrayLike) -> StepResults:
        """Steps the running copies with one action each (in env order). Returns their
        (next_states, rewards, terminated, truncated, infos); a finished copy is not stepped
        (or, on an all-copies backend, its result is dropped). `infos` is a list of per-copy
        dicts on the loop backend, gymnasium's dict of arrays (all copies) on the others."""
        return self._step_backend(actions, self.active_indices())

    def step_autoreset(self, actions: ArrayLike) -> tuple[Array, Array, Array, Array, Array]:
        """Steps every copy (actions for all N). Returns (next_states, rewards, terminated,
        truncated, valid): `valid[i]` is False where copy i was being reset (its episode ended
        on the previous call); that row is not a transition. Where an episode ends,
        `next_states` is its final observation."""
        valid = ~self._ended
        next_states, rewards, terminated, truncated, _ = self._step_backend(actions, np.arange(self.num_envs))
        self._ended = terminated | truncated
        return next_states, rewards, terminated, truncated, valid

    def _as_states(self, states: Observations, indices: np.ndarray, method: str) -> np.ndarray:
        """The observations of copies `indices` (from `method`, 'reset' or 'step') as one
        array; an EnvOutputError if one has the wrong shape or is not finite."""
        expected = self.observation_space.shape
        try:
            stacked = as_state_array(states if isinstance(states, np.ndarray) else np.stack(states))
        except ValueError:  # the copies' observations differ in shape
            if expected is None:
                raise
            stacked = None
        if expected is not None and (stacked is None or stacked.shape[1:] != expected):
            raise _observation_shape_error(
                states, indices, method, self.num_envs, self.observation_space, self.backend_name
            )
        stacked = cast(np.ndarray, stacked)  # None raised just above
        if stacked.dtype.kind == "f" and not np.isfinite(stacked).all():
            bad = indices[~np.isfinite(stacked.reshape(len(stacked), -1)).all(axis=1)].tolist()
            raise EnvOutputError(
                f"{_copies(bad, self.num_envs)} returned non-finite observations from {method}()", bad[0]
            )
        return stacked

    def _as_rewards(self, rewards: ArrayLike, indices: np.ndarray) -> np.ndarray:
        """The rewards of copies `indices` as a float32 array; an EnvOutputError if one is not
        a scalar, or is not finite (unless `non_finite_rewards` is "zero": then it becomes 0)."""
        try:
            array = np.asarray(rewards, dtype=np.float32)
        except (TypeError, ValueError):  # one copy's reward is a sequence, or not a number
            array = None
        if array is None or array.shape != (len(indices),):
            raise _reward_error(rewards, indices, self.num_envs, self.backend_name)
        finite = np.isfinite(array)
        if finite.all():
            return array
        bad_rows = np.flatnonzero(~finite)
        if self.non_finite_rewards == "zero":
            self.non_finite_rewards_replaced += len(bad_rows)
            return np.where(finite, array, np.float32(0.0))
        row = bad_rows[0]
        raise EnvOutputError(
            f"{_copies([indices[row]], self.num_envs)} returned reward "
            f"{array[row]} at step {self.step_count} (vectorizer step count)",
            int(indices[row]),
        )

    def close(self) -> None:
        """Closes the env copies (their worker processes, on the subprocess backend)."""
        self.backend.close()
