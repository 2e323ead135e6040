"""Tune PPO's settings for an env (or a family of envs) with Optuna: every trial is a train.py run.

    python tune.py --env CartPole-v1 --trials 30 --steps 50000                  # one process
    python tune.py --env Pendulum-v1 --trials 60 --steps 100000 --jobs 2        # two at a time
    python tune.py --env LunarLander-v3 --trials 100 --steps 300000 \\
        --storage postgresql://user:pass@host/db --study lunar                  # on every machine
    python tune.py --env CartPole-v1 Acrobot-v1 LunarLander-v3 --reference refs.json \\
        --trials 40 --steps 200000 --jobs 2                                     # a family's defaults

The study's folder (--log-dir/--study) holds one folder per trial (a normal run folder: progress,
train_args.json, weights), the study itself (study.log, unless --storage names another storage) and,
at the end, presets.json: the best settings, ready for `train.py --env ID --presets FILE`.

--trials is the number of finished trials (complete or pruned) the study should reach: after
Ctrl-C (finished trials are kept; the one running is tried again first), the same command goes on
from where it stopped. Any train.py flag given here (--backend, --gamma, --num-envs...) is fixed
for every trial and wins over the drawn value. See the study: optuna-dashboard STORAGE.

Several envs (of one family) make a study of the family's defaults: each trial trains the same
settings on every env, and its value is the mean normalised return, (return - random) /
(reference - random), with a random policy's return and a reference return (SB3's defaults at the
same budget, say) per env from --reference FILE: {"ENV": {"random": R0, "reference": R1}, ...};
with --aggregate min, the lowest instead. --seeds 0 1 2 trains each trial once per seed (per env)
and ranks it by the mean return over them. --enqueue-defaults makes the settings train.py uses
today (with the same flags) the study's next trial, to measure them and start the search there.

Exit status: 0 when the study reached --trials (or --timeout passed), 130 after Ctrl-C and 143 after
SIGTERM (finished trials kept), 1 when trials kept failing (5 in a row), 2 for bad arguments (a
storage that cannot be opened, a study that exists for other envs or another budget, train.py flags
that do not parse or that the learner refuses, envs of different families, a bad reference file).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .jobs import check_jobs, combined_exit_code, run_processes
from .tuning import (
    AGGREGATES,
    JOURNAL_FILE,
    Interrupted,
    TuneSpec,
    checked_family,
    enqueue_current,
    import_optuna,
    open_storage,
    open_study,
    presets_entries,
    read_references,
    work,
)

PRESETS_FILE = "presets.json"
SHOWN_PARAMS = ("lr", "k_epochs", "gamma", "GAE_lambda", "policy_clip", "entropy_coef", "hidden_sizes")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """tune.py's own options, and the rest: train.py flags fixed for every trial."""
    parser = argparse.ArgumentParser(
        prog="ppo-tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--env",
        nargs="+",
        default=["CartPole-v1"],
        help="Gymnasium env id, or several of one family (default: CartPole-v1)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="JSON file of each env's random and reference returns: the score is normalised by them "
        "(needed for several envs)",
    )
    parser.add_argument(
        "--aggregate",
        choices=tuple(AGGREGATES),
        default="mean",
        help="several envs: a trial's value is the mean of their normalised returns, or the lowest "
        "(min: settings that give up one env for another do not gain by it) (default: mean)",
    )
    parser.add_argument("--trials", type=int, default=20, help="finished trials the study should reach")
    parser.add_argument("--steps", type=int, default=50_000, help="env steps each trial trains for")
    parser.add_argument("--jobs", type=int, default=1, help="trials at a time, each in its own process")
    parser.add_argument(
        "--storage", default=None, help="an Optuna storage URL or journal file (default: study.log)"
    )
    parser.add_argument("--study", default=None, help="the study's name (default: ENV_STEPS)")
    parser.add_argument("--timeout", type=float, default=None, help="start no trial after this many seconds")
    parser.add_argument(
        "--trial-timeout",
        type=float,
        default=None,
        help="each trial's run trains at most this many seconds (train.py --timeout) and is scored "
        "where it got to: the study then favours settings fast on the clock, not only per step",
    )
    parser.add_argument(
        "--eval-every", type=int, default=None, help="env steps between evaluations (default: --steps/10)"
    )
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation (default: 5)")
    add_seed_options(parser)
    add_search_options(parser)
    parser.add_argument(
        "--log-dir", default="runs/tune", help="parent of the study folders (default: runs/tune)"
    )
    # set for the processes of --jobs: the worker's index
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_known_args(argv)


def add_seed_options(parser: argparse.ArgumentParser) -> None:
    """The seeds every trial trains with: one, or several (a run per seed, their mean)."""
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, default=0, help="the training seed of every trial (default: 0)")
    seeds.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="train every trial on each of these seeds, one run after another; on each env its return "
        "is the mean over them (settings are ranked less by one seed's luck, at N times the time)",
    )


def add_search_options(parser: argparse.ArgumentParser) -> None:
    """How the study searches: its sampler and pruner, and where it starts."""
    parser.add_argument(
        "--enqueue-defaults",
        action="store_true",
        help="queue, as the next trial, the settings train.py uses with these flags on the (first) env "
        "(its preset; the family's defaults with --preset none): the study measures them on its own "
        "terms and the sampler starts from them (once per study; they must lie in the search space)",
    )
    parser.add_argument(
        "--sampler", choices=("tpe", "random"), default="tpe", help="Optuna's sampler (default: tpe)"
    )
    parser.add_argument(
        "--sampler-seed", type=int, default=None, help="seed the sampler (per worker: + its index)"
    )
    parser.add_argument(
        "--pruner", choices=("median", "none"), default="median", help="stop poor trials early"
    )


def checked(args: argparse.Namespace) -> argparse.Namespace:
    """The options, with --study, --eval-every and --seeds (default: [--seed]) filled in;
    ValueError naming a bad one."""
    for flag in ("trials", "steps", "eval_episodes", "trial_timeout"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            raise ValueError(f"--{flag.replace('_', '-')}: expected a positive number, got {value}")
    check_jobs(args.jobs)
    if len(args.env) > 1 and args.reference is None:
        raise ValueError(
            "--reference: a study across several envs needs each env's random and reference returns, "
            "to put their returns on one scale"
        )
    if len(set(args.env)) < len(args.env):
        raise ValueError(f"--env: expected distinct env ids, got {' '.join(args.env)}")
    args.seeds = args.seeds or [args.seed]
    if len(set(args.seeds)) < len(args.seeds):
        raise ValueError(f"--seeds: expected distinct seeds, got {' '.join(map(str, args.seeds))}")
    args.study = args.study or re.sub(r"[^A-Za-z0-9_.+-]", "-", f"{'+'.join(args.env)}_{args.steps}")
    args.eval_every = args.eval_every or max(1, args.steps // 10)
    return args


def samplers(args: argparse.Namespace, optuna: Any) -> tuple[Any, Any]:
    """The sampler and pruner: TPE (or random) seeded per worker when --sampler-seed is given;
    the median rule from the fifth finished trial (fewer in small studies), after the first third
    of each env's training (the trials' callbacks hold it back until then)."""
    seed = None if args.sampler_seed is None else args.sampler_seed + (args.worker or 0)
    startup = max(1, min(5, args.trials // 4))
    sampler = (
        optuna.samplers.TPESampler(n_startup_trials=startup, seed=seed)
        if args.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=startup)  # warm-up: tuning.PRUNE_AFTER
        if args.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    return sampler, pruner


def main(argv: list[str] | None = None) -> int:
    """ppo-tune: opens (or continues) the study, runs its trials, prints the best; the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, train_argv = parse_args(argv)
    try:
        args = checked(args)
        optuna = import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        folder = Path(args.log_dir) / args.study
        references = None if args.reference is None else read_references(args.reference, args.env)
        spec = TuneSpec(
            tuple(args.env),
            args.steps,
            args.eval_every,
            args.eval_episodes,
            tuple(args.seeds),
            folder,
            train_argv,
            references=references,
            trial_timeout=args.trial_timeout,
            aggregate=args.aggregate,
        )
        spec = replace(spec, family=checked_family(spec))
        study = open_study(open_storage(args.storage, folder), args.study, spec, *samplers(args, optuna))
        if args.enqueue_defaults and args.worker is None and enqueue_current(study, spec):
            print("ppo-tune: the current settings are queued as the next trial")
    except (ValueError, ImportError) as error:
        print(f"ppo-tune: error: {error}", file=sys.stderr)
        return 2
    if args.worker is not None or args.jobs == 1:
        code = run_here(study, spec, args)
    else:
        code = run_workers(argv, args, spec)
    if args.worker is None:
        report(study, spec, args)
    return code


def run_here(study: Any, spec: TuneSpec, args: argparse.Namespace) -> int:
    """Runs trials in this process; the exit status: 0, 128 + the signal's number when Ctrl-C or
    SIGTERM stopped it (the trial under way requeued), 1 when trials kept failing."""
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        work(study, spec, args.trials, None if args.timeout is None else time.monotonic() + args.timeout)
    except KeyboardInterrupt as stop:
        print("ppo-tune: interrupted; the finished trials are kept (run the same command to go on)")
        return 128 + signal.Signals[getattr(stop, "signal_name", "SIGINT")].value
    except RuntimeError as error:
        print(f"ppo-tune: error: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _stop_on_sigterm(signum: int, _frame: object) -> None:
    """SIGTERM outside a trial's training (which handles it itself): stop as Ctrl-C does."""
    raise Interrupted("SIGTERM")


def run_workers(argv: list[str], args: argparse.Namespace, spec: TuneSpec) -> int:
    """--jobs worker processes on the same study (the default journal file or --storage). Vector
    policies train on one thread each (PPO's default); image policies share the cores."""
    storage = args.storage or str(spec.folder / JOURNAL_FILE)
    cores = max(1, (os.cpu_count() or 1) // args.jobs)
    env = {"OMP_NUM_THREADS": str(cores)} if spec.family == "image" else {}
    worker_argvs = [
        [*argv, "--storage", storage, "--study", args.study, "--worker", str(i)] for i in range(args.jobs)
    ]
    return combined_exit_code(run_processes("AsyncTools.tune_cli", worker_argvs, args.jobs, env=env))


def report(study: Any, spec: TuneSpec, args: argparse.Namespace) -> int:
    """Prints the best trials and writes presets.json in the study's folder; returns 0."""
    optuna = import_optuna()
    spec.folder.mkdir(parents=True, exist_ok=True)  # with --storage, no trial may have run here
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == states.COMPLETE), key=lambda t: -t.value)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in states}
    print(f"study {study.study_name!r}: " + ", ".join(f"{n} {name}" for name, n in counts.items() if n))
    print(best_table(complete[:5], "return" if spec.references is None else "score"))
    entries = presets_entries(study, spec)
    if entries is not None:
        file = spec.folder / PRESETS_FILE
        file.write_text(json.dumps(entries, indent=1) + "\n")
        print(f"best settings: {file}")
        print(f"train with them: python train.py --env {spec.envs[0]} --presets {file}")
    print(f"see the study: optuna-dashboard {args.storage or spec.folder / JOURNAL_FILE}")
    return 0


def best_table(trials: list[Any], value_name: str = "return") -> str:
    """The trials' value, rollout and main settings, one line each."""
    rows: list[tuple[str, ...]] = [("trial", value_name, "envs x steps", "mini-batch", *SHOWN_PARAMS)]
    for trial in trials:
        ppo, runner = trial.user_attrs["settings"]["ppo"], trial.user_attrs["settings"]["runner"]
        shown = [
            f"{ppo[name]:.3g}" if isinstance(ppo.get(name), float) else str(ppo.get(name, ""))
            for name in SHOWN_PARAMS
        ]
        rows.append(
            (
                str(trial.number),
                f"{trial.value:.1f}" if value_name == "return" else f"{trial.value:.3f}",
                f"{runner['num_envs']} x {runner['num_steps']}",
                str(ppo["mini_batch_size"]),
                *shown,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


if __name__ == "__main__":
    sys.exit(main())
