"""Atari learning on EnvPool: this project's CLI defaults against CleanRL's `ppo_atari_envpool.py`,
the two run side by side in one run, each pinned to its own core, same game, same step budget,
same seed.

    python benchmarks/atari_vs_cleanrl.py --cleanrl-script PATH/ppo_atari_envpool.py \\
        --cleanrl-pythonpath DIR --env Breakout-v5 --steps 1500000

- ours: `python train.py --env Breakout-v5 --backend envpool --steps N --seed S`, exactly as a
  user runs it (no other flag, no thread setting).
- CleanRL: its script unmodified, `--env-id Breakout-v5 --total-timesteps N --seed S`. It was
  written for EnvPool 0.6's gym API (`reset() -> obs`, `step() -> 4-tuple`); today's EnvPool
  speaks gym 0.26's, so the child process hands the script an adapter with the old signatures
  (`done = terminated or truncated`, EnvPool's `info` untouched). Its extra packages (`gym`,
  `tyro`) come from `--cleanrl-pythonpath`, e.g. `pip install --target DIR gym==0.26.2 tyro`.

Both report the same figure: the mean real (unclipped, whole-game) score of the last 20 games
played in training (CleanRL's `avg_episodic_return`; ours from the run folder's games.csv).
Writes results.json in --out (default benchmarks/results/atari_vs_cleanrl/) and prints a table.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import runpy
import subprocess
import sys
import time
from pathlib import Path

from hardware import machine_line

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "atari_vs_cleanrl"
LAST_GAMES = 20
CLEANRL_GAME = re.compile(r"global_step=(\d+), episodic_return=(-?[\d.]+)")


class OldGymApi:
    """An EnvPool pool with EnvPool 0.6's gym signatures, for CleanRL's script."""

    def __init__(self, pool):
        import gym
        self.pool = pool
        self.action_space = gym.spaces.Discrete(int(pool.action_space.n))
        space = pool.observation_space
        self.observation_space = gym.spaces.Box(space.low, space.high, space.shape, space.dtype)

    def reset(self, **kwargs):
        observations, _ = self.pool.reset(**kwargs)
        return observations

    def step(self, actions):
        observations, rewards, terminated, truncated, info = self.pool.step(actions)
        return observations, rewards, np.logical_or(terminated, truncated), info

    def close(self):
        self.pool.close()


def run_cleanrl_child(script: str, script_args: list[str]) -> None:
    """Runs CleanRL's script in this process with `envpool.make` returning the adapter."""
    import envpool
    make = envpool.make
    envpool.make = lambda *args, **kwargs: OldGymApi(make(*args, **kwargs))
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")


def pinned(core: int):
    return lambda: os.sched_setaffinity(0, {core})


def start_ours(args, out: Path, core: int) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "train.py"), "--env", args.env, "--backend", "envpool",
               "--steps", str(args.steps), "--seed", str(args.seed), "--log-dir", str(out / "runs"),
               "--save-dir", str(out / "weights"), "--quiet"]
    log = open(out / "stdout.txt", "w")
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=pinned(core))


def start_cleanrl(args, out: Path, core: int) -> subprocess.Popen:
    command = [sys.executable, str(Path(__file__).resolve()), "--cleanrl-child", args.cleanrl_script,
               "--", "--env-id", args.env, "--total-timesteps", str(args.steps),
               "--seed", str(args.seed)]
    env = dict(os.environ, PYTHONPATH=args.cleanrl_pythonpath, PYTHONWARNINGS="ignore")
    log = open(out / "stdout.txt", "w")
    return subprocess.Popen(command, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=pinned(core))


def games_of_ours(out: Path) -> list[tuple[int, float]]:
    (games_csv,) = (out / "runs").glob("*/games.csv")
    with open(games_csv, newline="") as handle:
        return [(int(row["steps"]), float(row["return"])) for row in csv.DictReader(handle)]


def games_of_cleanrl(out: Path) -> list[tuple[int, float]]:
    text = (out / "stdout.txt").read_text()
    return [(int(step), float(score)) for step, score in CLEANRL_GAME.findall(text)]


def summary(games: list[tuple[int, float]], seconds: float, steps: int) -> dict:
    scores = [score for _, score in games]
    return {"games": len(games), "last_games_mean": float(np.mean(scores[-LAST_GAMES:])),
            "best_window_mean": max(float(np.mean(scores[i:i + LAST_GAMES]))
                                    for i in range(max(1, len(scores) - LAST_GAMES + 1))),
            "seconds": round(seconds), "steps_per_second": round(steps / seconds, 1),
            "curve": games}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Breakout-v5", help="EnvPool Atari id")
    parser.add_argument("--steps", type=int, default=1_500_000)
    parser.add_argument("--seed", type=int, default=1, help="CleanRL's default seed")
    parser.add_argument("--cleanrl-script", required=True)
    parser.add_argument("--cleanrl-pythonpath", required=True,
                        help="folder holding gym and tyro for CleanRL's script")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()

    results_dir = Path(args.out)
    results_dir.mkdir(parents=True, exist_ok=True)
    sides = {"ours": start_ours, "cleanrl": start_cleanrl}
    started, processes = time.time(), {}
    for core, (side, start) in enumerate(sides.items()):
        out = results_dir / side
        out.mkdir(exist_ok=True)
        processes[side] = start(args, out, core % os.cpu_count())
    seconds = {}
    while len(seconds) < len(processes):
        for side, process in processes.items():
            if side not in seconds and process.poll() is not None:
                if process.returncode != 0:
                    sys.exit(f"{side} failed (exit {process.returncode}): see {results_dir / side}")
                seconds[side] = time.time() - started
        time.sleep(1)
    results = {"machine": machine_line(), "env": args.env, "steps": args.steps, "seed": args.seed,
               "ours": summary(games_of_ours(results_dir / "ours"), seconds["ours"], args.steps),
               "cleanrl": summary(games_of_cleanrl(results_dir / "cleanrl"), seconds["cleanrl"],
                                  args.steps)}
    (results_dir / "results.json").write_text(json.dumps(results, indent=1))
    print(results["machine"])
    print(f"| {args.env}, {args.steps:,} steps, seed {args.seed} | games | last {LAST_GAMES} games "
          "| best 20-game window | wall | steps/s |")
    print("|---|---|---|---|---|---|")
    for side in ("ours", "cleanrl"):
        row = results[side]
        print(f"| {side} | {row['games']} | {row['last_games_mean']:.1f} | "
              f"{row['best_window_mean']:.1f} | {row['seconds']} s | {row['steps_per_second']} |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--cleanrl-child":
        run_cleanrl_child(sys.argv[2], sys.argv[4:])
    else:
        main()
