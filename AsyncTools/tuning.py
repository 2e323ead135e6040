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
- **Several envs of one family** (`--env A B C --reference FILE`): a trial trains the same
  settings on each env in turn, and its value is the mean over the envs of the normalised
  return, (return - random) / (reference - random), the random policy's return and a reference
  trainer's (SB3's defaults at the same budget, say) being given per env in the reference file.
  This tunes a family's defaults rather than one env's preset.
- **The budget** is a number of finished trials (complete or pruned) for the whole study, so
  running the same command again after an interrupt goes on to the same total, and workers on
  several machines share it. A trial interrupted by Ctrl-C is recorded as failed and its settings
  are queued to be tried again first.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import importlib
import io
import json
import math
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from PPO import PPO
from PPO.checks import check_finite_float

from . import train_cli
from .AsyncPPO import AsyncPPO, ppo_for_env, runner_defaults
from .presets import RUNNER_OPTIONS, family
from .search_space import params_of, sample

TUNE_EXTRA = "pip install -e .[tune]"
JOURNAL_FILE = "study.log"  # the default storage, in the study's folder
INTERRUPTED = ("SIGINT", "SIGTERM")
# what fails one trial, not the study: a diverged update (NonFiniteError), a run that ended
# without a finite return, an env that broke (EnvStepError)
TRIAL_FAILURES = (FloatingPointError, RuntimeError)
FAILURES_IN_A_ROW = 5  # a worker stops after this many failed trials in a row
HEARTBEAT_SECONDS = 60  # database storages: a running trial silent for 3 of these is failed
AGGREGATES = {"mean": "mean", "min": "lowest"}  # --aggregate: how its value is worded
# what a study is, recorded with it: reopening it with other values is refused
STUDY_KEYS = ("env", "steps", "eval_episodes", "references", "trial_timeout", "aggregate", "seeds")
PRUNE_AFTER = 3  # no run is pruned in the first 1/PRUNE_AFTER of its steps, on any env of a study


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


@dataclass(frozen=True)
class Reference:
    """An env's scale for the normalised return: `random` (a random policy's return) maps to 0,
    `reference` (a reference trainer's return at the study's budget) to 1."""

    random: float
    reference: float

    def score(self, value: float) -> float:
        """`value` on this env's scale."""
        return (value - self.random) / (self.reference - self.random)


@dataclass
class TuneSpec:
    """What every trial of a study shares: the envs (one, or several of a family), their budget
    and evaluation, the training seeds (one run per env and seed), the train.py flags fixed for
    all trials, the study's folder; the family, found by `checked_family`; the references that
    normalise the returns (required for several envs); the time each run may train; how the envs'
    scores make the trial's value."""

    envs: tuple[str, ...]
    steps: int
    eval_every: int
    eval_episodes: int
    seeds: tuple[int, ...]
    folder: Path
    train_argv: list[str]
    family: str = ""
    references: dict[str, Reference] | None = None
    trial_timeout: float | None = None  # seconds each run may train (train.py --timeout)
    aggregate: str = "mean"  # of the envs' scores: "mean", or "min" (the worst env's)

    @property
    def label(self) -> str:
        """The envs, as the study records them: "CartPole-v1", or "CartPole-v1 Acrobot-v1"."""
        return " ".join(self.envs)

    @property
    def runs(self) -> tuple[tuple[str, int], ...]:
        """A trial's train.py runs, in the order they train: (env, seed), every seed on the first
        env, then on the next."""
        return tuple((env, seed) for env in self.envs for seed in self.seeds)

    def run_key(self, index: int) -> str:
        """Run number `index` as a trial's records name it: its env, and its seed when the study
        has several ("CartPole-v1 seed1")."""
        env, seed = self.runs[index]
        return env if len(self.seeds) == 1 else f"{env} seed{seed}"

    def score(self, env: str, value: float) -> float:
        """A return of `env` as the study counts it: normalised when there are references."""
        return value if self.references is None else self.references[env].score(value)

    def offset(self, index: int) -> int:
        """The step from which run number `index` reports its evaluations: 2 x index x steps,
        clear of the earlier runs, which stop within a round (at most steps / 8 in the search
        space) past their budget."""
        return 2 * index * self.steps

    def value(self, returns: dict[str, float]) -> float:
        """A trial's value from its envs' returns (each the mean over the seeds): the mean of
        their scores, or the lowest ("min": settings that give up one env for another do not gain
        by it)."""
        scores = [self.score(env, value) for env, value in returns.items()]
        return min(scores) if self.aggregate == "min" else sum(scores) / len(scores)

    def should_prune(self, trial: Any, index: int, score: float) -> bool:
        """The pruner's verdict on `trial` during run number `index` (`runs`), whose latest score
        is `score`, judged on that run's evaluations alone: Optuna's pruners compare a trial's
        best value at any step, which an earlier run's score would set (a trial far ahead on the
        first env was never stopped on a later one). With aggregate "min", only where `score` is
        also below the median value of the study's complete trials: a trial's value is its
        lowest env's score, and an env on which every trial does well (where the median rule
        decides by noise) does not stop one."""
        optuna = import_optuna()
        study = trial.study
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        view = copy.copy(next(t for t in running if t.number == trial.number))
        start = self.offset(index)
        view.intermediate_values = {s: v for s, v in view.intermediate_values.items() if s >= start}
        if not study.pruner.prune(study, view):
            return False
        if self.aggregate != "min":
            return True
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return not complete or score < statistics.median(t.value for t in complete)


def read_references(path: str | Path, envs: Sequence[str]) -> dict[str, Reference]:
    """The references of `envs` from a JSON file {env: {"random": R0, "reference": R1, ...}} (other
    keys, such as "source", are kept for the reader). ValueError naming --reference when the file
    cannot be read, lacks an env or gives no finite, distinct pair."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"--reference {path}: cannot be read ({error})") from error
    references = {}
    for env in envs:
        entry = table.get(env) if isinstance(table, dict) else None
        try:
            if not isinstance(entry, dict):
                raise ValueError(env)
            pair = [check_finite_float(key, entry.get(key)) for key in ("random", "reference")]
            if pair[0] == pair[1]:
                raise ValueError(env)
        except ValueError:
            raise ValueError(
                f'--reference {path}: expected {env!r}: {{"random": number, "reference": '
                f"another number}}, got {entry!r}"
            ) from None
        references[env] = Reference(*pair)
    return references


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
    for another env, budget, scale, time limit or aggregate."""
    optuna = import_optuna()
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=sampler,
        pruner=pruner,
    )
    wanted: dict[str, Any] = {"env": spec.label, "steps": spec.steps, "eval_episodes": spec.eval_episodes}
    if spec.references is not None:  # the objective's scale: part of what the study is
        wanted["references"] = {env: [r.random, r.reference] for env, r in spec.references.items()}
    if spec.trial_timeout is not None:  # so is a time limit
        wanted["trial_timeout"] = spec.trial_timeout
    if spec.aggregate != "mean":  # and how the envs' scores are combined
        wanted["aggregate"] = spec.aggregate
    if len(spec.seeds) > 1:  # and a value that is a mean over seeds
        wanted["seeds"] = list(spec.seeds)
    # all of them, those left out too: a study made with a time limit is not reopened without one
    recorded = {key: value for key, value in study.user_attrs.items() if key in STUDY_KEYS}
    if not recorded:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
    elif recorded != wanted:
        raise ValueError(
            f"--study {name}: this study exists for {recorded}, not {wanted}; "
            f"give another --study to tune these envs, budget, references, time limit, aggregate or seeds"
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
    ended: list[str] = []  # the states of this worker's trials
    while True:
        with warnings.catch_warnings():  # heartbeats (database storages) are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed, retried
        if counted_trials(study) >= trials or (deadline is not None and time.monotonic() >= deadline):
            return
        study.optimize(
            lambda trial: run_trial(trial, spec),
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


def run_trial(trial: Any, spec: TuneSpec) -> float:
    """One trial: a train.py run with the drawn settings on each env of the study and each seed;
    its value, the final evaluation return (several seeds: each env's mean over them; several
    envs: the mean, or the lowest, of their normalised returns, `TuneSpec.value`). Stopped by
    Ctrl-C (or SIGTERM) at any point, its settings are queued to be tried again first."""
    optuna = import_optuna()
    drawn = sample(trial, spec.family, spec.steps)
    trial.set_user_attr("settings", effective_settings(spec, trial_args(spec, trial.number, drawn), drawn))
    finals: dict[str, list[float]] = {env: [] for env in spec.envs}
    try:
        for index, (env, _) in enumerate(spec.runs):
            runner, value = train_trial(trial, spec, index, drawn)
            if runner.stopped_by == "callback":
                raise optuna.TrialPruned()
            if value is None or not math.isfinite(value):
                where = spec.run_key(index)
                raise RuntimeError(f"trial {trial.number} ({where}): no finite evaluation return ({value})")
            finals[env].append(value)
            if report_final(trial, spec, index, value) and index < len(spec.runs) - 1:
                raise optuna.TrialPruned()  # the runs left are not trained
    except KeyboardInterrupt:
        trial.study.enqueue_trial(trial.params)
        raise
    if len(spec.seeds) > 1:
        trial.set_user_attr("seed_returns", finals)  # each env's returns, in the order of the seeds
    returns = {env: statistics.fmean(values) for env, values in finals.items()}
    trial.set_user_attr("returns", returns)
    return spec.value(returns)


def report_final(trial: Any, spec: TuneSpec, index: int, value: float) -> bool:
    """Reports run number `index`'s final return (on the study's scale) at the step of its budget,
    so that every finished run is compared there, one that --trial-timeout stopped short of the
    budget included (scored where it got to); True when the pruner would stop the trial. A run
    whose last periodic evaluation fell on that step has reported this same value there."""
    with warnings.catch_warnings():  # that step already reported: Optuna keeps the first
        warnings.filterwarnings("ignore", message=".*is already reported")
        score = spec.score(spec.runs[index][0], value)
        trial.report(score, spec.offset(index) + spec.steps)
    return spec.should_prune(trial, index, score)


def train_trial(
    trial: Any, spec: TuneSpec, index: int, drawn: dict[str, dict[str, Any]]
) -> tuple[AsyncPPO, float | None]:
    """Trains the trial's run number `index` (`TuneSpec.runs`: its env and seed; its folder,
    train_args.json, its evaluations reported to the pruner); returns the runner and its final
    evaluation return (KeyboardInterrupt when a signal stopped it)."""
    env, seed = spec.runs[index]
    args = trial_args(spec, trial.number, drawn, env, seed)
    callback = pruning_callback(
        trial,
        spec.eval_every,
        spec.offset(index),
        lambda value: spec.score(env, value),
        spec.steps // PRUNE_AFTER,
        lambda score: spec.should_prune(trial, index, score),
    )
    ppo, runner = train_cli.build(args, callback=callback)
    run_dirs = {**trial.user_attrs.get("run_dirs", {}), spec.run_key(index): str(runner.run_dir)}
    trial.set_user_attr("run_dirs", run_dirs)
    (runner.run_dir / train_cli.ARGS_FILE).write_text(
        json.dumps(train_cli.resolved(args, ppo, runner), indent=1)
    )
    try:
        runner.run(timeout=args.timeout)
        value = final_return(runner)
    finally:
        runner.close()
    if runner.stopped_by in INTERRUPTED:
        raise Interrupted(runner.stopped_by)
    return runner, value


def trial_args(
    spec: TuneSpec,
    number: int,
    settings: dict[str, dict[str, Any]],
    env: str | None = None,
    seed: int | None = None,
) -> argparse.Namespace:
    """train.py's arguments for trial `number` on `env` with `seed` (default: the study's first
    env and seed): the study's fixed flags, then the drawn settings for every option those leave
    out."""
    return train_cli.with_presets_entry(fixed_args(spec, number, env, seed), settings)


def fixed_args(
    spec: TuneSpec, number: int = 0, env: str | None = None, seed: int | None = None
) -> argparse.Namespace:
    """train.py's arguments that every trial shares on `env` with `seed` (default: the study's
    first env and seed): the flags given to ppo-tune, the env, budget, seed and evaluation, and
    trial `number`'s folder."""
    seed = spec.seeds[0] if seed is None else seed
    return train_cli.parse_args(
        [
            *spec.train_argv,
            *("--env", env or spec.envs[0], "--steps", str(spec.steps), "--seed", str(seed), "--quiet"),
            *("--eval-every", str(spec.eval_every), "--eval-episodes", str(spec.eval_episodes)),
            *("--log-dir", str(spec.folder / f"trial_{number:04d}")),
            *(() if spec.trial_timeout is None else ("--timeout", str(spec.trial_timeout))),
        ]
    )


def checked_family(spec: TuneSpec) -> str:
    """The study's family (discrete, continuous, image), which decides the search space. Found
    before any trial starts, ValueError in one line when the train.py flags given to ppo-tune do
    not parse, name an option that has no place in a trial (--presets, --resume, --track; ppo-tune
    takes --seeds itself), give a value the learner refuses, or when the envs are of different families."""
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):  # argparse's usage text: one line is enough
            args = fixed_args(spec)
    except SystemExit:
        problem = errors.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
        raise ValueError(f"train.py flags {' '.join(spec.train_argv)!r}: {problem}") from None
    for name in ("presets", "resume", "track"):
        if getattr(args, name) not in (None, False):
            raise ValueError(
                f"--{name}: not an option of a trial (each trial is one new run of ppo-tune's study)"
            )
    families = {}
    for env in spec.envs:  # the learner's checks, on each env
        probe = probe_learner(args, env)
        families[env] = family(probe.is_continuous, probe.has_images)
    if len(set(families.values())) > 1:
        found = ", ".join(f"{env} is {name}" for env, name in families.items())
        raise ValueError(f"--env: the envs of one study share one family's search space; {found}")
    return families[spec.envs[0]]


def probe_learner(args: argparse.Namespace, env: str) -> PPO:
    """The learner train.py's `args` build for `env` (its preset unless --preset none), on the CPU:
    what a trial would train, for its checks and settings."""
    return ppo_for_env(env, preset=args.preset == "auto", **{**train_cli.ppo_options(args), "device": "cpu"})


def current_settings(spec: TuneSpec) -> dict[str, dict[str, Any]]:
    """The settings a train.py run with the study's flags uses on its first env (the env's preset,
    or the family's defaults with --preset none; the flags win), in the presets format."""
    args = fixed_args(spec)
    ppo = probe_learner(args, args.env)
    num_envs, num_steps, _ = runner_defaults(
        args.env, args.env, ppo, args.preset == "auto", args.num_envs, args.num_steps, None
    )
    return {"ppo": dict(ppo.config), "runner": {"num_envs": num_envs, "num_steps": num_steps}}


def enqueue_current(study: Any, spec: TuneSpec) -> bool:
    """Queues `current_settings` as a trial (run before any drawn one), unless the study already
    has a trial with the same params; True when queued. ValueError naming --enqueue-defaults and
    the setting when they lie outside the family's search space."""
    try:
        params = params_of(current_settings(spec), spec.family, spec.steps)
    except ValueError as error:
        raise ValueError(
            f"--enqueue-defaults: the settings train.py uses on {spec.envs[0]} are not in the "
            f"{spec.family} search space at {spec.steps} steps: {error}"
        ) from None
    before = len(study.get_trials(deepcopy=False))
    study.enqueue_trial(params, skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) > before


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


def pruning_callback(
    trial: Any,
    every: int,
    offset: int = 0,
    score: Callable[[float], float] = float,
    warmup: int = 0,
    should_prune: Callable[[float], bool] | None = None,
) -> Callable[[AsyncPPO, dict[str, Any]], bool | None]:
    """An AsyncPPO callback reporting each evaluation to `trial`, as `score(return)` at the step
    of the schedule it answers (`every`, 2 x every...: trials whose rounds differ in size then
    meet at the same steps, where the pruner compares them), plus `offset` (a study's later envs
    come after the earlier ones); from `warmup` steps of this run on, it stops the run (returns
    False) when `should_prune(score)` says so (default: the trial's pruner). The warm-up counts
    in the run's own steps, so each env of a study gets it, not only the first."""
    prune = should_prune or (lambda _: bool(trial.should_prune()))

    def report(runner: AsyncPPO, stats: dict[str, Any]) -> bool | None:
        if stats.get("eval_return") is None:
            return None
        steps = int(stats["steps"])
        at = steps - steps % every
        value = score(float(stats["eval_return"]))
        trial.report(value, offset + at)
        return False if at >= warmup and prune(value) else None

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


def presets_entries(study: Any, spec: TuneSpec) -> dict[str, Any] | None:
    """The best trial's settings as presets entries (AsyncTools/presets.json's format), one per
    env of the study, their source naming the study, its budget, its seeds when several and the
    date; None before any trial completed."""
    try:
        best = study.best_trial
    except ValueError:  # no complete trial yet
        return None
    date = datetime.date.today().isoformat()
    limit = "" if spec.trial_timeout is None else f" or {spec.trial_timeout:g} s"
    value = (
        f"deterministic evaluation return {best.value:.1f}"
        if spec.references is None
        else f"{AGGREGATES[spec.aggregate]} normalised return {best.value:.3f} across {', '.join(spec.envs)}"
    )
    seeds = (
        "" if len(spec.seeds) == 1 else f", each env's the mean over seeds {', '.join(map(str, spec.seeds))}"
    )
    source = (
        f"tuned here: ppo-tune study {study.study_name!r}, best of {counted_trials(study, running=False)} "
        f"finished trials of {spec.steps} env steps{limit} each (trial {best.number}, {value} over "
        f"{spec.eval_episodes} episodes{seeds}), {date}"
    )
    return {env: {"source": source, **best.user_attrs["settings"]} for env in spec.envs}
