"""Comparing run folders across seeds: the statistics behind `ppo-compare` (compare.py).

A run folder (written by train.py) holds `train_args.json`, the run's resolved settings, and
`progress.csv`, one row per round. Runs are grouped by settings (`group_runs`), each group's
runs being its seeds. For each group:

- the learning curves of a progress.csv column (`eval_return` or `mean_return`) over env steps,
  put on one step grid (`common_grid`, `curves_on_grid`), their mean and a percentile-bootstrap
  confidence band of the mean over seeds (`mean_band`);
- the final performance of each run, its last value of the column (`final_values`), summarised
  by the mean and the interquartile mean (IQM, the mean of the middle 50% of the runs, as in
  rliable), each with a percentile-bootstrap confidence interval (`Backend.estimate`).

The bootstrap resamples runs with replacement (a group's runs are drawn, the statistic is
recomputed on each draw, and the interval is made of the 2.5th and 97.5th percentiles of the
draws), seeded, so the same call gives the same numbers. The intervals of the final performance
come from rliable (`rliable.library.get_interval_estimates`) where it works, else from the same
computation in numpy (`choose_backend`); both give the same numbers.
"""

from __future__ import annotations

import csv
import importlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

SETTINGS_FILE = "train_args.json"  # as train.py names it (AsyncTools.train_cli.ARGS_FILE)
PROGRESS_FILE = "progress.csv"
CONFIDENCE = 0.95
Array = NDArray[np.float64]


class CompareError(ValueError):
    """Input that cannot be compared; the message names the parameter at fault."""


@dataclass(frozen=True)
class Run:
    """One run folder: its settings (train_args.json) and one progress.csv column over env
    steps, the rows where the column is empty left out."""

    path: Path
    settings: dict[str, Any]
    steps: Array
    values: Array

    @property
    def final(self) -> float:
        """The run's last value of the column."""
        return float(self.values[-1])


@dataclass(frozen=True)
class Estimates:
    """The final performance of a group: mean and IQM of its runs' final values, each with
    its confidence interval (low, high)."""

    mean: float
    mean_ci: tuple[float, float]
    iqm: float
    iqm_ci: tuple[float, float]


@dataclass(frozen=True)
class Backend:
    """Where the intervals of the final performance come from: `estimate(scores, reps, seed)`,
    `scores` holding one value per run; `name` says which for the printout."""

    name: str
    estimate: Callable[[Array, int, int], Estimates]


@dataclass(frozen=True)
class GroupResult:
    """One group's curves on its step grid (the mean over seeds and the band's bounds) and the
    estimates of its final performance."""

    label: str
    runs: list[Run]
    steps: Array
    mean: Array
    low: Array
    high: Array
    final: Estimates


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """The run folders among `paths` and below them (folders holding train_args.json and
    progress.csv), sorted, each once. Raises CompareError when a path does not exist or none
    is found."""
    found: set[Path] = set()
    for path in map(Path, paths):
        if not path.exists():
            raise CompareError(f"RUNS: no such file or folder: {path}")
        settings = path.rglob(SETTINGS_FILE) if path.is_dir() else iter(())
        found.update(file.parent.resolve() for file in settings if (file.parent / PROGRESS_FILE).is_file())
    if not found:
        given = ", ".join(map(str, paths))
        raise CompareError(f"RUNS: no run folder ({SETTINGS_FILE} and {PROGRESS_FILE}) found in {given}")
    return sorted(found)


def read_run(folder: Path, metric: str) -> Run:
    """The run in `folder` with its `metric` column of progress.csv (empty arrays when the
    column is absent or empty)."""
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CompareError(f"RUNS: cannot read {folder / SETTINGS_FILE}: {error}") from error
    steps: list[float] = []
    values: list[float] = []
    try:
        with open(folder / PROGRESS_FILE, newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                value, step = row.get(metric), row.get("steps")
                if value in (None, "") or step in (None, ""):
                    continue
                try:
                    steps.append(float(step))
                    values.append(float(value))
                except ValueError as error:
                    raise CompareError(
                        f"RUNS: {folder / PROGRESS_FILE} line {reader.line_num}: {error}"
                    ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise CompareError(f"RUNS: cannot read {folder / PROGRESS_FILE}: {error}") from error
    return Run(folder, settings if isinstance(settings, dict) else {}, np.array(steps), np.array(values))


def setting_text(value: Any) -> str:
    """A setting as the group labels show it: strings bare, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def check_group_keys(runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Raises CompareError for a key of `keys` that no run's train_args.json has."""
    for key in keys:
        if not any(key in run.settings for run in runs):
            known = sorted({name for run in runs for name in run.settings})
            raise CompareError(
                f"--group-by: no run has {key!r} in {SETTINGS_FILE} (its keys: {', '.join(known)})"
            )


def group_runs(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, list[Run]]:
    """The runs grouped by their values of the train_args.json `keys`, as {"key=value, ...":
    runs}, sorted by label, each group's runs by seed (a run without a key shows it as
    `(unset)`). Raises CompareError for a key that no run has."""
    check_group_keys(runs, keys)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        label = ", ".join(
            f"{key}={setting_text(run.settings[key]) if key in run.settings else '(unset)'}" for key in keys
        )
        groups.setdefault(label, []).append(run)
    return {label: sorted(group, key=_by_seed) for label, group in sorted(groups.items())}


def _by_seed(run: Run) -> tuple[bool, float, str]:
    """A group's runs in the order of their seeds (those without one last), then of paths."""
    seed = run.settings.get("seed")
    if isinstance(seed, (int, float)) and not isinstance(seed, bool):
        return False, float(seed), str(run.path)
    return True, 0.0, str(run.path)


def common_grid(runs: Sequence[Run]) -> Array:
    """The step grid of a group's curves: the union of the steps at which its runs have a value
    (for eval_return, the evaluation steps), kept to the span that every run covers (from the
    latest first step to the earliest last step), so that no run is extrapolated; each run is
    then interpolated linearly onto it (`curves_on_grid`). This union was chosen over a fixed
    50-point grid: every evaluation of every run stays a point of the curve, and seeds of one
    command, which evaluate at nearly the same steps, need little interpolation. Runs that do
    not overlap at all get the earliest last step alone."""
    start = max(float(run.steps[0]) for run in runs)
    stop = min(float(run.steps[-1]) for run in runs)
    union = np.unique(np.concatenate([run.steps for run in runs]))
    grid = union[(union >= start) & (union <= stop)]
    return grid if grid.size else np.array([stop])


def curves_on_grid(runs: Sequence[Run], grid: Array) -> Array:
    """Each run's values interpolated linearly onto `grid`: one row per run."""
    return np.stack([np.interp(grid, run.steps, run.values) for run in runs])


def mean_band(curves: Array, reps: int, seed: int, chunk: int = 1024) -> tuple[Array, Array, Array]:
    """The mean curve over runs (rows of `curves`) and its 95% percentile-bootstrap band:
    `reps` draws of as many runs as there are, with replacement (whole curves, by a
    numpy.random.RandomState(seed)); the band is the 2.5th and 97.5th percentiles of the
    draws' mean curves at each step."""
    runs = curves.shape[0]
    draws = np.random.RandomState(seed).choice(runs, (reps, runs), replace=True)
    weights = (draws[:, :, None] == np.arange(runs)).sum(axis=1) / runs  # each run's share of a draw
    tails = [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2]
    bounds = [
        np.percentile(weights @ curves[:, i : i + chunk], tails, axis=0)
        for i in range(0, curves.shape[1], chunk)
    ]
    low, high = np.concatenate(bounds, axis=1)
    return curves.mean(axis=0), low, high


def final_values(runs: Sequence[Run]) -> Array:
    """The final performance of each run: its last value of the column."""
    return np.array([run.final for run in runs])


def interquartile_mean(scores: Array, axis: int = -1) -> Array:
    """The IQM along `axis`: the mean of the middle 50% of the values, 25% cut at each end.
    The same computation as scipy.stats.trim_mean(scores, 0.25, axis) (rliable's
    aggregate_iqm), written in numpy so that no scipy is needed."""
    count = scores.shape[axis]
    cut = int(0.25 * count)
    middle = np.partition(scores, (cut, count - cut - 1), axis=axis)
    return np.mean(np.take(middle, np.arange(cut, count - cut), axis=axis), axis=axis)


def plain_estimates(scores: Array, reps: int, seed: int) -> Estimates:
    """Mean and IQM of `scores` (one value per run) with 95% percentile-bootstrap intervals,
    in numpy: `reps` draws of as many runs, with replacement, by numpy.random.RandomState(seed)
    (the same draws as rliable's stratified bootstrap with np.random.seed(seed) for one task)."""
    draws = scores[np.random.RandomState(seed).choice(scores.size, (reps, scores.size), replace=True)]
    tails = [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2]
    means = np.percentile(draws.mean(axis=1), tails)
    iqms = np.percentile(interquartile_mean(draws, axis=1), tails)
    return Estimates(
        float(np.mean(scores)),
        (float(means[0]), float(means[1])),
        float(interquartile_mean(scores)),
        (float(iqms[0]), float(iqms[1])),
    )


def rliable_estimates(scores: Array, reps: int, seed: int) -> Estimates:
    """The same as `plain_estimates`, by rliable: get_interval_estimates with aggregate_mean and
    aggregate_iqm on the (runs x 1 task) scores. rliable draws with numpy's global generator:
    it is seeded with `seed` for the call and given back its state after."""
    library = importlib.import_module("rliable.library")
    metrics = importlib.import_module("rliable.metrics")

    def both(matrix: Array) -> Array:
        return np.array([metrics.aggregate_mean(matrix), metrics.aggregate_iqm(matrix)])

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        points, intervals = library.get_interval_estimates(
            {"runs": scores.reshape(-1, 1)}, both, reps=reps, confidence_interval_size=CONFIDENCE
        )
    finally:
        np.random.set_state(state)
    (mean, iqm), ((mean_low, iqm_low), (mean_high, iqm_high)) = points["runs"], intervals["runs"]
    return Estimates(
        float(mean), (float(mean_low), float(mean_high)), float(iqm), (float(iqm_low), float(iqm_high))
    )


PLAIN = Backend("numpy (rliable's definitions)", plain_estimates)


def choose_backend() -> Backend:
    """rliable where it can be imported and runs (tried on two numbers), else the plain numpy
    computation, its name saying why. The two give the same numbers."""
    try:
        rliable_estimates(np.array([0.0, 1.0]), reps=2, seed=0)
    except ImportError as error:
        return Backend(f"{PLAIN.name}; rliable not importable: {error}", plain_estimates)
    except Exception as error:  # an rliable that does not work with the arch or pandas installed
        reason = (str(error).splitlines() or [""])[0]
        return Backend(f"{PLAIN.name}; rliable failed: {type(error).__name__}: {reason}", plain_estimates)
    return Backend(f"rliable {version('rliable')}", rliable_estimates)


def compare_groups(groups: dict[str, list[Run]], reps: int, seed: int, backend: Backend) -> list[GroupResult]:
    """Each group's mean curve with its band, and its final performance, in the groups' order.
    Every group's bootstrap uses `seed`."""
    results = []
    for label, runs in groups.items():
        grid = common_grid(runs)
        mean, low, high = mean_band(curves_on_grid(runs, grid), reps, seed)
        final = backend.estimate(final_values(runs), reps, seed)
        results.append(GroupResult(label, list(runs), grid, mean, low, high, final))
    return results
