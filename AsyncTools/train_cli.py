"""Train PPO on a Gymnasium env with the one-liner, log the run and save the weights.

    python train.py                                        # CartPole-v1, 32 envs, 150k steps
    python train.py --env Pendulum-v1 --steps 200000       # settings from the env's preset
    python train.py --env HalfCheetah-v5 --steps 1000000 --lr 1e-4   # any option overrides
    python train.py --resume runs/CartPole-v1_20260101-120000_seed0 --steps 300000
    python train.py --seeds 0 1 2 --jobs 3                 # one run per seed, 3 processes at once
    python train.py --presets my_presets.json --track      # settings from a file; sent to W&B

Every run writes a run folder under --log-dir (printed at the start): progress.csv,
episodes.csv, TensorBoard events (if tensorboard is installed), checkpoints, the final weights
and learning_curve.png. Ctrl-C or SIGTERM saves a checkpoint and the weights and stops (a
second signal stops at once); --resume continues from it with the run's own settings
(train_args.json in the run folder): only --steps, --timeout, --quiet, --checkpoint-every,
--save-dir and --track (with --wandb-project, --wandb-entity) come from the new command line.

Settings: every option not given comes from the env's entry of --presets FILE (a file in the
format of AsyncTools/presets.json), then from the env id's preset (AsyncTools/presets.json) or,
for ids without one, from the defaults of the env's family (discrete, continuous, image);
train_args.json in the run folder records the values used.

Exit status: 0 when the run ended by itself (--steps, --timeout or --stop-at-return), 130
after Ctrl-C (SIGINT) and 143 after SIGTERM (checkpoint and weights saved), 1 on an error (the
last checkpoint left intact; also when the weights cannot be written to --save-dir at the end,
the run folder keeping its copy), 2 for bad arguments (among them a --save-dir or --log-dir that
cannot be written, found before training starts). With --seeds, the runs' statuses combined: 130
or 143 if a signal stopped any of them, else the first failed run's status, else 0.
"""

from __future__ import annotations

import argparse
import inspect
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.collectors import COLLECTOR_BACKENDS
from AsyncTools.jobs import check_jobs, combined_exit_code, run_processes
from AsyncTools.presets import RUNNER_OPTIONS, read_presets_file
from AsyncTools.rollout import ROLLOUTS
from AsyncTools.tracking import TrackingError, WandbTracker, import_wandb
from AsyncTools.vectorizer import NON_FINITE_REWARD_CHOICES
from PPO import PPO
from PPO.persistence import POLICY_FILE

# Learner options: (flag, PPO keyword, type, help). Not given, they come from the env's preset or
# family (AsyncTools/presets.py), else from PPO's own defaults; train_args.json records the values used.
PPO_OPTIONS = [
    ("--lr", "lr", float, "Adam learning rate"),
    ("--k-epochs", "k_epochs", int, "passes over each batch"),
    ("--batch-size", "batch_size", int, "steps before an update"),
    ("--mini-batch-size", "mini_batch_size", int, "steps per gradient step"),
    ("--gamma", "gamma", float, "discount"),
    ("--gae-lambda", "GAE_lambda", float, "GAE lambda"),
    ("--policy-clip", "policy_clip", float, "PPO ratio clip"),
    ("--entropy-coef", "entropy_coef", float, "entropy bonus (PPO: 0.01 discrete, 0 continuous)"),
    ("--value-clip", "value_clip", float, "clip the value update"),
    ("--value-coef", "value_coef", float, "weight of the value loss"),
    ("--max-grad-norm", "max_grad_norm", float, "clip the gradient's global norm to this"),
    ("--target-kl", "target_kl", float, "stop an update's epochs above this KL"),
    ("--log-std-init", "log_std_init", float, "continuous: initial log std"),
    ("--beta", "beta", float, "RND: weight of the intrinsic advantage"),
    (
        "--max-lag-weight",
        "max_lag_weight",
        float,
        "with --overlap: clip the ratio around the "
        "learner and weight each sample by its truncated "
        "importance weight for the lag (decoupled PPO)",
    ),
    (
        "--compile-mode",
        "compile_mode",
        str,
        "torch.compile's mode with --compile-update: default, "
        "reduce-overhead (CUDA graphs on a GPU), max-autotune",
    ),
]
# The network's shape: --hidden-sizes, --critic-hidden-sizes, --activation (same name as PPO's keyword).
NETWORK_OPTIONS = ("hidden_sizes", "critic_hidden_sizes", "activation")
PPO_SWITCHES = [  # --name / --no-name
    ("--normalize-obs", "normalize_obs", "normalise observations (running mean/std)"),
    (
        "--normalize-reward",
        "normalize_reward",
        "scale rewards by the std of the discounted return (on, except with --use-rnd)",
    ),
    ("--anneal-lr", "anneal_lr", "decay the learning rate linearly to 0 over --steps"),
    ("--squash-actions", "squash_actions", "continuous: tanh-squashed Gaussian"),
    ("--use-rnd", "use_RND", "add the RND exploration bonus"),
    ("--orthogonal-init", "orthogonal_init", "orthogonal initialisation (off: PyTorch's default)"),
    (
        "--compile-update",
        "compile_update",
        "torch.compile the update (compiles for seconds to a "
        "minute at the start; quicker steps in long runs)",
    ),
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each option's default where it has one, and the description's lines as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options in `argv` (default: the command line), each group of flags added in the order
    --help lists them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_env_flags(parser)
    add_network_flags(parser)
    add_learner_flags(parser)
    add_evaluation_flags(parser)
    add_run_flags(parser)
    add_experiment_flags(parser)
    return parser.parse_args(argv)


def add_env_flags(parser: argparse.ArgumentParser) -> None:
    """What is trained and how it is collected: --env, --num-envs, --steps, --seed, --device,
    --num-steps, --preset, --rollout, --backend, --overlap, --non-finite-rewards."""
    parser.add_argument(
        "--env",
        default="CartPole-v1",
        help="Gymnasium env id; Atari ids (ALE/Breakout-v5, Breakout-v5, "
        "BreakoutNoFrameskip-v4) get the standard Atari preprocessing",
    )
    parser.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="env copies stepped in lockstep (default: the env's preset, else 32 "
        "discrete, 8 continuous or image)",
    )
    parser.add_argument("--steps", type=int, default=150_000, help="env steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="seed of the learner and env copies")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument(
        "--num-steps",
        type=int,
        default=None,
        help="steps per copy per round (default: the env's preset, else 64 "
        "discrete, 256 continuous, 128 image)",
    )
    parser.add_argument(
        "--preset",
        choices=("auto", "none"),
        default="auto",
        help="auto: settings from the env id's preset (AsyncTools/presets.json) "
        "for every option not given; none: only the env family's defaults",
    )
    parser.add_argument("--rollout", choices=ROLLOUTS, default="steps", help="collection mode")
    parser.add_argument(
        "--backend",
        choices=COLLECTOR_BACKENDS,
        default="auto",
        help="how copies are stepped (ray: Ray actors on this machine or "
        "RAY_ADDRESS; envpool: EnvPool's C++ pool, e.g. --env Pong-v5)",
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="collect the next round while the learner updates (in a collector "
        "process, or on the Ray workers), the policy acting one update "
        "behind the learner",
    )
    parser.add_argument(
        "--non-finite-rewards",
        choices=NON_FINITE_REWARD_CHOICES,
        default="raise",
        help="a NaN/inf reward from the env: stop with an error naming the env copy, or replace it by 0",
    )


def add_network_flags(parser: argparse.ArgumentParser) -> None:
    """The network's shape (NETWORK_OPTIONS): --hidden-sizes, --critic-hidden-sizes, --activation."""
    parser.add_argument(
        "--hidden-sizes",
        type=int,
        nargs="+",
        default=None,
        help="hidden layers of the actor (and of the critic, unless "
        "--critic-hidden-sizes) (default: see --preset, else 64 64)",
    )
    parser.add_argument(
        "--critic-hidden-sizes",
        type=int,
        nargs="+",
        default=None,
        help="hidden layers of the critic, if not the actor's",
    )
    parser.add_argument(
        "--activation",
        choices=("tanh", "relu"),
        default=None,
        help="activation of the hidden layers (default: see --preset, else tanh)",
    )


def add_learner_flags(parser: argparse.ArgumentParser) -> None:
    """The learner's options (PPO_OPTIONS) and switches (PPO_SWITCHES, each with a --no- form)."""
    for flag, _, kind, text in PPO_OPTIONS:
        parser.add_argument(flag, type=kind, default=None, help=text + " (default: see --preset)")
    for flag, _, text in PPO_SWITCHES:
        parser.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=None, help=text + " (default: see --preset)"
        )


def add_evaluation_flags(parser: argparse.ArgumentParser) -> None:
    """The periodic evaluation, and stopping at its return: --eval-every, --eval-episodes,
    --eval-deterministic, --stop-at-return."""
    parser.add_argument(
        "--eval-every",
        type=int,
        default=None,
        help="env steps between evaluations on a separate env copy; "
        "the best model goes to the run folder's best/ (default: a twentieth "
        "of --steps; 0: no evaluation)",
    )
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation")
    parser.add_argument(
        "--eval-deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="evaluate with the most likely actions, or with sampled ones "
        "(default: deterministic, except for Atari, which samples as RL Zoo "
        "evaluates it)",
    )
    parser.add_argument(
        "--stop-at-return",
        type=float,
        default=None,
        help="stop once an evaluation's mean return reaches this",
    )


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The run folder and the run: --log-dir, --checkpoint-every, --resume, --timeout, --save-dir,
    --quiet."""
    parser.add_argument("--log-dir", default="runs", help="parent folder of the run folders")
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=100_000,
        help="env steps between checkpoints (0: only at the end)",
    )
    parser.add_argument("--resume", default=None, help="a run folder to continue")
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--save-dir", default=None, help="also save the weights here (default: data/ENV)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_experiment_flags(parser: argparse.ArgumentParser) -> None:
    """Settings from a file, several seeds, tracking: --presets, --seeds, --jobs, --track,
    --wandb-project, --wandb-entity."""
    parser.add_argument(
        "--presets",
        default=None,
        help="a presets file (the format of AsyncTools/presets.json, as ppo-tune writes it): "
        "its entry for --env sets every option not given here",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="one run per seed, each with its own run folder and weights in --save-dir/seed<k>; "
        "compare them with ppo-compare",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="with --seeds: runs at a time, each in its own process"
    )
    parser.add_argument(
        "--track",
        action="store_true",
        help="send the run's scalars, settings and learning curve to Weights & Biases "
        "(pip install -e .[track])",
    )
    parser.add_argument("--wandb-project", default="parallel-ppo", help="with --track: the W&B project")
    parser.add_argument("--wandb-entity", default=None, help="with --track: the W&B team or user")


def ppo_options(args: argparse.Namespace) -> dict:
    options = {
        name: getattr(args, name_of(flag))
        for flag, name, *_ in PPO_OPTIONS + PPO_SWITCHES
        if getattr(args, name_of(flag)) is not None
    }
    for name in NETWORK_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            options[name] = tuple(value) if isinstance(value, list) else value
    return dict(options, seed=args.seed, device=args.device)


def name_of(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


# Every PPO keyword a flag sets, with the flag's attribute in the parsed arguments.
OPTION_ATTRS = {name: name_of(flag) for flag, name, *_ in PPO_OPTIONS + PPO_SWITCHES} | {
    name: name for name in NETWORK_OPTIONS
}


def with_presets_entry(args: argparse.Namespace, entry: dict[str, dict[str, Any]]) -> argparse.Namespace:
    """`args` with every option it leaves out (None) taken from a presets entry ({"ppo": PPO
    keywords with flags, "runner": num_envs, num_steps, eval_deterministic})."""
    filled = argparse.Namespace(**vars(args))
    for part, attrs in (("ppo", OPTION_ATTRS), ("runner", {name: name for name in RUNNER_OPTIONS})):
        for name, value in entry.get(part, {}).items():
            if getattr(filled, attrs[name]) is None:
                setattr(filled, attrs[name], value)
    return filled


# The exit status: 0 when the run ended by itself (its steps or --timeout); 128 + the signal's
# number when SIGINT (Ctrl-C) or SIGTERM stopped it, after saving the checkpoint and weights.
EXIT_CODES = {
    None: 0,
    "timeout": 0,
    "stop_at_return": 0,
    "callback": 0,
    "SIGINT": 128 + signal.SIGINT,
    "SIGTERM": 128 + signal.SIGTERM,
}
# Options that gained flags (and so presets) after train_args.json existed: an older run's file
# lacks them.
UNRECORDED_IN_OLD_RUNS = ("value_coef", "max_grad_norm", "orthogonal_init")
RESUME_KEEPS = (
    "steps",
    "timeout",
    "quiet",
    "checkpoint_every",
    "save_dir",
    "track",
    "wandb_project",
    "wandb_entity",
    "resume",
)
ARGS_FILE = "train_args.json"


def with_saved_settings(args: argparse.Namespace) -> argparse.Namespace:
    """For --resume: the run's own settings, but this command's RESUME_KEEPS."""
    file = Path(args.resume) / ARGS_FILE
    if not file.is_file():
        raise SystemExit(f"train.py: error: --resume: {file} not found (not a train.py run folder)")
    saved = json.loads(file.read_text())
    defaults = vars(parse_args([]))  # for options newer than the run's train_args.json
    ignored = [
        f"--{key.replace('_', '-')} {value}"
        for key, value in vars(args).items()
        if key not in RESUME_KEEPS and value != defaults[key] and value != saved.get(key)
    ]
    if ignored:
        print(
            f"--resume: ignoring {', '.join(ignored)}: a resumed run keeps its own settings "
            f"({file}); only --{', --'.join(k.replace('_', '-') for k in RESUME_KEEPS[:-1])} "
            f"come from this command",
            file=sys.stderr,
        )
    return argparse.Namespace(
        **{
            **defaults,
            **fixed_before_recorded(),
            **saved,
            **{key: getattr(args, key) for key in RESUME_KEEPS},
        }
    )


def fixed_before_recorded() -> dict:
    """The options train_args.json did not record before they had flags, at the values every run
    then trained with (PPO's defaults: no preset set them), so that such a run resumes as it was."""
    signature = inspect.signature(PPO)
    return {name: signature.parameters[name].default for name in UNRECORDED_IN_OLD_RUNS}


def build(
    args: argparse.Namespace, callback: Callable[[AsyncPPO, dict], bool | None] | None = None
) -> tuple[PPO, AsyncPPO]:
    """The learner and the runner that `args` describe (`callback`: AsyncPPO's, after every round)."""
    ppo = ppo_for_env(args.env, preset=args.preset == "auto", **ppo_options(args))
    runner = AsyncPPO(
        env=args.env,
        ppo=ppo,
        num_envs=args.num_envs,
        steps=args.steps,
        num_steps=args.num_steps,
        rollout=args.rollout,
        backend=args.backend,
        progress_bar=not args.quiet,
        log_dir=args.log_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        non_finite_rewards=args.non_finite_rewards,
        eval_every=eval_every(args),
        eval_episodes=args.eval_episodes,
        eval_deterministic=args.eval_deterministic,
        stop_at_return=args.stop_at_return,
        preset=args.preset == "auto",
        overlap=args.overlap,
        callback=callback,
    )
    return ppo, runner


def main(argv: list[str] | None = None) -> int:
    """train.py: one run, or with --seeds one run per seed; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        args = checked(args)
    except (ValueError, ImportError) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    if args.seeds is not None and len(args.seeds) > 1:
        return run_seeds(args, argv)
    return train(args)


def checked(args: argparse.Namespace) -> argparse.Namespace:
    """The arguments, resumed (--resume) or filled from --presets, with the combinations that
    cannot work refused (ValueError; ImportError for --track without wandb)."""
    if args.seeds is not None and args.resume is not None:
        raise ValueError("--seeds starts new runs; --resume continues one run folder: give one of them")
    check_jobs(args.jobs)
    if args.seeds is not None and len(set(args.seeds)) < len(args.seeds):
        raise ValueError(f"--seeds: each seed once (their runs would share a save folder), got {args.seeds}")
    if args.seeds is not None and len(args.seeds) == 1:  # one of --seeds' runs, or a single one
        args.seed = args.seeds[0]
        args.save_dir = str(Path(args.save_dir or default_save_dir(args.env)) / f"seed{args.seed}")
    if args.resume is not None:
        args = with_saved_settings(args)
    elif args.presets is not None:
        args = with_presets_entry(args, read_presets_file(args.presets, args.env, OPTION_ATTRS))
    if args.track:
        import_wandb()
    return args


def run_seeds(args: argparse.Namespace, argv: list[str]) -> int:
    """One train.py process per seed, --jobs at a time (quiet when several run at once), each
    saving its weights in --save-dir/seed<k>; prints their run folders' parent."""
    save_dir = Path(args.save_dir or default_save_dir(args.env))
    quiet = ["--quiet"] if args.jobs > 1 else []
    argvs = [[*argv, "--seeds", str(seed), "--save-dir", str(save_dir), *quiet] for seed in args.seeds]
    codes = run_processes("AsyncTools.train_cli", argvs, args.jobs)
    print(
        f"{len(args.seeds)} seeds: exit statuses {codes}; run folders under {args.log_dir}/ "
        f"(compare them: ppo-compare {args.log_dir})"
    )
    return combined_exit_code(codes)


def default_save_dir(env_id: str) -> str:
    return f"data/{env_id.replace(':', '-')}"


def train(args: argparse.Namespace) -> int:
    """One run of the checked `args`; returns the exit status."""
    save_dir = Path(args.save_dir or default_save_dir(args.env))
    for flag, folder in (("--save-dir", save_dir), ("--log-dir", Path(args.log_dir))):
        problem = unwritable(folder)
        if problem is not None:  # found now, not after the whole run
            print(f"train.py: error: {flag} {folder}: {problem}", file=sys.stderr)
            return 2
    started = time.time()
    try:  # a setting that does not fit (a space, a value out of range): a usage error, no traceback
        ppo, runner = build(args)
    except (TypeError, ValueError, gym.error.Error) as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    settings = resolved(args, ppo, runner)
    (runner.run_dir / ARGS_FILE).write_text(json.dumps(settings, indent=1))
    tracker = None
    try:  # the runner is closed also when W&B cannot start (not logged in, say)
        if args.track:  # once the run folder exists: W&B keeps its files there
            tracker = WandbTracker(runner.run_dir, settings, args.wandb_project, args.wandb_entity)
            runner.callback = tracker.log_round
        runner.run(timeout=args.timeout)
    except TrackingError as error:
        print(f"train.py: error: {error}", file=sys.stderr)
        return 2
    finally:
        runner.close()
        if tracker is not None:
            finish_tracking(tracker)
    return saved_weights(ppo, runner, save_dir, started)


def finish_tracking(tracker: WandbTracker) -> None:
    """Ends the W&B run; a failure there is said in one line and does not cost the weights."""
    try:
        tracker.finish()
    except Exception as error:  # W&B's own (network, files): the run itself is done and saved
        print(f"train.py: warning: --track: W&B could not finish the run ({error})", file=sys.stderr)


def saved_weights(ppo: PPO, runner: AsyncPPO, save_dir: Path, started: float) -> int:
    """Saves the weights in `save_dir` and prints the run's closing line; returns the exit status
    (1 when the weights could not be written)."""
    say_if_replacing(save_dir, started)
    try:
        ppo.save_weights(save_dir)
    except OSError as error:  # the disk filled, the folder went away: the run folder has them
        print(
            f"{summary(runner)}\ntrain.py: error: could not write the weights to {save_dir} "
            f"({error.strerror or error}); the run folder's copy is in "
            f"{runner.run_dir / 'weights'}",
            file=sys.stderr,
        )
        return 1
    print(f"{summary(runner)}; weights saved to {save_dir}")
    return EXIT_CODES[runner.stopped_by]


def unwritable(folder: Path) -> str | None:
    """Why files cannot be written in `folder` (created if missing), or None if they can: a
    probe file is created there and removed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder, prefix=".write-probe-").close()
    except FileExistsError:
        return "is a file, not a folder"
    except OSError as error:
        return f"cannot write there ({error.strerror or error})"
    return None


def summary(runner: AsyncPPO) -> str:
    """The run's closing line: its steps and the mean of the returns the bar reports (on
    Atari, real game scores)."""
    recent = runner.recent_returns()
    what = "games (real scores)" if runner.game_returns else "episodes"
    ending = "interrupted" if runner.interrupted else "trained"
    mean = np.mean(recent) if recent else float("nan")
    return f"{ending} {runner.total_steps} steps; mean return of the last {len(recent)} {what}: {mean:.1f}"


def resolved(args: argparse.Namespace, ppo: PPO, runner: AsyncPPO) -> dict:
    """The command line with every default filled in by the value actually used (from the
    family defaults, the preset or the learner's own defaults): what train_args.json records."""
    settings = dict(
        vars(args),
        num_envs=runner.num_envs,
        num_steps=runner.num_steps,
        eval_every=runner.evaluation.every if runner.evaluation is not None else 0,
        eval_deterministic=runner.eval_deterministic,
    )
    for flag, name, *_ in PPO_OPTIONS + PPO_SWITCHES:
        settings[name_of(flag)] = getattr(ppo, name) if hasattr(ppo, name) else ppo.config[name]
    for name in NETWORK_OPTIONS:
        settings[name] = ppo.config[name]
    return settings


def eval_every(args: argparse.Namespace) -> int | None:
    """--eval-every, with its default (a twentieth of the run) filled in; None for 0 (off)."""
    every = args.eval_every if args.eval_every is not None else max(1, args.steps // 20)
    return every or None


def say_if_replacing(save_dir: Path, started: float) -> None:
    """Weights in `save_dir` written before this run started belong to another run (or to this
    run's earlier part): say that they are being replaced."""
    existing = save_dir / POLICY_FILE
    if existing.is_file() and existing.stat().st_mtime < started:
        written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(existing.stat().st_mtime))
        print(
            f"replacing the weights in {save_dir} written at {written} by an earlier run "
            f"(pass --save-dir to keep them)",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
