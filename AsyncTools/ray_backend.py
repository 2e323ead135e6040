"""Collection on Ray: remote env workers feeding the single-GPU learner.

`RayCollector` splits the N env copies of a run into contiguous slices, one per Ray actor
(`RolloutWorker`). Each worker steps its slice with the local backends' own collector (a
`LocalCollector` over an in-process `EnvVectorizer`) and acts with a CPU copy of the learner's
policy (AsyncTools/acting.py's `acting_copy`: the worker whose slice starts at copy `first`
samples from a generator seeded with the learner's seed plus `first`). A round:

1. the learner's policy weights (`weights_of`: NumPy arrays) are in the object store (`sync`,
   once after each update);
2. every worker loads them if they are new, collects its slice and returns its `Rollout`
   (with the behaviour log-probs of its copy of the policy) and its episodes;
3. the driver joins the slices' rollouts along copies, in copy order, which is exactly the
   rollout a local `VecMemory` of all N copies holds.

Ray is an optional dependency: nothing here imports it until a collector is built.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal, overload

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from PPO import PPO
from PPO.checks import check_non_negative_int, check_positive_float, check_positive_int
from PPO.Memory import Rollout, concatenate, empty_rollout

from .acting import Weights, acting_copy, load_into, weights_of
from .collector_base import Collector
from .envs import picklable_env_factory
from .episodes import EpisodeRound, merge_rounds
from .local_collector import LocalCollector
from .rollout import check_rollout
from .vectorizer import EnvStepError, EnvVectorizer

__all__ = [
    "RayCollector",
    "RolloutWorker",
    "import_ray",
    "init_local_ray",
    "connect_ray",
    "worker_slices",
    "merge_rollouts",
    "merge_rounds",
]

MAX_RESTARTS = 3


def import_ray() -> ModuleType:
    """The `ray` module, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "backend='ray' needs the ray package: pip install -e .[ray] (or pip install ray)"
        ) from error
    return ray


# ------------------------------------------------------------------ connecting
def init_local_ray(num_cpus: int | None = None) -> None:
    """Starts a Ray instance on this machine (no dashboard) whose workers import what this
    process imports: the project's own folders on `sys.path` are passed on to them, as the
    subprocess backend's spawned workers get them."""
    ray = import_ray()
    own_paths = [
        path
        for path in sys.path
        if path and os.path.isdir(path) and not path.startswith((sys.prefix, sys.base_prefix))
    ]
    inherited = os.environ.get("PYTHONPATH")
    # Through the environment Ray's processes start with, rather than a runtime_env, which
    # would make Ray start new worker processes instead of using the ones it keeps ready.
    os.environ["PYTHONPATH"] = os.pathsep.join(own_paths + ([inherited] if inherited else []))
    try:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False)
    finally:
        if inherited is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = inherited


def connect_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Makes sure this process is connected to Ray. Joins the cluster at `address` (or
    `RAY_ADDRESS`), keeps a connection made before, or else starts a local instance. Returns
    True only in the last case: then the caller owns that instance and shuts it down."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
        return False
    init_local_ray(num_cpus)
    return True


# ------------------------------------------------------------------ what the workers get
def worker_slices(num_envs: int, num_workers: int) -> list[tuple[int, int]]:
    """(first copy, number of copies) of each worker: contiguous, in order, sizes differing by
    at most one."""
    sizes = [len(part) for part in np.array_split(np.arange(num_envs), num_workers)]
    firsts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return [(int(first), size) for first, size in zip(firsts, sizes, strict=True)]


def _was_restarted() -> bool:
    ray = import_ray()
    with warnings.catch_warnings():  # some Ray versions warn about their own deprecated accessor
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


# ------------------------------------------------------------------ the worker (a Ray actor)
class RolloutWorker:
    """One Ray actor: steps env copies `first .. first + num_envs - 1` of a run of `total_envs`
    with an in-process EnvVectorizer and a CPU copy of the policy.

    Copy `first + j` is seeded `seed + first + j`, exactly as in a local run; the policy copy
    samples from a generator seeded `learner_seed + first` (AsyncTools/acting.py's rule). A
    worker that Ray restarted after it died builds its copies afresh from the factory with a
    fresh seed (its policy copy keeps the rule).
    """

    def __init__(
        self,
        env_factory: Callable[[], gym.Env],
        ppo_config: dict,
        learner_seed: int,
        rank: int,
        first: int,
        num_envs: int,
        total_envs: int,
        seed: int,
        rollout: str,
        num_steps: int,
        deterministic: bool = False,
    ):
        torch.set_num_threads(1)  # workers share the machine's cores; these nets need no more
        if _was_restarted():
            seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**30)
        self.rank, self.first, self.total_envs = rank, first, total_envs
        self.incarnation = uuid.uuid4().hex
        self.env = EnvVectorizer(
            env_factory,
            num_envs,
            seed=seed,
            backend="loop",
            first_copy=first,
            total_copies=total_envs,
            made_in=f"ray worker {rank}",
        )
        self.local = LocalCollector(
            self.env, rollout=rollout, num_steps=num_steps, seed=seed + first, deterministic=deterministic
        )
        self.ppo = acting_copy(ppo_config, learner_seed, first)
        self.weights_version = -1

    def ready(self) -> dict[str, Any]:
        """Answers once the worker is built; names this life of it and its env's spaces."""
        return {
            "incarnation": self.incarnation,
            "observation_space": self.env.observation_space,
            "action_space": self.env.action_space,
        }

    def collect(self, weights: Weights, version: int) -> dict[str, Any]:
        """Loads the policy weights (`weights_of`'s) if they are newer than its own, collects
        one round and returns its rollout (columns: its own copies) and episodes."""
        if version != self.weights_version:
            load_into(self.ppo, weights)
            self.weights_version = version
        try:
            rollout, collected = self.local.collect(self.ppo)
        except EnvStepError as error:
            raise self._global_error(error) from error
        return {
            "incarnation": self.incarnation,
            "weights_version": self.weights_version,
            "rollout": rollout,
            "round": collected,
        }

    def random_observations(self, num_steps: int) -> dict[str, Any]:
        """Observations of `num_steps` random steps of every copy (RND's warm-up)."""
        try:
            observations = self.local.random_observations(num_steps)
        except EnvStepError as error:
            raise self._global_error(error) from error
        return {"incarnation": self.incarnation, "observations": observations}

    def _global_error(self, error: EnvStepError) -> EnvStepError:
        index = self.first + (error.env_index or 0)
        message = re.sub(r"^env copy \d+ of \d+", f"env copy {index} of {self.total_envs}", str(error))
        return EnvStepError(f"{message} (in ray worker {self.rank})", index)


# ------------------------------------------------------------------ merging on the driver
def merge_rollouts(parts: list[Rollout | None], sizes: list[int]) -> Rollout | None:
    """Joins workers' rollouts (in copy order; worker k has `sizes[k]` copies) along copies:
    the rollout a VecMemory of all the copies would hold. A part that is None (the worker died,
    or had no steps) becomes columns without transitions, so copy numbers stay global. None
    when no part has steps."""
    present = [part for part in parts if part is not None]
    if not present:
        return None
    filled = [
        part if part is not None else empty_rollout(present[0], 1, size)
        for part, size in zip(parts, sizes, strict=True)
    ]
    return concatenate(filled, axis=1)


# ------------------------------------------------------------------ the driver's side
class RayCollector(Collector):
    """Collects rounds of `num_envs` copies of `env` on `num_workers` Ray actors.

    `env`: a gym.Env with a spec (re-made in each worker with `gym.make(env.spec)`) or a picklable
    function building one. `ppo` gives the policy's structure (`ppo.config`) and the seed of the
    workers' policy copies (`ppo.seed + first` for the worker whose slice starts at copy
    `first`: AsyncTools/acting.py's rule); its weights reach the workers through `sync`.
    `rollout`, `num_steps` and the env seeds (`seed + i` for copy i) mean what they mean for
    `AsyncPPO`; `deterministic=True` makes the workers act with the most likely action.
    `num_workers` defaults to the cluster's CPUs (at most `num_envs`). Ray is joined at
    `address` (or `RAY_ADDRESS`), or started here (`started_ray`) and then shut down by
    `close()`.

    Before AsyncTools/acting.py (issue 27), a worker's policy copy was seeded `seed + first`,
    with the collector's `seed`: the actions sampled now differ from then's where that seed is
    not the learner's (AsyncPPO given a `seed` of its own, or resumed: its collector's seed adds
    the steps so far) and after a restart (then a fresh seed); elsewhere they are the same.

    `workers` are the actor handles, `slices` their (first copy, number of copies);
    `weights_version` counts the published weights (0 is the first) and `weights_versions[k]`
    is the one worker k acted with in its last round.

    Faults: workers are Ray actors with `max_restarts`. A worker that dies is restarted by Ray
    with fresh env copies (the next call waits for it, up to `restart_timeout` seconds); a round
    it dies in goes on without its data, and `worker_restarts` counts it. An env that raises
    inside a worker raises EnvStepError naming the global copy. A worker that cannot start
    ends every worker, then raises: an EnvStepError "ray worker 0 could not start (env copies
    0-1): env copy 1 of 4 could not be made: the env constructor raised ..." where an env
    constructor raised, Ray's ActorDiedError (its text without colour codes after the first
    line) as its cause.
    """

    acts_in_this_process = False

    def __init__(
        self,
        env: gym.Env | Callable[[], gym.Env],
        ppo: PPO,
        num_envs: int,
        *,
        seed: int,
        rollout: str = "steps",
        num_steps: int = 64,
        num_workers: int | None = None,
        address: str | None = None,
        deterministic: bool = False,
        max_restarts: int = MAX_RESTARTS,
        restart_timeout: float = 300.0,
    ):
        import_ray()
        self.num_envs = check_positive_int("num_envs", num_envs)
        check_rollout(rollout)
        if num_workers is not None and check_positive_int("ray_workers", num_workers) > num_envs:
            raise ValueError(
                f"ray_workers: each worker needs at least one of the {num_envs} env "
                f"copies, got ray_workers={num_workers}"
            )
        self.max_restarts = check_non_negative_int("max_restarts", max_restarts)
        self.restart_timeout = check_positive_float("restart_timeout", restart_timeout)
        worker_options = dict(
            env_factory=picklable_env_factory(env, "the Ray workers"),
            ppo_config=ppo.config,
            learner_seed=ppo.seed,
            total_envs=self.num_envs,
            seed=int(seed),
            rollout=rollout,
            num_steps=check_positive_int("num_steps", num_steps),
            deterministic=deterministic,
        )
        self.workers: list = []
        self.started_ray = connect_ray(address)
        try:
            self._start_workers(num_workers, worker_options)
        except BaseException:
            self.close()
            raise

    def _start_workers(self, num_workers: int | None, worker_options: dict) -> None:
        ray = import_ray()
        self.num_workers = num_workers or max(1, min(self.num_envs, _cluster_cpus(ray)))
        self.slices = worker_slices(self.num_envs, self.num_workers)
        self.worker_restarts = 0
        self.weights_versions: list[int | None] = [None] * self.num_workers
        self.weights_version, self._weights = -1, None
        self._incarnations: list[str | None] = [None] * self.num_workers
        self._restarting: set[int] = set()
        remote = ray.remote(RolloutWorker).options(
            max_restarts=self.max_restarts, max_task_retries=0, scheduling_strategy="SPREAD"
        )
        self.workers = [
            remote.remote(rank=rank, first=first, num_envs=size, **worker_options)
            for rank, (first, size) in enumerate(self.slices)
        ]
        answers = self._gather("ready", retry=True)
        self.observation_space = answers[0]["observation_space"]
        self.action_space = answers[0]["action_space"]

    # --------------------------------------------------------------- the round
    @property
    def env(self) -> RayCollector:
        return self  # the workers step the copies; this object speaks for them

    def sync(self, ppo: PPO) -> None:
        """Puts the policy's weights (`weights_of`: NumPy arrays) into the object store, once;
        every worker loads them before its next rollout."""
        self._weights = import_ray().put(weights_of(ppo))
        self.weights_version += 1

    def collect(
        self, ppo: PPO | None = None, should_stop: Callable[[], bool] | None = None
    ) -> tuple[Rollout | None, EpisodeRound]:
        """One round on every worker with the weights of the last `sync`: (the merged
        Rollout for `ppo.memory.add`, the merged EpisodeRound). The data of a worker that
        died during the round is left out. A Ray round is not cut by `should_stop`."""
        if self._weights is None:
            raise RuntimeError("sync(ppo) must be called before the first collect()")
        results = self._gather("collect", self._weights, self.weights_version, retry=False)
        parts, rounds = [], []
        for k, result in enumerate(results):
            parts.append(None if result is None else result["rollout"])
            if result is None:
                continue
            self.weights_versions[k] = result["weights_version"]
            rounds.append(result["round"])  # the workers' EpisodeRounds, joined in worker order
        return merge_rollouts(parts, [size for _, size in self.slices]), merge_rounds(rounds)

    def random_observations(self, num_steps: int) -> np.ndarray:
        """Observations of `num_steps` random steps of every copy, from all workers."""
        results = self._gather("random_observations", num_steps, retry=True)
        return np.concatenate([result["observations"] for result in results])

    # --------------------------------------------------------------- calls and faults
    @overload
    def _gather(self, method: str, *args: Any, retry: Literal[True]) -> list[dict[str, Any]]: ...
    @overload
    def _gather(self, method: str, *args: Any, retry: bool) -> list[dict[str, Any] | None]: ...
    def _gather(self, method: str, *args: Any, retry: bool) -> list[Any]:
        """Calls `method` on every worker and collects the answers as they come. A worker that
        dies is called again once Ray has restarted it (`retry`), or left out (None)."""
        ray = import_ray()
        for k in sorted(self._restarting):
            self._wait_until_restarted(k)
        pending = {getattr(w, method).remote(*args): k for k, w in enumerate(self.workers)}
        results: list[dict[str, Any] | None] = [None] * self.num_workers
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(ref)
            try:
                answer: dict[str, Any] = ray.get(ref)
                results[k] = answer
            except ray.exceptions.RayActorError as error:
                self._worker_died(k, error, retried=retry)
                if retry:
                    self._wait_until_restarted(k)
                    pending[getattr(self.workers[k], method).remote(*args)] = k
                continue
            except ray.exceptions.RayTaskError as error:
                env_error = _env_step_error(error)
                if env_error is None:
                    raise  # Ray re-raises it as an instance of the worker's exception type too
                raise env_error from error
            self._note_incarnation(k, answer["incarnation"])
        return results

    def _worker_died(self, k: int, error: Exception, retried: bool) -> None:
        if getattr(error, "actor_init_failed", False):
            raise self._start_error(k, error) from error
        what = "its call is sent again" if retried else "its rollout dropped"
        self._record_restart(f"ray worker {k} died; restarted, {what}")
        self._restarting.add(k)

    def _wait_until_restarted(self, k: int) -> None:
        """Blocks until Ray has restarted worker k (calls to a restarting actor fail at once
        rather than wait); raises RuntimeError if Ray gave it up or `restart_timeout` passes."""
        ray = import_ray()
        restarting = getattr(ray.exceptions, "ActorUnavailableError", ())  # Ray >= 2.22
        deadline, pause = time.monotonic() + self.restart_timeout, 0.05
        while True:
            try:
                answer = ray.get(self.workers[k].ready.remote())
                break
            except restarting as error:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"ray worker {k} was not back {self.restart_timeout} s after it died"
                    ) from error
                time.sleep(pause)
                pause = min(2 * pause, 0.25)
            except ray.exceptions.RayActorError as error:
                if getattr(error, "actor_init_failed", False):  # restarted, it could not start
                    raise self._start_error(k, error) from error
                raise RuntimeError(
                    f"ray worker {k} (env copies {self._copies(k)}) died and Ray "
                    f"did not restart it (max_restarts={self.max_restarts}): "
                    f"{_plain(str(error))}"
                ) from error
        self._incarnations[k] = answer["incarnation"]
        self._restarting.discard(k)

    def _note_incarnation(self, k: int, incarnation: str) -> None:
        known = self._incarnations[k]
        if known is not None and known != incarnation:  # it died and came back between calls
            self._record_restart(f"ray worker {k} died between rounds; restarted with fresh env copies")
        self._incarnations[k] = incarnation

    def _record_restart(self, message: str) -> None:
        self.worker_restarts += 1
        tqdm.write(message)

    def _copies(self, k: int) -> str:
        first, size = self.slices[k]
        return f"{first}-{first + size - 1}"

    def _start_error(self, k: int, error: Exception) -> RuntimeError:
        """The error of worker k, whose __init__ raised (Ray's `error`): "ray worker 0 could
        not start (env copies 0-1): env copy 1 of 4 could not be made: the env constructor
        raised ConnectionRefusedError: ...", an EnvStepError, when an env constructor raised;
        else a RuntimeError whose first line ends with the worker's exception type and message.
        Ray's own text (its traceback, without colour codes) follows the first line."""
        text = _plain(str(error))
        where = f"ray worker {k} could not start (env copies {self._copies(k)})"
        made = list(
            re.finditer(
                r"env copy (\d+) of (\d+) could not be made in ray worker \d+: "
                r"(.*)",
                text,
            )
        )
        if made:
            copy, total, reason = made[-1].groups()
            return EnvStepError(
                f"{where}: env copy {copy} of {total} could not be made: {reason}\n{text}", int(copy)
            )
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return RuntimeError(f"{where}: {lines[-1] if lines else 'no reason given'}\n{text}")

    def close(self) -> None:
        """Ends the workers (they are gone when it returns, or after END_SECONDS at most),
        and the Ray instance if this collector started it."""
        ray = import_ray()
        for worker in self.workers:
            try:
                ray.kill(worker, no_restart=True)
            except Exception:  # already gone
                pass
        _wait_until_ended(ray, self.workers)
        self.workers = []
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
        self.started_ray = False


END_SECONDS = 10.0  # how long `close` waits for the killed workers to be gone


def _wait_until_ended(ray: ModuleType, workers: list, seconds: float = END_SECONDS) -> None:
    """Waits until Ray reports every one of `workers` (killed) dead, `seconds` at most: a call
    to a dead actor fails with RayActorError."""
    deadline = time.monotonic() + seconds
    for worker in workers:
        while time.monotonic() < deadline:
            try:
                ray.get(worker.ready.remote(), timeout=max(0.01, deadline - time.monotonic()))
            except ray.exceptions.RayActorError:
                break  # dead
            except ray.exceptions.GetTimeoutError:
                return
            except Exception:  # Ray itself is gone, or the worker answers with an error
                break
            time.sleep(0.02)  # it answered: the kill has not reached it yet


ANSI_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(text: str) -> str:
    """`text` (Ray's, for a terminal) without its colour codes."""
    return ANSI_CODES.sub("", text)


def _cluster_cpus(ray: ModuleType) -> int:
    return int(ray.cluster_resources().get("CPU", 1))


def _env_step_error(error: Exception) -> EnvStepError | None:
    """The EnvStepError a worker raised (its message names the global copy), without Ray's
    wrapper; None if the worker raised something else."""
    cause = getattr(error, "cause", None)
    return EnvStepError(str(cause), cause.env_index) if isinstance(cause, EnvStepError) else None
