"""Atari learning on EnvPool: this project's CLI defaults against CleanRL's `ppo_atari_envpool.py`
and Stable-Baselines3 with RL Zoo's Atari settings, run side by side, each pinned to a core
(round robin), same game, same step budget, same seed.

    python benchmarks/atari_vs_cleanrl.py --cleanrl-script PATH/ppo_atari_envpool.py \\
        --cleanrl-pythonpath DIR --env Breakout-v5 --steps 1500000
    python benchmarks/atari_vs_cleanrl.py --sides sb3_zoo --env Breakout-v5 --steps 1000000

- ours: `python train.py --env Breakout-v5 --backend envpool --steps N --seed S`, exactly as a
  user runs it (no other flag, no thread setting).
- CleanRL: its script unmodified, `--env-id Breakout-v5 --total-timesteps N --seed S`. It was
  written for EnvPool 0.6's gym API (`reset() -> obs`, `step() -> 4-tuple`); today's EnvPool
  speaks gym 0.26's, so the child process hands the script an adapter with the old signatures
  (`done = terminated or truncated`, EnvPool's `info` untouched). Its extra packages (`gym`,
  `tyro`) come from `--cleanrl-pythonpath`, e.g. `pip install --target DIR gym==0.26.2 tyro`.

- SB3 + RL Zoo (`--sides sb3_zoo`): `PPO("CnnPolicy")` with rl-baselines3-zoo's `atari` entry
  of hyperparams/ppo.yml (8 envs x 128 steps, 4 epochs of 256, lr and clip 2.5e-4 and 0.1
  decayed linearly, entropy 0.01, value weight 0.5) on `make_atari_env("<Game>NoFrameskip-v4")`
  (SB3's AtariWrapper: the same preprocessing as CleanRL's EnvPool settings) and 4 stacked
  frames; one torch thread, as the pinned core gives the others. stable-baselines3 must be
  importable (e.g. `--sb3-pythonpath DIR` after `pip install --target DIR stable-baselines3`).

All report the same figure: the mean real (unclipped, whole-game) score of the last 20 games
played in training (CleanRL's `avg_episodic_return`; ours from the run folder's games.csv;
SB3's from its Monitor, which sits under the AtariWrapper and so sees whole games).
Writes results.json in --out (default benchmarks/results/atari_vs_cleanrl/), keeping the sides
not run this time, and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import runpy
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from defaults_vs_sb3 import with_zoo_schedules
from harness import child_env, load_json, machine_line, same_run, save_json, table

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "atari_vs_cleanrl"
LAST_GAMES = 20
PRINTED_GAME = re.compile(r"global_step=(\d+), episodic_return=(-?[\d.]+)")


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


# rl-baselines3-zoo hyperparams/ppo.yml, entry "atari" (lin_X: X decayed linearly to 0)
ZOO_ATARI = dict(
    n_envs=8,
    n_steps=128,
    n_epochs=4,
    batch_size=256,
    learning_rate="lin_2.5e-4",
    clip_range="lin_0.1",
    vf_coef=0.5,
    ent_coef=0.01,
    frame_stack=4,
)


def run_sb3_child(env_id: str, steps: int, seed: int) -> None:
    """SB3 PPO with RL Zoo's Atari settings; prints each whole game as CleanRL does."""
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    class PrintGames(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # Monitor's record of a whole game
                    print(
                        f"global_step={self.num_timesteps}, episodic_return={info['episode']['r']}",
                        flush=True,
                    )
            return True

    torch.set_num_threads(1)
    gym.register_envs(ale_py)
    hp = with_zoo_schedules(ZOO_ATARI)
    env = VecFrameStack(
        make_atari_env(env_id, n_envs=hp.pop("n_envs"), seed=seed), n_stack=hp.pop("frame_stack")
    )
    model = PPO("CnnPolicy", env, seed=seed, device="cpu", verbose=0, **hp)
    model.learn(steps, callback=PrintGames())


def sb3_env_id(envpool_id: str) -> str:
    """Breakout-v5 (EnvPool) -> BreakoutNoFrameskip-v4, the id RL Zoo trains Atari on."""
    return envpool_id.split("-v")[0] + "NoFrameskip-v4"


def start_pinned(command: list[str], out: Path, core: int, cwd: Path, env=None) -> subprocess.Popen:
    """`python *command` on one core, in the background, its output to OUT/stdout.txt."""
    log = open(out / "stdout.txt", "w")
    return subprocess.Popen(
        [sys.executable, *command],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )


def start_ours(args, out: Path, core: int) -> subprocess.Popen:
    return start_pinned(
        [
            str(REPO / "train.py"),
            "--env",
            args.env,
            "--backend",
            "envpool",
            "--steps",
            str(args.steps),
            "--seed",
            str(args.seed),
            "--log-dir",
            str(out / "runs"),
            "--save-dir",
            str(out / "weights"),
            "--quiet",
        ],
        out,
        core,
        cwd=REPO,
    )


def start_cleanrl(args, out: Path, core: int) -> subprocess.Popen:
    return start_pinned(
        [
            str(Path(__file__).resolve()),
            "--cleanrl-child",
            args.cleanrl_script,
            "--",
            "--env-id",
            args.env,
            "--total-timesteps",
            str(args.steps),
            "--seed",
            str(args.seed),
        ],
        out,
        core,
        cwd=out,
        env=child_env((args.cleanrl_pythonpath,), PYTHONWARNINGS="ignore"),
    )


def start_sb3_zoo(args, out: Path, core: int) -> subprocess.Popen:
    pythonpath = (args.sb3_pythonpath,) if args.sb3_pythonpath else (os.environ.get("PYTHONPATH"),)
    return start_pinned(
        [str(Path(__file__).resolve()), "--sb3-child", sb3_env_id(args.env), str(args.steps), str(args.seed)],
        out,
        core,
        cwd=out,
        env=child_env(pythonpath, PYTHONWARNINGS="ignore"),
    )


SIDES = {"ours": start_ours, "cleanrl": start_cleanrl, "sb3_zoo": start_sb3_zoo}


def games_of_ours(out: Path) -> list[tuple[int, float]]:
    (games_csv,) = (out / "runs").glob("*/games.csv")
    with open(games_csv, newline="") as handle:
        return [(int(row["steps"]), float(row["return"])) for row in csv.DictReader(handle)]


def games_printed(out: Path) -> list[tuple[int, float]]:
    """The games CleanRL's script (and the SB3 child, in the same format) printed."""
    text = (out / "stdout.txt").read_text()
    return [(int(step), float(score)) for step, score in PRINTED_GAME.findall(text)]


def summary(games: list[tuple[int, float]], seconds: float, steps: int) -> dict:
    scores = [score for _, score in games]
    return {
        "games": len(games),
        "last_games_mean": float(np.mean(scores[-LAST_GAMES:])),
        "best_window_mean": max(
            float(np.mean(scores[i : i + LAST_GAMES])) for i in range(max(1, len(scores) - LAST_GAMES + 1))
        ),
        "seconds": round(seconds),
        "steps_per_second": round(steps / seconds, 1),
        "curve": games,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="Breakout-v5", help="EnvPool Atari id")
    parser.add_argument("--steps", type=int, default=1_500_000)
    parser.add_argument("--seed", type=int, default=1, help="CleanRL's default seed")
    parser.add_argument("--sides", nargs="+", choices=tuple(SIDES), default=["ours", "cleanrl"])
    parser.add_argument("--cleanrl-script", help="CleanRL's ppo_atari_envpool.py (side cleanrl)")
    parser.add_argument("--cleanrl-pythonpath", help="folder holding gym and tyro for CleanRL's script")
    parser.add_argument("--sb3-pythonpath", help="folder holding stable-baselines3, if not installed")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()
    if "cleanrl" in args.sides and not (args.cleanrl_script and args.cleanrl_pythonpath):
        parser.error("--sides cleanrl needs --cleanrl-script and --cleanrl-pythonpath")

    results_dir = Path(args.out)
    results_dir.mkdir(parents=True, exist_ok=True)
    started, processes = time.time(), {}
    for core, side in enumerate(args.sides):
        out = results_dir / side
        out.mkdir(exist_ok=True)
        processes[side] = SIDES[side](args, out, core % os.cpu_count())
    seconds = {}
    while len(seconds) < len(processes):
        for side, process in processes.items():
            if side not in seconds and process.poll() is not None:
                if process.returncode != 0:
                    sys.exit(f"{side} failed (exit {process.returncode}): see {results_dir / side}")
                seconds[side] = time.time() - started
        time.sleep(1)
    results = previous_results(results_dir / "results.json", args)
    results["machine"] = machine_line()
    for side in args.sides:
        games = (games_of_ours if side == "ours" else games_printed)(results_dir / side)
        results[side] = dict(summary(games, seconds[side], args.steps), run_with=sorted(args.sides))
    save_json(results_dir / "results.json", results)
    print(results["machine"])
    rows = [
        [
            side,
            results[side]["games"],
            f"{results[side]['last_games_mean']:.1f}",
            f"{results[side]['best_window_mean']:.1f}",
            f"{results[side]['seconds']} s",
            results[side]["steps_per_second"],
        ]
        for side in SIDES
        if side in results
    ]
    print(
        "\n".join(
            table(
                [
                    f"{args.env}, {args.steps:,} steps, seed {args.seed}",
                    "games",
                    f"last {LAST_GAMES} games",
                    "best 20-game window",
                    "wall",
                    "steps/s",
                ],
                rows,
            )
        )
    )


def previous_results(path: Path, args) -> dict:
    """The results file's other sides when they ran the same env, budget and seed."""
    key = {"env": args.env, "steps": args.steps, "seed": args.seed}
    old = load_json(path, {})
    kept = {
        side: old[side] for side in SIDES if same_run(old, key) and side in old and side not in args.sides
    }
    return {**key, **kept}


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--cleanrl-child":
        run_cleanrl_child(sys.argv[2], sys.argv[4:])
    elif len(sys.argv) > 2 and sys.argv[1] == "--sb3-child":
        run_sb3_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
