"""AsyncPPO: the one-liner that trains a PPO learner on N copies of an env.

`EnvVectorizer` and `VecMemory` are importable from here, as in the original project.
"""
from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from PPO import PPO
from PPO.checkpoint import atomic_save, load_state
from PPO.checks import (NonFiniteError, check_bool, check_finite_float, check_non_negative_int,
                        check_positive_float, check_positive_int)

from .evaluation import EVAL_SEED_OFFSET, PeriodicEvaluation, evaluate
from .collectors import make_collector
from .overlap import OverlappedCollection
from .rollout import EPISODE_STEP_CAP, EpisodeRound, check_episode_step_cap, check_rollout
from .envs import (env_from_id, env_source, flattened_from, is_image_space, observation_parts_of,
                   with_flat_observations)
from .presets import env_id_of, family, settings_for
from .run_log import RunLogger
from .vec_memory import VecMemory
from .vectorizer import EnvStepError, EnvVectorizer, new_env

__all__ = ["AsyncPPO", "EnvVectorizer", "VecMemory", "EnvStepError", "check_spaces", "ppo_for_env",
           "space_options"]


def _has_finite_bounds(action_space: gym.spaces.Box) -> bool:
    return bool(np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high)))


def space_options(observation_space: gym.Space, action_space: gym.Space) -> dict:
    """The PPO options that describe these spaces: `observ_dim` (and `observation_shape` for
    images), `is_continuous`, `action_dim` (and `action_nvec` for MultiDiscrete). Unsupported
    spaces raise TypeError naming the space."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise TypeError(f"observation_space: only Box observations (any shape; uint8 HxWxC or "
                        f"CxHxW frames go to a CNN) and Discrete, MultiDiscrete, MultiBinary, "
                        f"Dict or Tuple ones (flattened for an env, a function or an id; a "
                        f"VectorEnv must flatten its own: gymnasium.wrappers.vector."
                        f"FlattenObservation) are supported, got {observation_space}")
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
    raise TypeError(f"action_space: only Discrete, 1-D MultiDiscrete, 1-D MultiBinary and 1-D "
                    f"Box actions are supported, got {action_space}")


def ppo_for_env(env: gym.Env | Callable[[], gym.Env] | str, *, preset: bool = True,
                **ppo_options) -> PPO:
    """A PPO whose sizes (and, for Box actions, bounds) fit `env` (an env, a function making
    one, or an env id; Discrete, Dict, Tuple... observations are flattened, as AsyncPPO
    flattens them, and recorded in `observation_space`), with settings that learn on it: the
    defaults of its family (discrete, continuous or image; see AsyncTools/presets.py) and,
    unless `preset=False`, its env id's preset; `ppo_options` override both."""
    if isinstance(env, str) or not isinstance(env, (gym.Env, gym.vector.VectorEnv)):
        made = env_from_id(env) if isinstance(env, str) else new_env(env)  # one copy: its spaces
        made.close()
        return ppo_for_env(made, preset=preset, **ppo_options)
    env = with_flat_observations(env)
    observation_space, action_space = single_spaces(env)
    options = space_options(observation_space, action_space)
    parts = observation_parts_of(env)
    if parts is not None:  # images among a Dict's entries (AsyncTools.envs.FlattenParts)
        options["observation_parts"] = parts
    if flattened_from(env) is not None:  # recorded, so that evaluation and play can check it
        options["observation_space"] = flattened_from(env)
    kind = family(options["is_continuous"], "observation_shape" in options or parts is not None)
    ppo_options = {**settings_for(env_id_of(env), kind, "ppo", preset), **ppo_options}
    if options["is_continuous"] and "action_scaling" not in ppo_options \
            and _has_finite_bounds(action_space):
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
        raise ValueError(f"observ_dim: the PPO was built with observ_dim={ppo.observ_dim}, but the "
                         f"env's observations have shape {observation_space.shape} "
                         f"({options['observ_dim']} values)")
    if options["is_continuous"] != ppo.is_continuous:
        kind = "continuous" if options["is_continuous"] else "discrete"
        raise ValueError(f"is_continuous: the env's action space {action_space} is {kind}, but "
                         f"the PPO was built with is_continuous={ppo.is_continuous}")
    if options["action_dim"] != ppo.action_dim or options.get("action_nvec") != ppo.action_nvec:
        built = f"action_dim={ppo.action_dim}"
        if ppo.action_nvec is not None:
            built += f", action_nvec={list(ppo.action_nvec)}"
        raise ValueError(f"action_dim: the PPO was built with {built}, but the env's action space "
                         f"is {action_space}")


CHECKPOINT_FILE = "checkpoint.pth"
BEST_DIR = "best"  # the run folder's best model, by periodic evaluation
CHECKPOINT_FORMAT = "parallel-ppo checkpoint 1"


class AsyncPPO:
    """Trains `ppo` on `num_envs` independent copies of `env` (an env, a function making one,
    or an env id: Atari ids get the standard Atari preprocessing) for `steps` env steps; a
    gymnasium VectorEnv (NEXT_STEP autoreset) is used as it is, `num_envs` taken from it.

    Each round collects trajectories, hands them to `ppo.memory` and calls `ppo.learn()`:
    - `rollout="episodes"`: one episode in every copy (episode-synchronous, as in the original);
    - `rollout="steps"`: `num_steps` steps of every copy, episodes running on across rounds and
      bootstrapped at the horizon.
    `backend` picks how the copies are stepped (see `EnvVectorizer`). A continuous PPO built
    without `action_scaling`/`action_low` gets the env's Box bounds, and one with `anneal_lr`
    but no `total_steps` anneals over `steps`. With RND, `rnd_warmup_steps` random steps of
    every copy warm up RND's observation statistics before the first round (not counted in
    `steps`). Copies are seeded `seed + i` (default: the PPO's seed), so the same seeds give
    the same run on CPU. A NaN or infinite reward from a copy raises an EnvOutputError naming
    the copy and the step; `non_finite_rewards="zero"` replaces it by 0 instead (counted in
    `env.non_finite_rewards_replaced`). In `episodes` rounds, an episode still running after
    `episode_step_cap` steps is cut there (bootstrapped, with a warning).

    `overlap=True` collects each round while the learner updates on the previous one
    (AsyncTools/overlap.py): round k+1 is acted by a copy of the policy holding the weights
    published after round k-1, a lag of one update that PPO's ratio corrects with the behaviour
    log-probs recorded at sampling. Same seeds, same run. The local backends then step the copies
    in a collector process of their own (AsyncTools/process_collector.py; `env` must be an id,
    an env with a spec, or a picklable function), Ray on its actors; a VectorEnv passed as `env`
    is stepped in a thread of this process. A round collected in the background when `run()`
    returns is the first of the next `run()`; `close()` drops it.

    Run folder: with `log_dir`, `run()` writes `log_dir/<env>_<time>_seed<seed>/` (created
    exclusively, with a `-1`, `-2`... suffix when taken; printed at the start): progress.csv,
    episodes.csv, TensorBoard events (if installed), a checkpoint every `checkpoint_every` env
    steps and at the end (also on Ctrl-C, SIGTERM or an error, unless the learner diverged),
    the final weights in `weights/` and learning_curve.png. `resume=<run folder>` continues that run: same learner
    state, counters and files (its env copies start new episodes, seeded `seed + steps so far + i`).

    `backend="ray"` steps the copies on `ray_workers` Ray actors instead
    (AsyncTools/ray_backend.py), joining the cluster at `ray_address` (or `RAY_ADDRESS`) or
    starting Ray on this machine; `worker_restarts` counts the workers that died and were
    restarted. `backend="envpool"` steps them in EnvPool's C++ thread pool (`env` an id such as
    "Pong-v5" or "HalfCheetah-v5"; AsyncTools/envpool_backend.py). Every backend is a
    `Collector` (AsyncTools/collectors.py), made by `make_collector`.
    """

    def __init__(self, env: gym.Env | Callable[[], gym.Env] | str | gym.vector.VectorEnv, ppo: PPO,
                 num_envs: int | None = None,
                 steps: int = 100000, *, seed: int | None = None, progress_bar: bool = True,
                 rollout: str = "steps", num_steps: int | None = None, backend: str = "auto",
                 rnd_warmup_steps: int = 64, log_dir: str | Path | None = None,
                 checkpoint_every: int = 100_000, resume: str | Path | None = None,
                 ray_workers: int | None = None, ray_address: str | None = None,
                 episode_step_cap: int = EPISODE_STEP_CAP, non_finite_rewards: str = "raise",
                 eval_every: int | None = None, eval_episodes: int = 10,
                 eval_deterministic: bool | None = None, stop_at_return: float | None = None,
                 callback: Callable[["AsyncPPO", dict], bool | None] | None = None,
                 preset: bool = True, overlap: bool = False):
        if not isinstance(ppo, PPO):
            raise TypeError(f"ppo must be a PPO instance, got {type(ppo).__name__}")
        self.env_id = env if isinstance(env, str) else env_id_of(env)
        # Discrete, Dict, Tuple... observations are flattened for the learner, as for env ids
        env = given = with_flat_observations(env)  # an id stays an id (EnvPool builds from it)
        if isinstance(env, str):
            env = env_source(env)
        defaults = settings_for(self.env_id, family(ppo.is_continuous, ppo.has_images), "runner",
                                preset)
        if num_envs is None:  # a VectorEnv has its own number of copies
            num_envs = env.num_envs if isinstance(env, gym.vector.VectorEnv) else defaults["num_envs"]
        self.num_envs = check_positive_int("num_envs", num_envs)
        self.steps = check_positive_int("steps", steps)
        self.num_steps = check_positive_int("num_steps", defaults["num_steps"] if num_steps is None
                                            else num_steps)
        self.rnd_warmup_steps = check_non_negative_int("rnd_warmup_steps", rnd_warmup_steps)
        self.checkpoint_every = check_non_negative_int("checkpoint_every", checkpoint_every)
        self.rollout = check_rollout(rollout)
        self.episode_step_cap = check_episode_step_cap(episode_step_cap)
        self.stop_at_return = _check_stop_at_return(stop_at_return, eval_every)
        self.eval_deterministic = check_bool("eval_deterministic", defaults["eval_deterministic"]
                                             if eval_deterministic is None else eval_deterministic)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be a function (runner, stats) -> bool, got "
                            f"{type(callback).__name__}")
        self.callback = callback
        self.ppo = ppo
        if ppo.anneal_lr and ppo.total_steps is None:
            ppo.total_steps = self.steps
        self.seed = ppo.seed if seed is None else seed
        self.total_steps, self.rounds, self.seconds = 0, 0, 0.0
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.episode_end_steps: list[int] = []
        # Whole games the env reported (Atari through the helper: the real, unclipped score of
        # a game of several lives); where there are any, they are the run's headline returns.
        self.game_returns: list[float] = []
        self.game_end_steps: list[int] = []
        checkpoint = self._read_checkpoint(resume) if resume is not None else None
        self._env_source = env
        self.evaluation = None if eval_every is None else PeriodicEvaluation(
            self.make_env, eval_every, eval_episodes, self.seed + EVAL_SEED_OFFSET,
            deterministic=self.eval_deterministic,
            episode_step_cap=self.episode_step_cap, start_step=self.total_steps,
            best_return=None if checkpoint is None else checkpoint["runner"].get("best_eval_return"))
        overlap = check_bool("overlap", overlap)
        self.collector = make_collector(
            given, ppo, self.num_envs, backend=backend, seed=self.seed + self.total_steps,
            rollout=self.rollout, num_steps=self.num_steps, episode_step_cap=self.episode_step_cap,
            non_finite_rewards=non_finite_rewards, ray_workers=ray_workers, ray_address=ray_address,
            in_child_process=overlap and backend != "ray"
            and not isinstance(env, gym.vector.VectorEnv))
        try:
            check_spaces(self.collector.observation_space, self.collector.action_space, ppo)
            space = self.collector.action_space
            if ppo.is_continuous and not ppo.action_bounds_given and _has_finite_bounds(space):
                ppo.set_action_bounds(space.low, space.high)
            if checkpoint is not None:
                ppo.load_training_state(checkpoint["learner"], Path(resume) / CHECKPOINT_FILE)
            self.collector.sync(ppo)
            # overlap=True: each round is collected while the learner updates on the one before
            self.overlap = OverlappedCollection(self.collector, ppo) if overlap else None
            if resume is not None:
                self.run_dir: Path | None = Path(resume)
            else:
                self.run_dir = None if log_dir is None else new_run_folder(
                    Path(log_dir), _run_name(self.env_id, self.seed))
        except BaseException:
            self.collector.close()  # no worker outlives a refused configuration or a failed start
            raise
        self.progress_bar = progress_bar
        self.interrupted = False
        self.stopped_by: str | None = None
        self._deadline: float | None = None
        self._rnd_warmed_up = checkpoint is not None
        self._logger: RunLogger | None = None
        self._next_checkpoint = self.total_steps + self.checkpoint_every

    # ------------------------------------------------------------------ training
    def train_round(self) -> EpisodeRound:
        """One round: collects it, transfers it to `ppo.memory` and calls `ppo.learn()`; then,
        as in `run()`, logs it in the run folder, checkpoints when due, evaluates when due
        (saving a new best model; `stop_at_return`) and calls `callback`."""
        started = time.perf_counter()
        episodes_before, games_before = len(self.episode_returns), len(self.game_returns)
        collected = self._collect_and_learn()
        self.seconds += time.perf_counter() - started
        self.total_steps += collected.steps
        self.rounds += 1
        self.episode_returns.extend(collected.episode_returns.tolist())
        self.episode_lengths.extend(collected.episode_lengths.tolist())
        self.episode_end_steps.extend([self.total_steps] * len(collected.episode_returns))
        self.game_returns.extend(collected.game_returns.tolist())
        self.game_end_steps.extend([self.total_steps] * len(collected.game_returns))
        self._after_round(episodes_before, games_before)
        return collected

    def _collect_and_learn(self) -> EpisodeRound:
        """Collects a round, hands it to `ppo.memory`, learns, and syncs the collector with the
        new weights when there was an update."""
        if self.ppo.rnd is not None and not self._rnd_warmed_up:
            observations = self.collector.random_observations(self.rnd_warmup_steps)
            self.ppo.rnd.update_obs_stats(torch.from_numpy(observations).to(self.ppo.device))
            self._rnd_warmed_up = True
        if self.overlap is not None:  # collected with the weights published a round ago
            rollout, collected = self.overlap.next_round(self._should_stop)
        else:
            rollout, collected = self.collector.collect(self.ppo, should_stop=self._should_stop)
        if rollout is not None:
            self.ppo.memory.add(rollout)
        if self.ppo.learn() is not None and self.overlap is None:
            self.collector.sync(self.ppo)
        return collected

    def recent_returns(self) -> list[float]:
        """The returns the run reports (bar, progress.csv's mean_return, callback): the last
        `num_envs` whole games where the env reports games (Atari: real scores), else the last
        `num_envs` episodes."""
        return (self.game_returns or self.episode_returns)[-self.num_envs:]

    def _after_round(self, episodes_before: int, games_before: int) -> None:
        eval_return = None
        if self.evaluation is not None and self.evaluation.due(self.total_steps):
            eval_return = self._evaluate_periodically()
        logger = self._open_logger()
        if logger is not None:
            self._log_round(logger, episodes_before, games_before, eval_return)
            if self.checkpoint_every and self.total_steps >= self._next_checkpoint:
                self.save_checkpoint()
                self._next_checkpoint = self.total_steps + self.checkpoint_every
        if self.callback is not None and self.callback(self, self.round_stats(eval_return)) is False:
            self.stopped_by = self.stopped_by or "callback"

    def _evaluate_periodically(self) -> float:
        """The periodic evaluation: its mean return; a new best is saved in the run folder's
        `best/`, and reaching `stop_at_return` stops the run."""
        mean, improved = self.evaluation(self.ppo, self.total_steps)
        if improved and self.run_dir is not None:
            self.ppo.save_weights(self.run_dir / BEST_DIR)
        if self.stop_at_return is not None and mean >= self.stop_at_return:
            self.stopped_by = self.stopped_by or "stop_at_return"
        return mean

    def round_stats(self, eval_return: float | None = None) -> dict[str, float]:
        """What the callback receives after a round: the learner's statistics and the run's
        counters (steps, rounds, seconds, episodes, mean_return of the last num_envs
        episodes, eval_return when the round was evaluated, best_eval_return)."""
        recent = self.recent_returns()
        stats = dict(self.ppo.stats, steps=self.total_steps, rounds=self.rounds,
                     seconds=self.seconds, episodes=len(self.episode_returns))
        if recent:
            stats["mean_return"] = float(np.mean(recent))
        if eval_return is not None:
            stats["eval_return"] = eval_return
        if self.evaluation is not None and self.evaluation.best_return is not None:
            stats["best_eval_return"] = self.evaluation.best_return
        return stats

    @property
    def env(self):
        """What steps the env copies: the EnvVectorizer (a RayCollector on Ray)."""
        return self.collector.env

    @property
    def worker_restarts(self) -> int:
        """Ray backend: how many times a worker died and was restarted (0 on the others)."""
        return self.collector.worker_restarts

    def run(self, timeout: float | None = None) -> list[float]:
        """Trains until `steps` env steps are collected, or `timeout` seconds have passed;
        returns every finished episode's return.

        Ctrl-C (SIGINT) and SIGTERM stop training after the round under way (a second signal
        stops at once), save a checkpoint and the weights (with a run folder) and return;
        `interrupted` is then True and `stopped_by` names the signal ("timeout" for a timeout).
        An `episodes` round under way when the time is up or a signal comes is cut short.
        If training fails with an error, the checkpoint and weights are still saved when the
        learner is finite (never over good files when it diverged), and the error is raised."""
        if timeout is not None:
            timeout = check_positive_float("timeout", timeout)
        self._open_logger()
        self._deadline = None if timeout is None else time.perf_counter() + timeout
        self.stopped_by, failure = None, None
        with tqdm(total=self.steps, initial=min(self.total_steps, self.steps), unit="step",
                  disable=not self.progress_bar, dynamic_ncols=True) as pbar, \
                stop_signals(self._stop_on_signal):
            try:
                while self.total_steps < self.steps and not self._should_stop():
                    collected = self.train_round()
                    self._show_progress(pbar, collected.steps)
            except KeyboardInterrupt:  # a second signal, or Ctrl-C where no handler could be set
                self.stopped_by = self.stopped_by or "SIGINT"
            except BaseException as error:
                failure = error
                raise
            finally:
                if self.overlap is not None:
                    self.overlap.wait()  # no thread outlives run(); its round is the next one's
                self._deadline = None
                self.interrupted = self.stopped_by in STOP_SIGNALS
                if self.stopped_by is not None:
                    pbar.write(self._stop_message(timeout))
                if self.run_dir is not None:
                    self._finish_run_folder(failure)
        return self.episode_returns

    def _stop_on_signal(self, name: str) -> None:
        self.stopped_by = self.stopped_by or name

    def _should_stop(self) -> bool:
        """True once a stop signal came or the run's timeout has passed."""
        if self.stopped_by is None and self._deadline is not None \
                and time.perf_counter() >= self._deadline:
            self.stopped_by = "timeout"
        return self.stopped_by is not None

    def _stop_message(self, timeout: float | None) -> str:
        causes = {"timeout": f"stopped by the timeout ({timeout or 0:g} s)",
                  "callback": "stopped by the callback",
                  "stop_at_return": f"stopped: the evaluation return reached "
                                    f"stop_at_return={self.stop_at_return:g}"
                                    if self.stop_at_return is not None else ""}
        cause = causes.get(self.stopped_by, f"interrupted by {self.stopped_by}")
        return f"{cause} at step {self.total_steps}" + (
            f"; checkpoint saved in {self.run_dir}" if self.run_dir is not None else "")

    def _show_progress(self, pbar: tqdm, new_steps: int) -> None:
        recent = self.recent_returns()
        if recent:
            pbar.set_description(f"Mean reward {np.mean(recent): .1f}", refresh=False)
        if self.ppo.stats:
            shown = format_stats(self.ppo.stats)
            if self.evaluation is not None and self.evaluation.last_return is not None:
                shown = f"eval={self.evaluation.last_return:.1f} " + shown
            pbar.set_postfix_str(shown, refresh=False)
        pbar.update(min(pbar.total - pbar.n, new_steps))

    # ------------------------------------------------------------------ run folder
    def _open_logger(self) -> RunLogger | None:
        """The run folder's logger (opened at the first call; None without a run folder)."""
        if self.run_dir is not None and self._logger is None:
            self._logger = RunLogger(self.run_dir)
            print(f"run folder: {self.run_dir}", flush=True)
        return self._logger

    def _log_round(self, logger: RunLogger, episodes_before: int, games_before: int,
                   eval_return: float | None) -> None:
        ends = zip(self.episode_end_steps[episodes_before:], self.episode_returns[episodes_before:],
                   self.episode_lengths[episodes_before:])
        games = zip(self.game_end_steps[games_before:], self.game_returns[games_before:])
        logger.log_round(self.total_steps, self.seconds, self.ppo.stats, self.recent_returns(),
                         list(ends), len(self.episode_returns), eval_return=eval_return,
                         recent_episode_returns=self.episode_returns[-self.num_envs:],
                         game_ends=list(games))

    def _finish_run_folder(self, failure: BaseException | None) -> None:
        """Saves the checkpoint and the weights, unless the learner went non-finite, and closes
        the logs. After a failure, a save that fails too is reported without hiding the error."""
        try:
            if failure is None or not self.ppo.non_finite_weights():
                self.save_checkpoint()
                self.ppo.save_weights(self.run_dir / "weights")
        except (OSError, NonFiniteError) as error:
            if failure is None:
                raise
            print(f"could not save the run folder after the error below: {error}", file=sys.stderr)
        finally:
            self._close_logger()

    def _close_logger(self) -> None:
        if self._logger is not None:
            self._logger.close()
            self._logger = None

    def save_checkpoint(self, file: str | Path | None = None) -> Path:
        """Writes everything needed to resume (learner state, counters, episode history)
        atomically to `file` (default: the run folder's checkpoint.pth); returns the path."""
        if file is None:
            if self.run_dir is None:
                raise ValueError("file: this AsyncPPO has no run folder (log_dir=None); pass a file")
            file = self.run_dir / CHECKPOINT_FILE
        runner = dict(total_steps=self.total_steps, rounds=self.rounds, seconds=self.seconds,
                      seed=self.seed, steps=self.steps,
                      best_eval_return=None if self.evaluation is None else self.evaluation.best_return,
                      episode_returns=torch.tensor(self.episode_returns, dtype=torch.float64),
                      episode_lengths=torch.tensor(self.episode_lengths, dtype=torch.int64),
                      episode_end_steps=torch.tensor(self.episode_end_steps, dtype=torch.int64),
                      game_returns=torch.tensor(self.game_returns, dtype=torch.float64),
                      game_end_steps=torch.tensor(self.game_end_steps, dtype=torch.int64))
        atomic_save({"format": CHECKPOINT_FORMAT, "learner": self.ppo.training_state(),
                     "runner": runner}, Path(file))
        return Path(file)

    def _read_checkpoint(self, resume: str | Path) -> dict:
        run_dir = Path(resume)
        file = run_dir / CHECKPOINT_FILE
        if not run_dir.is_dir():
            raise FileNotFoundError(f"resume: no run folder at {run_dir}")
        state = load_state(file, self.ppo.device)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"resume: {file} was not written by AsyncPPO.save_checkpoint")
        runner = state["runner"]
        self.total_steps, self.rounds = int(runner["total_steps"]), int(runner["rounds"])
        self.seconds = float(runner["seconds"])
        self.episode_returns = runner["episode_returns"].tolist()
        self.episode_lengths = runner["episode_lengths"].tolist()
        self.episode_end_steps = runner["episode_end_steps"].tolist()
        self.game_returns = runner.get("game_returns", torch.zeros(0)).tolist()
        self.game_end_steps = runner.get("game_end_steps", torch.zeros(0)).tolist()
        return state

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, env: gym.Env | None = None, episodes: int = 10,
                 deterministic: bool | None = None, seed: int | None = None) -> list[float]:
        """Returns of `episodes` whole episodes of the trained policy, on `env` or, by default,
        on a fresh copy of the training env; `deterministic=None` plays as the periodic
        evaluation does (`eval_deterministic`)."""
        return evaluate(self.ppo, env if env is not None else self.make_env(), episodes,
                        self.eval_deterministic if deterministic is None else deterministic, seed,
                        episode_step_cap=self.episode_step_cap)

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
        self._close_logger()


def _check_stop_at_return(stop_at_return: float | None, eval_every: int | None) -> float | None:
    if stop_at_return is None:
        return None
    if eval_every is None:
        raise ValueError("stop_at_return: it stops at a periodic evaluation's mean return, so it "
                         "needs eval_every (e.g. eval_every=10_000)")
    return check_finite_float("stop_at_return", stop_at_return)


def new_run_folder(parent: Path, name: str) -> Path:
    """Creates `parent/name`, or `parent/name-1`, `-2`... if taken: created exclusively, so
    runs started at the same moment never share a folder."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count():
        folder = parent / (name if attempt == 0 else f"{name}-{attempt}")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


STOP_SIGNALS = ("SIGINT", "SIGTERM")


@contextmanager
def stop_signals(on_signal: Callable[[str], None]) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM call `on_signal(name)` (the run stops after the round
    under way) and a second one raises KeyboardInterrupt at once. Handlers can only be set in
    the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def handle(signum: int, _frame) -> None:
        if received:
            raise KeyboardInterrupt(f"second stop signal ({signal.Signals(signum).name})")
        received.append(signal.Signals(signum).name)
        on_signal(received[0])

    previous = {name: signal.signal(getattr(signal, name), handle) for name in STOP_SIGNALS}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), signal.SIG_DFL if handler is None else handler)


def _run_name(env_id: str | None, seed: int) -> str:
    name = env_id.replace("/", "-").replace(":", "-") if env_id is not None else "env"
    return f"{name}_{time.strftime('%Y%m%d-%H%M%S')}_seed{seed}"


STATS_SHOWN = {"policy_loss": ("pi", ".3f"), "value_loss": ("v", ".3g"), "entropy": ("ent", ".3f"),
               "approx_kl": ("kl", ".4f"), "clip_fraction": ("clip", ".2f"),
               "explained_variance": ("ev", ".2f"), "intrinsic_reward": ("int", ".3g")}


def format_stats(stats: dict[str, float]) -> str:
    """The learner's last statistics, short, for the progress bar."""
    return " ".join(f"{short}={stats[name]:{spec}}" for name, (short, spec) in STATS_SHOWN.items()
                    if name in stats)
