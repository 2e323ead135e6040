"""EnvPool against the subprocess backend and the default ("auto": what the machine picks), on
one Atari game and on HalfCheetah-v5: raw env
speed (uniform random actions through EnvVectorizer.step_autoreset) and whole-loop speed
(AsyncPPO rounds: collection, transfer and the PPO update), each in a fresh process, the two
backends one after the other in one run.

    python benchmarks/envpool_speed.py                   # Pong-v5 and HalfCheetah-v5, 8 copies
    python benchmarks/envpool_speed.py --seconds 5 --rounds 3 --num-envs 4

As a user runs it, the thread count is left to the learner (`--threads` sets it, as an expert
would). Writes benchmarks/results/envpool_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness import call_fresh, machine_line, save_json

RESULTS = Path(__file__).resolve().parent / "results" / "envpool_speed.json"
TASKS = {"Pong-v5": "ALE/Pong-v5", "HalfCheetah-v5": "HalfCheetah-v5"}  # EnvPool id: gymnasium id


def raw_speed(env_id: str, backend: str, num_envs: int, seconds: float) -> float:
    """Env steps per second with random actions (no learner)."""
    import numpy as np

    from AsyncTools.AsyncPPO import ppo_for_env
    from AsyncTools.collectors import make_collector

    ppo = ppo_for_env(env_id, device="cpu", seed=0, preset=False)
    collector = make_collector(env_id, ppo, num_envs, backend=backend, seed=0)
    vectorizer = collector.env
    space = vectorizer.action_space
    space.seed(0)
    try:
        vectorizer.reset()
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            actions = np.stack([space.sample() for _ in range(num_envs)])
            *_, valid = vectorizer.step_autoreset(actions)
            steps += int(valid.sum())
        return steps / (time.perf_counter() - start)
    finally:
        collector.close()


def loop_speed(env_id: str, backend: str, num_envs: int, rounds: int) -> float:
    """Env steps per second of whole AsyncPPO rounds (after one warm-up round)."""
    from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env

    ppo = ppo_for_env(env_id, device="cpu", seed=0, preset=False)
    runner = AsyncPPO(
        env_id, ppo, num_envs=num_envs, steps=10**9, backend=backend, preset=False, progress_bar=False
    )
    try:
        runner.train_round()
        steps, start = runner.total_steps, time.perf_counter()
        for _ in range(rounds):
            runner.train_round()
        return (runner.total_steps - steps) / (time.perf_counter() - start)
    finally:
        runner.close()


def measure_in_fresh_process(what: str, env_id: str, backend: str, args) -> float:
    """One measurement in its own interpreter: subprocess workers are forked, which is not safe
    once EnvPool's threads run in the forking process."""
    common = dict(env_id=env_id, backend=backend, num_envs=args.num_envs)
    if what == "raw":
        return call_fresh("envpool_speed:raw_speed", dict(common, seconds=args.seconds), threads=args.threads)
    return call_fresh("envpool_speed:loop_speed", dict(common, rounds=args.rounds), threads=args.threads)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="per raw-speed measurement")
    parser.add_argument("--rounds", type=int, default=4, help="whole-loop rounds per measurement")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: the learner's choice)"
    )
    args = parser.parse_args()
    rows = []
    for envpool_id, gym_id in TASKS.items():
        for what in ("raw", "loop"):
            speeds = {
                "envpool": measure_in_fresh_process(what, envpool_id, "envpool", args),
                "subprocess": measure_in_fresh_process(what, gym_id, "subprocess", args),
                "auto": measure_in_fresh_process(what, gym_id, "auto", args),
            }
            rows.append(
                dict(
                    task=envpool_id,
                    what=what,
                    num_envs=args.num_envs,
                    **speeds,
                    vs_subprocess=speeds["envpool"] / speeds["subprocess"],
                    vs_auto=speeds["envpool"] / speeds["auto"],
                )
            )
            print(
                f"{envpool_id:15s} {what:5s} "
                + "   ".join(f"{name} {speed:7.0f}" for name, speed in speeds.items())
                + f"   envpool x{rows[-1]['vs_subprocess']:.2f} subprocess, "
                f"x{rows[-1]['vs_auto']:.2f} auto",
                flush=True,
            )
    machine = machine_line()
    save_json(RESULTS, dict(machine=machine, threads=args.threads, rows=rows))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
