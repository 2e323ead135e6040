"""Load saved weights and play episodes, printing each return; optionally record them.

python play.py --weights data/CartPole-v1 --env CartPole-v1 --episodes 5
python play.py --weights data/CartPole-v1 --env CartPole-v1 --gif runs/cartpole.gif
python play.py --weights data/CartPole-v1 --env CartPole-v1 --video runs/videos
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Lists every option's default and keeps the example lines above as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--weights", required=True, help="directory written by save_weights")
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium env id")
    parser.add_argument("--episodes", type=int, default=5, help="episodes to play")
    parser.add_argument("--seed", type=int, default=0, help="episode k is reset with seed + k")
    chooser = parser.add_mutually_exclusive_group()
    chooser.add_argument(
        "--stochastic",
        action="store_true",
        default=None,
        help="sample actions instead of taking the most likely one (the "
        "default for image policies, i.e. Atari, as in RL Zoo)",
    )
    chooser.add_argument(
        "--deterministic",
        dest="stochastic",
        action="store_false",
        default=None,
        help="take the most likely action (the default for vector observations)",
    )
    record = parser.add_mutually_exclusive_group()
    record.add_argument("--gif", default=None, help="write the episodes to this animated GIF")
    record.add_argument(
        "--video", default=None, help="write one MP4 per episode into this folder (needs moviepy)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1, got {args.episodes}")
    if not Path(args.weights).is_dir():
        parser.error(f"--weights: no such directory: {args.weights}")

    # Imported after the arguments are checked, so --help and usage errors answer at once.
    from AsyncTools.AsyncPPO import check_spaces
    from AsyncTools.envs import env_from_id, flat_for_learner
    from AsyncTools.evaluation import evaluate, record_gif, record_video
    from AsyncTools.presets import family_defaults
    from PPO import PPO

    try:
        ppo = PPO.load(args.weights, device="cpu")  # built with the options it was saved with
    except (FileNotFoundError, ValueError) as error:  # no weights file, or a corrupt one
        parser.error(f"--weights {args.weights}: {error}")
    recording = args.gif is not None or args.video is not None
    try:
        env = flat_for_learner(
            env_from_id(args.env, render_mode="rgb_array" if recording else None), ppo.observation_space
        )
        check_spaces(env.observation_space, env.action_space, ppo)
    except (TypeError, ValueError) as error:  # a space that does not fit, an env that cannot record
        parser.error(f"--env {args.env}: {error}")
    deterministic = (
        family_defaults(ppo)["eval_deterministic"] if args.stochastic is None else not args.stochastic
    )
    options = dict(episodes=args.episodes, deterministic=deterministic, seed=args.seed)
    if args.gif is not None:
        returns = record_gif(ppo, env, args.gif, **options)
    elif args.video is not None:
        returns = record_video(ppo, env, args.video, **options)
    else:
        returns = evaluate(ppo, env, **options)
    env.close()
    if recording:
        print(f"recorded to {args.gif or args.video}")
    for i, value in enumerate(returns):
        print(f"episode {i}: return {value:.1f}")
    print(f"mean return {sum(returns) / len(returns):.1f}")  # the last line: tests parse it


if __name__ == "__main__":
    main()
