"""AsyncPPO: the one-liner that trains a PPO learner on N copies of an env.

`EnvVectorizer` and `VecMemory` are importable from here, as in the original project.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeGuard, cast

import gymnasium as gym
import numpy as np
import torch

from PPO import PPO
from PPO.checks import check_bool, check_non_negative_int, check_positive_float, check_positive_int
from PPO.RND import RND

from .collector_base import Collector
from .collectors import make_collector
from .envs import (
    env_from_id,
    env_source,
    flattened_from,
    is_image_space,
    observation_parts_of,
    with_flat_observations,
)
from .evaluation import EVAL_SEED_OFFSET, PeriodicEvaluation, evaluate
from .history import RunHistory
from .overlap import OverlappedCollection
from .presets import env_id_of, family, settings_for
from .progress import format_stats, show_progress, steps_bar  # noqa: F401
from .rollout import EPISODE_STEP_CAP, EpisodeRound, check_episode_step_cap, check_rollout
from .run_folder import (  # noqa: F401
    BEST_DIR,
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    RunFolder,
    new_run_folder,
    read_checkpoint,
    resumed_counters,
    run_folder_path,
)
from .stopping import STOP_SIGNALS, StopControl, check_stop_at_return, stop_signals  # noqa: F401
from .vec_memory import VecMemory
from .vectorizer import EnvStepError, EnvVectorizer, new_env

# what AsyncPPO takes as its env: an env, a function making one, an env id, or a VectorEnv
EnvArg = gym.Env | Callable[[], gym.Env] | str | gym.vector.VectorEnv

__all__ = [
    "AsyncPPO",
    "EnvVectorizer",
    "VecMemory",
    "EnvStepError",
    "check_spaces",
    "ppo_for_env",
    "space_options",
]


def _has_finite_bounds(action_space: gym.Space) -> TypeGuard[gym.spaces.Box]:
    """A Box (as every continuous action space here is) with finite bounds."""
    return isinstance(action_space, gym.spaces.Box) and bool(
        np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))
    )


def space_options(observation_space: gym.Space, action_space: gym.Space) -> dict:
    """The PPO options that describe these spaces: `observ_dim` (and `observation_shape` for
    images), `is_continuous`, `action_dim` (and `action_nvec` for MultiDiscrete). Unsupported
    spaces raise TypeError naming the space."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(
            f"observation_space: only Box observations (any shape; uint8 HxWxC or "
            f"CxHxW frames go to a CNN) and Discrete, MultiDiscrete, MultiBinary, "
            f"Dict or Tuple ones (flattened for an env, a function or an id; a "
            f"VectorEnv must flatten its own: gymnasium.wrappers.vector."
            f"FlattenObservation) are supported, got {observation_space}"
        )
    options: dict = dict(observ_dim=int(np.prod(observation_space.shape)))
    if is_image_space(observation_space):
        options["observation_shape"] = tuple(int(d) for d in observation_space.shape)
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            raise ValueError(f"action_space: Discrete spaces must start at 0, got {action_space}")
        return {**options, "is_continuous": False, "action_dim": int(action_space.n)}
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        if np.any(action_space.start != 0):
            raise ValueError(f"action_space: MultiDiscrete spaces must start at 0, got {action_space}")
        nvec = tuple(int(n) for n in action_space.nvec)
        return {**options, "is_continuous": False, "action_dim": sum(nvec), "action_nvec": nvec}
    if isinstance(action_space, gym.spaces.MultiBinary) and len(action_space.shape) == 1:
        # n independent on/off choices: a MultiDiscrete of n twos
        nvec = (2,) * int(action_space.shape[0])
        return {**options, "is_continuous": False, "action_dim": sum(nvec), "action_nvec": nvec}
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return {**options, "is_continuous": True, "action_dim": int(action_space.shape[0])}
    raise TypeError(
        f"action_space: only Discrete, 1-D MultiDiscrete, 1-D MultiBinary and 1-D "
        f"Box actions are supported, got {action_space}"
    )


def ppo_for_env(
    env: gym.Env | Callable[[], gym.Env] | str, *, preset: bool = True, **ppo_options: Any
) -> PPO:
    """A PPO whose sizes (and, for Box actions, bounds) fit `env` (an env, a function making
    one, or an env id; Discrete, Dict, Tuple... observations are flattened, as AsyncPPO
    flattens them, and recorded in `observation_space`), with settings that learn on it: the
    defaults of its family (discrete, continuous or image; see AsyncTools/presets.py) and,
    unless `preset=False`, its env id's preset; `ppo_options` override both."""
    if isinstance(env, str) or not isinstance(env, (gym.Env, gym.vector.VectorEnv)):
        made = env_from_id(env) if isinstance(env, str) else new_env(env)  # one copy: its spaces
        made.close()
        return ppo_for_env(made, preset=preset, **ppo_options)
    flat_env: gym.Env | gym.vector.VectorEnv = with_flat_observations(env)
    observation_space, action_space = single_spaces(flat_env)
    options = space_options(observation_space, action_space)
    parts = observation_parts_of(flat_env)
    if parts is not None:  # images among a Dict's entries (AsyncTools.envs.FlattenParts)
        options["observation_parts"] = parts
    original_space = flattened_from(flat_env)
    if original_space is not None:  # recorded, so that evaluation and play can check it
        options["observation_space"] = original_space
    kind = family(options["is_continuous"], "observation_shape" in options or parts is not None)
    ppo_options = {**settings_for(env_id_of(flat_env), kind, "ppo", preset), **ppo_options}
    if options["is_continuous"] and "action_scaling" not in ppo_options and _has_finite_bounds(action_space):
        ppo_options.setdefault("action_low", action_space.low)
        ppo_options.setdefault("action_high", action_space.high)
    return PPO(**options, **ppo_options)


def single_spaces(env: gym.Env | gym.vector.VectorEnv) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of one copy: a VectorEnv's single-env spaces."""
    if isinstance(env, gym.vector.VectorEnv):
        return env.single_observation_space, env.single_action_space
    return env.observation_space, env.action_space


def check_spaces(observation_space: gym.Space, action_space: gym.Space, ppo: PPO) -> None:
    """Raises a clear error if the env's spaces do not fit the PPO learner, or are unsupported."""
    options = space_options(observation_space, action_space)
    if options["observ_dim"] != ppo.observ_dim:
        raise ValueError(
            f"observ_dim: the PPO was built with observ_dim={ppo.observ_dim}, but the "
            f"env's observations have shape {observation_space.shape} "
            f"({options['observ_dim']} values)"
        )
    if options["is_continuous"] != ppo.is_continuous:
        kind = "continuous" if options["is_continuous"] else "discrete"
        raise ValueError(
            f"is_continuous: the env's action space {action_space} is {kind}, but "
            f"the PPO was built with is_continuous={ppo.is_continuous}"
        )
    if options["action_dim"] != ppo.action_dim or options.get("action_nvec") != ppo.action_nvec:
        built = f"action_dim={ppo.action_dim}"
        if ppo.action_nvec is not None:
            built += f", action_nvec={list(ppo.action_nvec)}"
        raise ValueError(
            f"action_dim: the PPO was built with {built}, but the env's action space is {action_space}"
        )


def _kept(part: str, name: str, doc: str) -> property:
    """A read-only runner attribute kept by one of its parts (`self.<part>.<name>`)."""
    return property(lambda self: getattr(getattr(self, part), name), doc=doc)


def _forwarded(part: str, name: str, doc: str) -> property:
    """A runner attribute kept by one of its parts (`self.<part>.<name>`), read and set there."""
    return property(
        lambda self: getattr(getattr(self, part), name),
        lambda self, value: setattr(getattr(self, part), name, value),
        doc=doc,
    )


def _column(table: str, column: str, doc: str) -> property:
    """A column of the run's history (`self.history.<table>`): the list itself, growing as the
    run goes on."""
    return property(lambda self: getattr(self.history, table).columns[column], doc=doc)


class AsyncPPO:
    """Trains `ppo` on `num_envs` independent copies of `env` (an env, a function making one,
    or an env id: Atari ids get the standard Atari preprocessing) for `steps` env steps; a
    gymnasium VectorEnv (NEXT_STEP autoreset) is used as it is, `num_envs` taken from it.
    `num_envs`, `num_steps` and `eval_deterministic` left out come from the env id's preset
    (unless `preset=False`), else from the PPO's family defaults (AsyncTools/presets.py).
    Every parameter, its default and meaning: docs/guides/settings.md ("`AsyncPPO` parameters").

    Each round collects trajectories (`rollout="steps"`: `num_steps` steps of every copy,
    episodes running on across rounds; `"episodes"`: one episode in every copy, as in the
    original), hands them to `ppo.memory` and calls `ppo.learn()`. A `Collector`
    (AsyncTools/collectors.py) steps the copies as `backend` says: in this process, in
    subprocesses, on Ray actors or in EnvPool (docs/guides/ray-envpool.md); copy i is seeded
    `seed + i` (default: the PPO's seed), so the same seeds give the same run on CPU.
    `overlap=True` collects each round while the learner updates on the previous one, acting
    one update behind (AsyncTools/overlap.py; docs/guides/overlap.md). Finished episodes and
    games: `history` (AsyncTools/history.py), `episode_returns`...

    Every `eval_every` env steps, `eval_episodes` episodes are played on an env copy of their
    own (AsyncTools/evaluation.py). The run stops early (AsyncTools/stopping.py) at `run()`'s
    timeout, on Ctrl-C or SIGTERM, once an evaluation reaches `stop_at_return`, or when
    `callback(runner, round_stats())` returns False. With `log_dir`, `run()` keeps a run folder
    (AsyncTools/run_folder.py: logs, checkpoints, the best model, the final weights) that
    `resume` continues (docs/guides/training-runs.md).
    """

    def __init__(
        self,
        env: gym.Env | Callable[[], gym.Env] | str | gym.vector.VectorEnv,
        ppo: PPO,
        num_envs: int | None = None,
        steps: int = 100000,
        *,
        seed: int | None = None,
        progress_bar: bool = True,
        rollout: str = "steps",
        num_steps: int | None = None,
        backend: str = "auto",
        rnd_warmup_steps: int = 64,
        log_dir: str | Path | None = None,
        checkpoint_every: int = 100_000,
        resume: str | Path | None = None,
        ray_workers: int | None = None,
        ray_address: str | None = None,
        episode_step_cap: int = EPISODE_STEP_CAP,
        non_finite_rewards: str = "raise",
        eval_every: int | None = None,
        eval_episodes: int = 10,
        eval_deterministic: bool | None = None,
        stop_at_return: float | None = None,
        callback: Callable[[AsyncPPO, dict], bool | None] | None = None,
        preset: bool = True,
        overlap: bool = False,
    ):
        if not isinstance(ppo, PPO):
            raise TypeError(f"ppo must be a PPO instance, got {type(ppo).__name__}")
        self.env_id, given, self._env_source = _env_forms(env)
        num_envs, num_steps, eval_deterministic = runner_defaults(
            self.env_id, self._env_source, ppo, preset, num_envs, num_steps, eval_deterministic
        )
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.steps = check_positive_int("steps", steps)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.rnd_warmup_steps = check_non_negative_int("rnd_warmup_steps", rnd_warmup_steps)
        checkpoint_every = check_non_negative_int("checkpoint_every", checkpoint_every)
        self.rollout = check_rollout(rollout)
        self.episode_step_cap = check_episode_step_cap(episode_step_cap)
        stop_at_return = check_stop_at_return(stop_at_return, eval_every)
        self.eval_deterministic = check_bool("eval_deterministic", eval_deterministic)
        self.stopping = StopControl(stop_at_return, callback)
        self.ppo = ppo
        if ppo.anneal_lr and ppo.total_steps is None:
            ppo.total_steps = self.steps
        self.seed = ppo.seed if seed is None else seed
        checkpoint = None if resume is None else read_checkpoint(Path(resume), ppo.device)
        self.total_steps, self.rounds, self.seconds = resumed_counters(checkpoint)
        self.history = RunHistory(None if checkpoint is None else checkpoint["runner"])
        self.evaluation = _periodic_evaluation(self, eval_every, eval_episodes, checkpoint)
        self.collector, self.overlap = _start_collection(
            self, given, checkpoint, resume, backend, overlap, non_finite_rewards, ray_workers, ray_address
        )
        with _closed_on_failure(self.collector):  # a run folder that cannot be made closes it too
            self.folder = RunFolder.for_run(self, log_dir, resume, checkpoint_every)
        self.progress_bar = progress_bar
        self._rnd_warmed_up = checkpoint is not None

    # ------------------------------------------------------------------ training
    def train_round(self) -> EpisodeRound:
        """One round: collects it, transfers it to `ppo.memory` and calls `ppo.learn()`; then,
        as in `run()`, logs it in the run folder, checkpoints when due, evaluates when due
        (saving a new best model; `stop_at_return`) and calls `callback`."""
        started = time.perf_counter()
        since = self.history.mark()
        collected = self._collect_and_learn()
        self.seconds += time.perf_counter() - started
        self.total_steps += collected.steps
        self.rounds += 1
        self.history.add_round(collected, self.total_steps)
        self._after_round(since)
        return collected

    def _collect_and_learn(self) -> EpisodeRound:
        """Collects a round, hands it to `ppo.memory`, learns, and syncs the collector with the
        new weights when there was an update."""
        if self.ppo.rnd is not None and not self._rnd_warmed_up:
            self._rnd_warmed_up = _warm_up_rnd(self.ppo, self.collector, self.rnd_warmup_steps)
        if self.overlap is not None:  # collected with the weights published a round ago
            rollout, collected = self.overlap.next_round(self.stopping.should_stop)
        else:
            rollout, collected = self.collector.collect(self.ppo, should_stop=self.stopping.should_stop)
        if rollout is not None:
            self.ppo.memory.add(rollout)
        if self.ppo.learn() is not None and self.overlap is None:
            self.collector.sync(self.ppo)
        return collected

    def recent_returns(self) -> list[float]:
        """The returns the run reports (bar, progress.csv's mean_return, callback): the last
        `num_envs` whole games where the env reports games (Atari: real scores), else the last
        `num_envs` episodes."""
        return self.history.recent_returns(self.num_envs)

    def _after_round(self, since: tuple[int, int]) -> None:
        """Evaluates when due (saving a new best model; `stop_at_return`), logs the round (the
        episodes and games after the `since` mark), checkpoints when due, calls `callback`."""
        eval_return = None
        if self.evaluation is not None and self.evaluation.due(self.total_steps):
            eval_return, improved = self.evaluation(self.ppo, self.total_steps)
            if improved:  # a new best model, in the run folder's best/
                self.folder.save_best()
            self.stopping.evaluated(eval_return)  # stop_at_return
        self.folder.after_round(since, eval_return)  # logs, checkpoint when due
        self.stopping.after_round(self, lambda: self.round_stats(eval_return))  # the callback

    def round_stats(self, eval_return: float | None = None) -> dict[str, float]:
        """What the callback receives after a round: the learner's statistics and the run's
        counters (steps, rounds, seconds, episodes, mean_return of the last num_envs
        episodes, eval_return when the round was evaluated, best_eval_return)."""
        recent = self.recent_returns()
        given = dict(
            mean_return=float(np.mean(recent)) if recent else None,
            eval_return=eval_return,
            best_eval_return=getattr(self.evaluation, "best_return", None),
        )
        return dict(
            self.ppo.stats,
            steps=self.total_steps,
            rounds=self.rounds,
            seconds=self.seconds,
            episodes=len(self.episode_returns),
            **{name: value for name, value in given.items() if value is not None},
        )

    env = _kept("collector", "env", "What steps the env copies: the EnvVectorizer (a RayCollector on Ray).")
    worker_restarts = _kept(
        "collector", "worker_restarts", "How often a Ray worker died and was restarted (0 on other backends)."
    )

    def run(self, timeout: float | None = None) -> list[float]:
        """Trains until `steps` env steps are collected, or `timeout` seconds have passed;
        returns every finished episode's return (`episode_returns`, the same list every call).

        Ctrl-C (SIGINT) and SIGTERM stop training after the round under way (a second signal
        stops at once), save a checkpoint and the weights (with a run folder) and return;
        `interrupted` is then True and `stopped_by` names the signal ("timeout" for a timeout).
        If training fails with an error, the checkpoint and weights are still saved when the
        learner is finite (never over good files when it diverged), and the error is raised."""
        if timeout is not None:
            timeout = check_positive_float("timeout", timeout)
        self.folder.open()
        self.stopping.start(timeout)
        failure = None
        with (
            steps_bar(self.steps, self.total_steps, shown=self.progress_bar) as pbar,
            stop_signals(self.stopping.stop),
        ):
            try:
                while self.total_steps < self.steps and not self.stopping.should_stop():
                    collected = self.train_round()
                    show_progress(
                        pbar,
                        collected.steps,
                        self.recent_returns(),
                        self.ppo.stats,
                        getattr(self.evaluation, "last_return", None),
                    )
            except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler could be set
                self.stopping.stop("SIGINT")
            except BaseException as error:
                failure = error
                raise
            finally:
                if self.overlap is not None:
                    self.overlap.wait()  # no thread outlives run(); its round is the next one's
                self.stopping.finish()
                if self.stopped_by is not None:
                    pbar.write(self.stopping.message(self.total_steps, self.run_dir))
                self.folder.finish(failure)
        return self.episode_returns

    # ------------------------------------------------------------------ run folder, history
    def save_checkpoint(self, file: str | Path | None = None) -> Path:
        """Writes everything needed to resume (learner state, counters, episode history)
        atomically to `file` (default: the run folder's checkpoint.pth); returns the path."""
        return self.folder.save_checkpoint(file)

    run_dir = _kept("folder", "path", "The run folder (None without `log_dir` or `resume`).")
    checkpoint_every = _forwarded("folder", "checkpoint_every", "Env steps between checkpoints.")
    stopped_by = _forwarded("stopping", "stopped_by", "What stopped the last run early, or None.")
    interrupted = _forwarded("stopping", "interrupted", "True if a stop signal ended the last run.")
    stop_at_return = _forwarded("stopping", "stop_at_return", "The evaluation return that stops.")
    callback = _forwarded("stopping", "callback", "Called after every round; False stops the run.")
    episode_returns = _column("episodes", "returns", "Every finished episode's return.")
    episode_lengths = _column("episodes", "lengths", "Every finished episode's length.")
    episode_end_steps = _column("episodes", "end_steps", "The env steps when each episode ended.")
    game_returns = _column("games", "returns", "Every whole game's return (Atari: real score).")
    game_end_steps = _column("games", "end_steps", "The env steps when each game ended.")

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self,
        env: gym.Env | None = None,
        episodes: int = 10,
        deterministic: bool | None = None,
        seed: int | None = None,
    ) -> list[float]:
        """Returns of `episodes` whole episodes of the trained policy, on `env` or, by default,
        on a fresh copy of the training env; `deterministic=None` plays as the periodic
        evaluation does (`eval_deterministic`)."""
        return evaluate(
            self.ppo,
            env if env is not None else self.make_env(),
            episodes,
            self.eval_deterministic if deterministic is None else deterministic,
            seed,
            episode_step_cap=self.episode_step_cap,
        )

    def make_env(self) -> gym.Env:
        """A new, independent copy of the training env."""
        return new_env(self._env_source)

    def close(self) -> None:
        """Closes the env copies, the evaluation env and the run folder's log files."""
        if self.overlap is not None:
            self.overlap.close()
        self.collector.close()
        if self.evaluation is not None:
            self.evaluation.close()
        self.folder.close()


def _env_forms(
    env: EnvArg,
) -> tuple[str | None, EnvArg, gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv]:
    """The three forms of `env` (as AsyncPPO takes it) that the runner keeps: its id (None
    without one); what the collector is made from, Discrete, Dict, Tuple... observations
    flattened for the learner as for env ids (an id stays an id: EnvPool builds from it); and
    what `make_env` copies (for an id, the env or the function `env_source` makes of it)."""
    given = with_flat_observations(env)
    return (
        env if isinstance(env, str) else env_id_of(env),
        given,
        env_source(given) if isinstance(given, str) else given,
    )


def _start_collection(
    runner: AsyncPPO,
    env: EnvArg,
    checkpoint: dict | None,
    resume: str | Path | None,
    backend: str,
    overlap: bool,
    non_finite_rewards: str,
    ray_workers: int | None,
    ray_address: str | None,
) -> tuple[Collector, OverlappedCollection | None]:
    """Starts the collector of `runner`'s copies of `env` (seeded `runner.seed` + the steps so
    far + i; `backend`, `non_finite_rewards`, `ray_workers`, `ray_address` as AsyncPPO takes
    them), then fits the learner to it and publishes the weights (`_fit_and_sync`); returns it,
    and with `overlap` the OverlappedCollection of its rounds. With `overlap`, the local
    backends collect in a child process (a VectorEnv, in a thread of this one)."""
    overlap = check_bool("overlap", overlap)
    collector = make_collector(
        env,
        runner.ppo,
        runner.num_envs,
        backend=backend,
        seed=runner.seed + runner.total_steps,
        rollout=runner.rollout,
        num_steps=runner.num_steps,
        episode_step_cap=runner.episode_step_cap,
        non_finite_rewards=non_finite_rewards,
        ray_workers=ray_workers,
        ray_address=ray_address,
        in_child_process=overlap and backend != "ray" and not isinstance(env, gym.vector.VectorEnv),
    )
    with _closed_on_failure(collector):
        return collector, _fit_and_sync(collector, runner.ppo, checkpoint, resume, overlap)


@contextmanager
def _closed_on_failure(collector: Collector) -> Iterator[None]:
    """Closes `collector` if the block raises: no worker outlives a refused configuration or a
    failed start."""
    try:
        yield
    except BaseException:
        collector.close()
        raise


def _fit_and_sync(
    collector: Collector, ppo: PPO, checkpoint: dict | None, resume: str | Path | None, overlap: bool
) -> OverlappedCollection | None:
    """Fits the learner to the collector's spaces (a clear error if they differ; a continuous
    PPO without bounds gets the env's), loads the checkpoint's learner state and publishes the
    weights to the collector; returns the OverlappedCollection with `overlap` (else None)."""
    check_spaces(collector.observation_space, collector.action_space, ppo)
    space = collector.action_space
    if ppo.is_continuous and not ppo.action_bounds_given and _has_finite_bounds(space):
        ppo.set_action_bounds(space.low, space.high)
    if checkpoint is not None:
        run_dir = cast("str | Path", resume)  # a checkpoint is read from `resume`
        ppo.load_training_state(checkpoint["learner"], Path(run_dir) / CHECKPOINT_FILE)
    collector.sync(ppo)
    # overlap=True: each round is collected while the learner updates on the one before
    return OverlappedCollection(collector, ppo) if overlap else None


def _periodic_evaluation(
    runner: AsyncPPO, every: int | None, episodes: int, checkpoint: dict | None
) -> PeriodicEvaluation | None:
    """The periodic evaluation of `runner` every `every` env steps (None: none), on env copies
    of its own; a resumed run keeps its best return so far."""
    if every is None:
        return None
    return PeriodicEvaluation(
        runner.make_env,
        every,
        episodes,
        runner.seed + EVAL_SEED_OFFSET,
        deterministic=runner.eval_deterministic,
        episode_step_cap=runner.episode_step_cap,
        start_step=runner.total_steps,
        best_return=None if checkpoint is None else checkpoint["runner"].get("best_eval_return"),
    )


def _warm_up_rnd(ppo: PPO, collector: Collector, steps: int) -> bool:
    """Warms up RND's observation statistics on `steps` random steps of every copy; True."""
    observations = collector.random_observations(steps)
    rnd = cast(RND, ppo.rnd)  # warmed up with RND only
    rnd.update_obs_stats(torch.from_numpy(observations).to(ppo.device))
    return True


def runner_defaults(
    env_id: str | None,
    env: gym.Env | Callable[[], gym.Env] | gym.vector.VectorEnv,
    ppo: PPO,
    preset: bool,
    num_envs: int | None,
    num_steps: int | None,
    eval_deterministic: bool | None,
) -> tuple[int, int, bool]:
    """(num_envs, num_steps, eval_deterministic): those given, else a VectorEnv's own number of
    copies, else the env id's preset (unless `preset=False`), else the PPO family's defaults."""
    defaults = settings_for(env_id, family(ppo.is_continuous, ppo.has_images), "runner", preset)
    if num_envs is None:  # a VectorEnv has its own number of copies
        num_envs = env.num_envs if isinstance(env, gym.vector.VectorEnv) else defaults["num_envs"]
    return (
        num_envs,
        defaults["num_steps"] if num_steps is None else num_steps,
        defaults["eval_deterministic"] if eval_deterministic is None else eval_deterministic,
    )
