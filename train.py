"""Train PPO on a Gymnasium env with the one-liner and save the weights.

    python train.py                      # CartPole-v1, 32 envs, 150k steps -> data/CartPole-v1
    python train.py --env Pendulum-v1 --steps 300000 --save-dir data/pendulum
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium env id")
    parser.add_argument("--num-envs", type=int, default=32, help="env copies stepped in lockstep")
    parser.add_argument("--steps", type=int, default=150_000, help="env steps to train for")
    parser.add_argument("--seed", type=int, default=0, help="seed of the learner and env copies")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    parser.add_argument("--save-dir", default=None, help="where to save weights (default: data/ENV)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    env = gym.make(args.env)
    ppo = ppo_for_env(env, seed=args.seed, device=args.device)
    runner = AsyncPPO(env=env, ppo=ppo, num_envs=args.num_envs, steps=args.steps)
    returns = runner.run()
    save_dir = args.save_dir or f"data/{args.env}"
    ppo.save_weights(save_dir)
    print(f"trained {runner.total_steps} steps; mean return of the last {args.num_envs} episodes: "
          f"{np.mean(returns[-args.num_envs:]):.1f}; weights saved to {save_dir}")
    runner.close()


if __name__ == "__main__":
    main()
