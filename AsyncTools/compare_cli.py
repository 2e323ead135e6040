"""Compare training runs across seeds: learning curves with confidence bands, final returns.

    python compare.py runs/                                 # every run folder under runs/
    python compare.py runs/ --output compare.png            # and the curves, as a figure
    python compare.py runs/ --group-by env,lr --metric mean_return

RUNS are run folders written by train.py (train_args.json + progress.csv), or folders searched
for them. Runs are grouped by their train_args.json values of --group-by; a group's runs are
its seeds. For each group it prints the runs' final performance (the last value of --metric):
the mean and the IQM (interquartile mean: the mean of the middle 50% of the runs), each with a
95% percentile-bootstrap confidence interval over runs (--bootstrap resamples of the runs, with
replacement, seeded by --seed). --output draws each group's mean curve over env steps with its
95% bootstrap band over seeds. The statistics are in AsyncTools/compare.py.

Exit status: 0 on success, 2 for bad arguments or input (no run folder, a --group-by key that no
run has, a --metric empty in every run), with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from AsyncTools.compare import (
    CompareError,
    GroupResult,
    check_group_keys,
    choose_backend,
    compare_groups,
    find_runs,
    group_runs,
    read_run,
)

METRICS = {  # progress.csv column: what it is, for the figure's y axis
    "eval_return": "evaluation return (deterministic)",
    "mean_return": "mean training episode return",
}
# runs whose evaluations sampled actions: train.py --no-eval-deterministic (Atari's default)
SAMPLED_EVALUATION = "evaluation return (sampled actions)"
INSTALL = "pip install -e .[compare]"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Lists every option's default and keeps the example lines above as written."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of ppo-compare."""
    parser = argparse.ArgumentParser(prog="ppo-compare", description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUNS", help="run folders, or folders to search for them")
    parser.add_argument(
        "--group-by",
        default="env,preset",
        help="comma-separated train_args.json keys; runs with the same values form a group",
    )
    parser.add_argument(
        "--metric",
        choices=tuple(METRICS),
        default="eval_return",
        help="progress.csv column: eval_return (the periodic evaluations) or mean_return (the "
        "training episodes' mean return, every round)",
    )
    parser.add_argument("--output", default=None, help="write the curves to this image (e.g. plot.png)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the runs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """ppo-compare: prints the table of final performance per group (and writes the figure with
    --output); returns the exit status, 2 with one line on stderr for bad input."""
    args = build_parser().parse_args(argv)
    try:
        keys = [key.strip() for key in args.group_by.split(",") if key.strip()]
        if not keys:
            raise CompareError(f"--group-by: no key in {args.group_by!r}")
        if args.bootstrap < 1:
            raise CompareError(f"--bootstrap must be at least 1, got {args.bootstrap}")
        if args.output is not None:
            _require_matplotlib()
        runs = [read_run(folder, args.metric) for folder in find_runs(args.runs)]
        check_group_keys(runs, keys)  # against every run found, before the metric
        usable = [run for run in runs if run.values.size]
        if not usable:
            raise CompareError(
                f"--metric {args.metric}: the column is absent or empty in all {len(runs)} runs' progress.csv"
            )
        for run in runs:
            if not run.values.size:
                print(
                    f"ppo-compare: skipping {run.path}: no {args.metric} in its progress.csv", file=sys.stderr
                )
        backend = choose_backend()
        results = compare_groups(group_runs(usable, keys), args.bootstrap, args.seed, backend)
        print(format_table(results, args.metric, args.bootstrap, args.seed))
        print(f"statistics: {backend.name}")
        if args.output is not None:
            print(f"figure: {plot_groups(results, args.metric, args.bootstrap, Path(args.output))}")
    except CompareError as error:
        print(f"ppo-compare: error: {error}", file=sys.stderr)
        return 2
    return 0


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise CompareError(f"--output needs matplotlib ({error}): {INSTALL}") from error


def _seeds(result: GroupResult) -> str:
    return ",".join(str(run.settings.get("seed", "?")) for run in result.runs)


def format_table(results: Sequence[GroupResult], metric: str, reps: int, seed: int) -> str:
    """The table of final performance: one line per group with its runs, their seeds, the mean
    and the IQM of the runs' last `metric` values and their 95% bootstrap intervals."""
    header = ["group", "runs", "seeds", "mean", "mean 95% CI", "IQM", "IQM 95% CI"]
    rows = [
        [
            result.label,
            str(len(result.runs)),
            _seeds(result),
            f"{result.final.mean:.2f}",
            "[{:.2f}, {:.2f}]".format(*result.final.mean_ci),
            f"{result.final.iqm:.2f}",
            "[{:.2f}, {:.2f}]".format(*result.final.iqm_ci),
        ]
        for result in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    title = (
        f"final {metric} per run (its last value); CI: 95% percentile bootstrap over runs, "
        f"{reps} resamples, seed {seed}"
    )
    return "\n".join([title, *lines])


def y_label(results: Sequence[GroupResult], metric: str) -> str:
    """What the curves are: for eval_return, deterministic unless every run's train_args.json
    says its evaluations sampled actions (eval_deterministic false)."""
    settings = [run.settings.get("eval_deterministic") for result in results for run in result.runs]
    if metric == "eval_return" and settings and all(value is False for value in settings):
        return SAMPLED_EVALUATION
    return METRICS[metric]


def plot_groups(results: Sequence[GroupResult], metric: str, reps: int, output: Path) -> Path:
    """Draws each group's mean curve over env steps with its 95% bootstrap band over seeds and
    writes the figure to `output`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    for result in results:
        seeds = len(result.runs)
        label = f"{result.label} ({seeds} seed{'s' if seeds != 1 else ''})"
        (line,) = axis.plot(
            result.steps, result.mean, marker="o" if result.steps.size == 1 else None, label=label
        )
        axis.fill_between(result.steps, result.low, result.high, color=line.get_color(), alpha=0.2)
    axis.set_xlabel("env steps")
    axis.set_ylabel(y_label(results, metric))
    axis.set_title(
        f"line: mean over seeds; shaded band: 95% bootstrap CI over seeds ({reps} resamples)", fontsize=10
    )
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=100)
    except (OSError, ValueError) as error:
        raise CompareError(f"--output {output}: {error}") from error
    finally:
        plt.close(figure)
    return output


if __name__ == "__main__":
    sys.exit(main())
