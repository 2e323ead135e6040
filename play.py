"""Load saved weights and play episodes, printing each return.

    python play.py --weights data/CartPole-v1 --env CartPole-v1 --episodes 5
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import torch as t

from AsyncTools.AsyncPPO import check_spaces
from PPO import PPO


def play(ppo, env: gym.Env, episodes: int, seed: int | None = None,
         deterministic: bool = True) -> list[float]:
    """Plays `episodes` episodes with `ppo`'s policy; returns their returns."""
    returns = []
    for episode in range(episodes):
        state, _ = env.reset(seed=None if seed is None else seed + episode)
        total, done = 0.0, False
        while not done:
            action = ppo.get_action(t.as_tensor(state).unsqueeze(0), deterministic=deterministic)[0]
            state, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--weights", required=True, help="directory written by save_weights")
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium env id")
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    args = parser.parse_args(argv)
    env = gym.make(args.env)
    ppo = PPO.load(args.weights, device="cpu")  # built with the options it was saved with
    check_spaces(env.observation_space, env.action_space, ppo)
    returns = play(ppo, env, args.episodes, args.seed, deterministic=not args.stochastic)
    for i, value in enumerate(returns):
        print(f"episode {i}: return {value:.1f}")
    print(f"mean return {sum(returns) / len(returns):.1f}")


if __name__ == "__main__":
    main()
