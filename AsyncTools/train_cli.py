"""Train PPO on a Gymnasium env with the one-liner, log the run and save the weights.

    python train.py                                        # CartPole-v1, 32 envs, 150k steps
    python train.py --env Pendulum-v1 --steps 200000       # settings from the env's preset
    python train.py --env HalfCheetah-v5 --steps 1000000 --lr 1e-4   # any option overrides
    python train.py --resume runs/CartPole-v1_20260101-120000_seed0 --steps 300000

Every run writes a run folder under --log-dir (printed at the start): progress.csv,
episodes.csv, TensorBoard events (if tensorboard is installed), checkpoints, the final weights
and learning_curve.png. Ctrl-C or SIGTERM saves a checkpoint and the weights and stops (a
second signal stops at once); --resume continues from it with the run's own settings
(train_args.json in the run folder): only --steps, --timeout, --quiet, --checkpoint-every and
--save-dir come from the new command line.

Settings: every option not given comes from the env id's preset (AsyncTools/presets.json) or,
for ids without one, from the defaults of the env's family (discrete, continuous, image);
train_args.json in the run folder records the values used.

Exit status: 0 when the run ended by itself (--steps, --timeout or --stop-at-return), 130
after Ctrl-C (SIGINT) and 143 after SIGTERM (checkpoint and weights saved), 1 on an error (the
last checkpoint left intact; also when the weights cannot be written to --save-dir at the end,
the run folder keeping its copy), 2 for bad arguments (among them a --save-dir or --log-dir that
cannot be written, found before training starts).
"""

from __future__ import annotations

import argparse
import inspect
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.collectors import COLLECTOR_BACKENDS
from AsyncTools.rollout import ROLLOUTS
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


def parse_args(argv=None) -> argparse.Namespace:
    """The options in `argv` (default: the command line), each group of flags added in the order
    --help lists them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_env_flags(parser)
    add_network_flags(parser)
    add_learner_flags(parser)
    add_evaluation_flags(parser)
    add_run_flags(parser)
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
RESUME_KEEPS = ("steps", "timeout", "quiet", "checkpoint_every", "save_dir", "resume")
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


def build(args: argparse.Namespace) -> tuple[PPO, AsyncPPO]:
    """The learner and the runner that `args` describe."""
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
    )
    return ppo, runner


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.resume is not None:
        args = with_saved_settings(args)
    save_dir = Path(args.save_dir or f"data/{args.env.replace(':', '-')}")
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
    (runner.run_dir / ARGS_FILE).write_text(json.dumps(resolved(args, ppo, runner), indent=1))
    try:
        runner.run(timeout=args.timeout)
    finally:
        runner.close()
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


def resolved(args: argparse.Namespace, ppo, runner: AsyncPPO) -> dict:
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
