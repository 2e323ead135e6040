"""`ppo-tune`'s study: an Optuna study whose trials are ordinary train.py runs.

- **A trial** draws its settings from the env family's search space (AsyncTools/search_space.py),
  fills them into train.py's arguments (flags given to ppo-tune stay fixed and win), and trains
  one run with a run folder of its own under the study's folder. Its periodic evaluations
  (deterministic, `eval_every`) are reported to Optuna as intermediate values, so the pruner can
  stop a poor trial early; its value is the mean evaluation return at the end of training.
- **The study** lives in an Optuna storage: by default a journal file in the study's folder,
  which several processes on one machine share safely; any storage URL (a database server) lets
  workers on several machines join it, with heartbeats: the trial of a worker that died (its
  machine lost) is marked failed after three minutes and tried again once. A journal file has no
  heartbeat: a worker killed outright (SIGKILL) leaves its trial running in the study, where it
  counts toward --trials. Its env and budget are recorded in the study, so a study
  name cannot be reused for another env or budget by mistake.
- **The budget** is a number of finished trials (complete or pruned) for the whole study, so
  running the same command again after an interrupt goes on to the same total, and workers on
  several machines share it. A trial interrupted by Ctrl-C is recorded as failed and its settings
  are queued to be tried again first.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import train_cli
from .AsyncPPO import AsyncPPO, ppo_for_env
from .presets import RUNNER_OPTIONS, family
from .search_space import sample

TUNE_EXTRA = "pip install -e .[tune]"
JOURNAL_FILE = "study.log"  # the default storage, in the study's folder
INTERRUPTED = ("SIGINT", "SIGTERM")
# what fails one trial, not the study: a diverged update (NonFiniteError), a run that ended
# without a finite return, an env that broke (EnvStepError)
TRIAL_FAILURES = (FloatingPointError, RuntimeError)
FAILURES_IN_A_ROW = 5  # a worker stops after this many failed trials in a row
HEARTBEAT_SECONDS = 60  # database storages: a running trial silent for 3 of these is failed


class Interrupted(KeyboardInterrupt):
    """A study stopped by a signal: "SIGINT" (Ctrl-C) or "SIGTERM" (`signal_name`)."""

    def __init__(self, signal_name: str = "SIGINT"):
        super().__init__(signal_name)
        self.signal_name = signal_name


def import_optuna() -> ModuleType:
    """The optuna module, or ImportError with one line naming the extra to install."""
    try:
        return importlib.import_module("optuna")
    except ImportError as error:
        raise ImportError(f"ppo-tune needs Optuna, which is not installed: {TUNE_EXTRA}") from error


@dataclass
class TuneSpec:
    """What every trial of a study shares: the env, its budget and evaluation, the train.py flags
    fixed for all trials, the study's folder."""

    env: str
    steps: int
    eval_every: int
    eval_episodes: int
    seed: int
    folder: Path
    train_argv: list[str]

    def family(self) -> str:
        """The env's family (discrete, continuous, image), which decides the search space."""
        probe = ppo_for_env(self.env, preset=False, device="cpu")
        return family(probe.is_continuous, probe.has_images)


def open_storage(url: str | None, folder: Path) -> Any:
    """An Optuna storage: a journal file (`None`: study.log in `folder`; a path ending in .log)
    or a storage URL (sqlite:///file.db, postgresql://..., mysql://...). ValueError naming
    --storage when it cannot be opened."""
    optuna = import_optuna()
    where = url or str(folder / JOURNAL_FILE)
    try:
        if "://" in where:  # a worker that dies (a machine lost) has its trial failed and retried
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna: chosen knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    where,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=3 * HEARTBEAT_SECONDS,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=1
                    ),
                )
        Path(where).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(where))
    except Exception as error:  # SQLAlchemy's, the driver's or the file system's: all unusable
        raise ValueError(f"--storage {where}: cannot be opened ({type(error).__name__}: {error})") from error


def open_study(storage: Any, name: str, spec: TuneSpec, sampler: Any, pruner: Any) -> Any:
    """The study `name` in `storage`, created if new; ValueError naming --study when it exists
    for another env or budget."""
    optuna = import_optuna()
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=sampler,
        pruner=pruner,
    )
    wanted = {"env": spec.env, "steps": spec.steps, "eval_episodes": spec.eval_episodes}
    recorded = {key: study.user_attrs[key] for key in wanted if key in study.user_attrs}
    if not recorded:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
    elif recorded != wanted:
        raise ValueError(
            f"--study {name}: this study exists for {recorded}, not {wanted}; "
            f"give another --study to tune this env or budget"
        )
    return study


def counted_trials(study: Any, running: bool = True) -> int:
    """The trials that count toward the budget: complete and pruned (and running ones, which
    will finish)."""
    optuna = import_optuna()
    counted = [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    if running:
        counted.append(optuna.trial.TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=counted))


def work(study: Any, spec: TuneSpec, trials: int, deadline: float | None) -> None:
    """Runs trials one after another until the study counts `trials` (running ones included) or
    the deadline (time.monotonic) has passed; a running trial is not cut. A trial whose training
    diverged or failed is recorded as failed (its error logged) and the study goes on."""
    optuna = import_optuna()
    family_name = spec.family()
    ended: list[str] = []  # the states of this worker's trials
    while True:
        with warnings.catch_warnings():  # heartbeats (database storages) are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, retried
        if counted_trials(study) >= trials or (deadline is not None and time.monotonic() >= deadline):
            return
        study.optimize(
            lambda trial: run_trial(trial, spec, family_name),
            n_trials=1,
            gc_after_trial=True,
            catch=TRIAL_FAILURES,
            callbacks=[lambda _, trial: ended.append(trial.state.name)],
        )
        if ended[-FAILURES_IN_A_ROW:] == ["FAIL"] * FAILURES_IN_A_ROW:
            raise RuntimeError(
                f"the last {FAILURES_IN_A_ROW} trials failed (their errors are above); the study stops "
                f"here: check the env and the train.py flags given to ppo-tune"
            )


def run_trial(trial: Any, spec: TuneSpec, family_name: str) -> float:
    """One trial: a train.py run with the drawn settings; its final evaluation return. Stopped by
    Ctrl-C (or SIGTERM) at any point, its settings are queued to be tried again first."""
    optuna = import_optuna()
    drawn = sample(trial, family_name, spec.steps)
    try:
        runner, value = train_trial(trial, spec, trial_args(spec, trial.number, drawn), drawn)
    except KeyboardInterrupt:
        trial.study.enqueue_trial(trial.params)
        raise
    if runner.stopped_by == "callback":
        raise optuna.TrialPruned()
    if value is None or not math.isfinite(value):
        raise RuntimeError(f"trial {trial.number}: no finite evaluation return ({value})")
    return value


def train_trial(
    trial: Any, spec: TuneSpec, args: argparse.Namespace, drawn: dict[str, dict[str, Any]]
) -> tuple[AsyncPPO, float | None]:
    """Trains the trial's run (its folder, train_args.json, its evaluations reported to the
    pruner); returns the runner and its final evaluation return (KeyboardInterrupt when a signal
    stopped it)."""
    trial.set_user_attr("settings", effective_settings(spec, args, drawn))
    ppo, runner = train_cli.build(args, callback=pruning_callback(trial))
    trial.set_user_attr("run_dir", str(runner.run_dir))
    (runner.run_dir / train_cli.ARGS_FILE).write_text(
        json.dumps(train_cli.resolved(args, ppo, runner), indent=1)
    )
    try:
        runner.run()
        value = final_return(runner)
    finally:
        runner.close()
    if runner.stopped_by in INTERRUPTED:
        raise Interrupted(runner.stopped_by)
    return runner, value


def trial_args(spec: TuneSpec, number: int, settings: dict[str, dict[str, Any]]) -> argparse.Namespace:
    """train.py's arguments for trial `number`: the study's fixed flags, then the drawn settings
    for every option those leave out."""
    return train_cli.with_presets_entry(fixed_args(spec, number), settings)


def fixed_args(spec: TuneSpec, number: int = 0) -> argparse.Namespace:
    """train.py's arguments that every trial shares: the flags given to ppo-tune, its env, budget,
    seed and evaluation, and trial `number`'s folder."""
    return train_cli.parse_args(
        [
            *spec.train_argv,
            *("--env", spec.env, "--steps", str(spec.steps), "--seed", str(spec.seed), "--quiet"),
            *("--eval-every", str(spec.eval_every), "--eval-episodes", str(spec.eval_episodes)),
            *("--log-dir", str(spec.folder / f"trial_{number:04d}")),
        ]
    )


def check_fixed_flags(spec: TuneSpec) -> None:
    """ValueError, in one line, when the train.py flags given to ppo-tune do not parse, name an
    option that has no place in a trial (--presets, --seeds, --resume, --track), or give a value
    the learner refuses; found before any trial starts."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):  # argparse's usage text: one line is enough
            args = fixed_args(spec)
    except SystemExit:
        problem = errors.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
        raise ValueError(f"train.py flags {' '.join(spec.train_argv)!r}: {problem}") from None
    for name in ("presets", "seeds", "resume", "track"):
        if getattr(args, name) not in (None, False):
            raise ValueError(
                f"--{name}: not an option of a trial (each trial is one new run of ppo-tune's study)"
            )
    ppo_for_env(spec.env, **{**train_cli.ppo_options(args), "device": "cpu"})  # the learner's checks


def effective_settings(spec: TuneSpec, args: argparse.Namespace, drawn: dict[str, dict[str, Any]]) -> dict:
    """The settings the trial trained with, in the presets format: the drawn ones (a flag fixed
    for the study replaces a draw) and every option fixed for the study."""
    fixed = fixed_args(spec)
    attrs = {"ppo": train_cli.OPTION_ATTRS, "runner": {name: name for name in RUNNER_OPTIONS}}
    return {
        part: {
            name: getattr(args, attr)
            for name, attr in attrs[part].items()
            if name in drawn[part] or getattr(fixed, attr) is not None
        }
        for part in ("ppo", "runner")
    }


def pruning_callback(trial: Any) -> Any:
    """An AsyncPPO callback reporting each evaluation to `trial`; it stops the run (returns
    False) when the pruner says so."""

    def report(runner: AsyncPPO, stats: dict[str, Any]) -> bool | None:
        if stats.get("eval_return") is None:
            return None
        trial.report(float(stats["eval_return"]), int(stats["steps"]))
        return False if trial.should_prune() else None

    return report


def final_return(runner: AsyncPPO) -> float | None:
    """The evaluation return at the end of training: the last periodic one if it came at the last
    round, else a new evaluation now; None when the run was interrupted."""
    evaluation = runner.evaluation
    if runner.stopped_by in INTERRUPTED or evaluation is None:
        return None
    if evaluation.last_return is None or evaluation.next_step - evaluation.every < runner.total_steps:
        return evaluation(runner.ppo, runner.total_steps)[0]
    return evaluation.last_return


def presets_entry(study: Any, spec: TuneSpec) -> dict[str, Any] | None:
    """The best trial's settings as a presets entry (AsyncTools/presets.json's format), its
    source naming the study, its budget and the date; None before any trial completed."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return None
    date = datetime.date.today().isoformat()
    source = (
        f"tuned here: ppo-tune study {study.study_name!r}, best of {counted_trials(study, running=False)} "
        f"finished trials of {spec.steps} env steps each (trial {best.number}, deterministic evaluation "
        f"return {best.value:.1f} over {spec.eval_episodes} episodes), {date}"
    )
    return {"source": source, **best.user_attrs["settings"]}
