"""The run folder of an AsyncPPO run: its logs, checkpoints, best model and final weights."""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Protocol

import torch

from PPO import PPO
from PPO.checkpoint import atomic_save, load_state
from PPO.checks import NonFiniteError

from .evaluation import PeriodicEvaluation
from .history import RunHistory
from .run_log import RunLogger

CHECKPOINT_FILE = "checkpoint.pth"
BEST_DIR = "best"  # the run folder's best model, by periodic evaluation
WEIGHTS_DIR = "weights"  # the weights at the end of a run
CHECKPOINT_FORMAT = "parallel-ppo checkpoint 1"


class Runner(Protocol):
    """What a RunFolder reads of its runner: the AsyncPPO that owns it (AsyncTools/AsyncPPO.py
    imports this module, so the runner is described here rather than imported)."""

    @property
    def ppo(self) -> PPO: ...
    @property
    def env_id(self) -> str | None: ...
    @property
    def seed(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def num_envs(self) -> int: ...
    @property
    def total_steps(self) -> int: ...
    @property
    def rounds(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def history(self) -> RunHistory: ...
    @property
    def evaluation(self) -> PeriodicEvaluation | None: ...
    @property
    def episode_returns(self) -> list[float]: ...
    def recent_returns(self) -> list[float]: ...


class RunFolder:
    """What the AsyncPPO `runner` leaves in `path` (None: no run folder; then only
    `save_checkpoint(file)` writes, to the file given): progress.csv, episodes.csv, games.csv,
    TensorBoard events and learning_curve.png through `run_log.RunLogger` (opened by `open()`,
    which prints the folder), a checkpoint.pth every `checkpoint_every` env steps (0: only at the
    end), the best model by periodic evaluation in `best/`, and, at the end of a run (also after
    a stop signal or an error, unless the learner diverged), the checkpoint and the final
    weights in `weights/`. train.py adds train_args.json.

    A checkpoint holds everything needed to resume, as tensors and plain types only (loadable
    with weights_only=True): {"format": CHECKPOINT_FORMAT, "learner": `ppo.training_state()`,
    "runner": `runner_state()`}, the runner's counters and its `RunHistory.state()`."""

    def __init__(self, path: Path | None, runner: Runner, checkpoint_every: int):
        self.path, self.runner, self.checkpoint_every = path, runner, checkpoint_every
        self._next_checkpoint = runner.total_steps + checkpoint_every
        self._logger: RunLogger | None = None

    @classmethod
    def for_run(
        cls, runner: Runner, log_dir: str | Path | None, resume: str | Path | None, checkpoint_every: int
    ) -> RunFolder:
        """The run folder of `runner`: `resume` (continued), else a new one in `log_dir`, named
        after the runner's env id and seed (`run_folder_path`); with neither, one without a path."""
        return cls(run_folder_path(log_dir, resume, runner.env_id, runner.seed), runner, checkpoint_every)

    @property
    def ppo(self) -> PPO:
        """The runner's learner."""
        return self.runner.ppo

    def open(self) -> RunLogger | None:
        """The run folder's logger (opened at the first call; None without a run folder)."""
        if self.path is not None and self._logger is None:
            self._logger = RunLogger(self.path)
            print(f"run folder: {self.path}", flush=True)
        return self._logger

    def after_round(self, since: tuple[int, int], eval_return: float | None) -> None:
        """Logs a round (the episodes and games recorded after the `since` mark of the runner's
        history; the periodic evaluation's return if it had one) and writes a checkpoint when
        one is due."""
        logger, runner = self.open(), self.runner
        if logger is None:
            return
        history, steps = runner.history, runner.total_steps
        logger.log_round(
            steps,
            runner.seconds,
            self.ppo.stats,
            runner.recent_returns(),
            history.episode_ends(since),
            len(history.episodes),
            eval_return=eval_return,
            recent_episode_returns=runner.episode_returns[-runner.num_envs :],
            game_ends=history.game_ends(since),
        )
        if self.checkpoint_every and steps >= self._next_checkpoint:
            self.save_checkpoint()
            self._next_checkpoint = steps + self.checkpoint_every

    def runner_state(self) -> dict:
        """The checkpoint's runner entry: the counters and the history, as tensors and numbers."""
        runner = self.runner
        evaluation = runner.evaluation
        return dict(
            total_steps=runner.total_steps,
            rounds=runner.rounds,
            seconds=runner.seconds,
            seed=runner.seed,
            steps=runner.steps,
            best_eval_return=None if evaluation is None else evaluation.best_return,
            **runner.history.state(),
        )

    def save_best(self) -> None:
        """Saves the learner's weights as the best model, in `best/`."""
        if self.path is not None:
            self.ppo.save_weights(self.path / BEST_DIR)

    def save_checkpoint(self, file: str | Path | None = None) -> Path:
        """Writes everything needed to resume (learner state, counters, episode history)
        atomically to `file` (default: the run folder's checkpoint.pth); returns the path."""
        if file is None:
            if self.path is None:
                raise ValueError("file: this AsyncPPO has no run folder (log_dir=None); pass a file")
            file = self.path / CHECKPOINT_FILE
        runner = self.runner_state()
        atomic_save(
            {"format": CHECKPOINT_FORMAT, "learner": self.ppo.training_state(), "runner": runner}, Path(file)
        )
        return Path(file)

    def finish(self, failure: BaseException | None) -> None:
        """The end of a run: saves the checkpoint and the weights, unless the learner went
        non-finite, and closes the logs. After a failure, a save that fails too is reported
        without hiding the error."""
        if self.path is None:
            return
        try:
            if failure is None or not self.ppo.non_finite_weights():
                self.save_checkpoint()
                self.ppo.save_weights(self.path / WEIGHTS_DIR)
        except (OSError, NonFiniteError) as error:
            if failure is None:
                raise
            print(f"could not save the run folder after the error below: {error}", file=sys.stderr)
        finally:
            self.close()

    def close(self) -> None:
        """Closes the log files (and writes learning_curve.png)."""
        if self._logger is not None:
            self._logger.close()
            self._logger = None


def read_checkpoint(run_dir: Path, device: torch.device) -> dict:
    """The checkpoint of the run folder `run_dir`, to resume it: {"format", "learner", "runner"}."""
    file = run_dir / CHECKPOINT_FILE
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume: no run folder at {run_dir}")
    state = load_state(file, device)
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"resume: {file} was not written by AsyncPPO.save_checkpoint")
    return state


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


def run_name(env_id: str | None, seed: int) -> str:
    """The run folder's name: `<env>_<time>_seed<seed>`."""
    name = env_id.replace("/", "-").replace(":", "-") if env_id is not None else "env"
    return f"{name}_{time.strftime('%Y%m%d-%H%M%S')}_seed{seed}"


def run_folder_path(
    log_dir: str | Path | None, resume: str | Path | None, env_id: str | None, seed: int
) -> Path | None:
    """The run's folder: `resume` (continued), else a new one in `log_dir` (None: none)."""
    if resume is not None:
        return Path(resume)
    return None if log_dir is None else new_run_folder(Path(log_dir), run_name(env_id, seed))


def resumed_counters(checkpoint: dict | None) -> tuple[int, int, float]:
    """(total_steps, rounds, seconds) saved in `checkpoint` (None: a new run's zeros)."""
    if checkpoint is None:
        return 0, 0, 0.0
    runner = checkpoint["runner"]
    return int(runner["total_steps"]), int(runner["rounds"]), float(runner["seconds"])
