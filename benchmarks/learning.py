"""Learning benchmark: how well the learner learns on the standard tasks, against the published
figures of CleanRL and RL Zoo (shared/ANCHORS.md), mean +- std over seeds, with the wall-clock.

    python benchmarks/learning.py                          # every task, 3 seeds, 2 runs at a time
    python benchmarks/learning.py --tasks hopper,halfcheetah --seeds 3 --jobs 2
    python benchmarks/learning.py --quick                  # every task at 1/20 of its budget, 1 seed

Each run is a fresh subprocess (harness.call_fresh) training with the one-liner
(`ppo_for_env` + `AsyncPPO`) on the CPU with one torch thread. Reported per task:
- `train`: mean return of the last 20 finished training episodes (CleanRL's curves report
  training episodes too);
- `eval`: mean return of 10 deterministic episodes of the final policy on a fresh env (the model
  is saved and loaded back with `PPO.load` first, so this also checks the saved statistics);
- for MountainCar, the env step at which a car first reached the flag.
Results: a markdown table on stdout and in OUT/learning.md, OUT/learning.json, OUT/learning.png.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import REPO, ChildFailed, call_fresh, load_json, machine_line, pyplot, save_json, table

TRAIN_WINDOW = 20
EVAL_EPISODES = 10
SEED_SPACING = 1000  # copy i of a run seeded s is seeded s + i: keep runs' env seeds apart

# CleanRL's continuous settings (ppo_continuous_action.py): 2048 steps per update, 10 epochs of
# 64-sample mini-batches, lr 3e-4 annealed, observation and reward normalisation; 8 envs x 256.
# preset=False: exactly these on CleanRL's 64x64 tanh network (HalfCheetah's preset is RL Zoo's).
MUJOCO = dict(
    ppo=dict(
        lr=3e-4,
        anneal_lr=True,
        k_epochs=10,
        batch_size=2048,
        mini_batch_size=64,
        gamma=0.99,
        GAE_lambda=0.95,
        normalize_obs=True,
        normalize_reward=True,
        value_clip=0.2,
    ),
    runner=dict(num_envs=8, num_steps=256),
    preset=False,
)
NORMALIZED = dict(normalize_obs=True, normalize_reward=True)
# the same with each round collected while the learner updates on the previous one
OVERLAPPED = dict(MUJOCO, runner=dict(MUJOCO["runner"], overlap=True))

TASKS = {
    "cartpole": dict(
        env="CartPole-v1", steps=500_000, ppo={}, runner={}, published="CleanRL ppo.py, 500k steps: 490 +- 6"
    ),
    "acrobot": dict(
        env="Acrobot-v1", steps=500_000, ppo={}, runner={}, published="CleanRL ppo.py, 500k steps: -86 +- 1"
    ),
    "pendulum": dict(
        env="Pendulum-v1",
        steps=200_000,
        ppo=dict(gamma=0.9, lr=1e-3, k_epochs=10, mini_batch_size=256, **NORMALIZED),
        runner=dict(num_envs=16, num_steps=128),
        published="SB3 + RL Zoo settings, 200k steps, measured here: -471",
    ),
    "halfcheetah": dict(
        env="HalfCheetah-v5",
        steps=1_000_000,
        **MUJOCO,
        published="CleanRL, HalfCheetah-v4, 1M steps: 1443 +- 46",
    ),
    "hopper": dict(
        env="Hopper-v5", steps=1_000_000, **MUJOCO, published="CleanRL, Hopper-v4, 1M steps: 2383 +- 272"
    ),
    "halfcheetah-overlap": dict(
        env="HalfCheetah-v5",
        steps=1_000_000,
        **OVERLAPPED,
        published="synchronous rounds, this table's halfcheetah row",
    ),
    "hopper-overlap": dict(
        env="Hopper-v5",
        steps=1_000_000,
        **OVERLAPPED,
        published="synchronous rounds, this table's hopper row",
    ),
    "halfcheetah-overlap-lagweight": dict(
        env="HalfCheetah-v5",
        steps=1_000_000,
        ppo=dict(OVERLAPPED["ppo"], max_lag_weight=2.0),
        runner=OVERLAPPED["runner"],
        preset=False,
        published="the halfcheetah-overlap row (no lag weight)",
    ),
    "mountaincar": dict(
        env="MountainCar-v0",
        steps=500_000,
        ppo=dict(NORMALIZED),
        runner={},
        published="(no published PPO figure; -200 = never reaches the flag)",
    ),
    "mountaincar-rnd": dict(
        env="MountainCar-v0",
        steps=500_000,
        ppo=dict(use_RND=True, **NORMALIZED),
        runner={},
        published="RND: the car should reach the flag within 1M steps",
    ),
}


# ------------------------------------------------------------------ one run (in a subprocess)
def train_and_evaluate(task: str, seed: int, steps: int) -> dict:
    import gymnasium as gym
    import numpy as np
    import torch

    from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
    from PPO import PPO

    torch.set_num_threads(1)
    spec = TASKS[task]
    env = gym.make(spec["env"])
    preset = spec.get("preset", True)
    ppo = ppo_for_env(env, seed=seed, device="cpu", preset=preset, **spec["ppo"])
    runner = AsyncPPO(env, ppo, steps=steps, progress_bar=False, preset=preset, **spec["runner"])
    curve, first_flag, start = [], None, time.perf_counter()
    while runner.total_steps < steps:
        runner.train_round()
        if runner.episode_returns:
            curve.append((runner.total_steps, float(np.mean(runner.episode_returns[-TRAIN_WINDOW:]))))
        if (
            first_flag is None
            and spec["env"].startswith("MountainCar")
            and min(runner.episode_lengths, default=200) < 200
        ):
            first_flag = runner.total_steps
    seconds = time.perf_counter() - start
    runner.close()
    with tempfile.TemporaryDirectory() as directory:
        ppo.save_weights(directory)
        loaded = PPO.load(directory, device="cpu")
    return dict(
        task=task,
        seed=seed,
        steps=runner.total_steps,
        seconds=seconds,
        train=float(np.mean(runner.episode_returns[-TRAIN_WINDOW:])),
        eval=float(np.mean(evaluate(loaded, gym.make(spec["env"]), seed))),
        first_flag=first_flag,
        curve=curve[:: max(1, len(curve) // 200)],
    )


def evaluate(ppo, env, seed: int) -> list[float]:
    returns = []
    for episode in range(EVAL_EPISODES):
        state, _ = env.reset(seed=10_000 + seed + episode)
        total, done = 0.0, False
        while not done:
            action = ppo.get_action(state, deterministic=True)
            state, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


# ------------------------------------------------------------------ the driver
def run_worker(task: str, seed: int, steps: int) -> dict:
    try:
        result = call_fresh("learning:train_and_evaluate", dict(task=task, seed=seed, steps=steps), threads=1)
    except ChildFailed as failure:
        raise RuntimeError(f"{task} seed {seed} failed: {failure}") from None
    print(
        f"  {task} seed {seed}: train {result['train']:.1f}, eval {result['eval']:.1f}, "
        f"{result['seconds']:.0f} s",
        flush=True,
    )
    return result


def summarize(results: list[dict]) -> dict:
    summary = {}
    for task in dict.fromkeys(r["task"] for r in results):
        runs = [r for r in results if r["task"] == task]

        def mean_std(key, runs=runs):
            values = [r[key] for r in runs]
            return statistics.mean(values), statistics.pstdev(values) if len(values) > 1 else 0.0

        flags = [r["first_flag"] for r in runs]
        summary[task] = dict(
            env=TASKS[task]["env"],
            steps=runs[0]["steps"],
            seeds=len(runs),
            train=mean_std("train"),
            eval=mean_std("eval"),
            seconds=statistics.median(r["seconds"] for r in runs),
            first_flag=flags if TASKS[task]["env"].startswith("MountainCar") else None,
            published=TASKS[task]["published"],
        )
    return summary


def markdown(summary: dict, machine: str) -> str:
    rows = []
    for task, s in summary.items():
        flag = ""
        if s["first_flag"] is not None:
            reached = [f for f in s["first_flag"] if f is not None]
            flag = f"; flag first reached at {', '.join(f'{f:,}' for f in reached) or 'never'}"
        rows.append(
            [
                f"{task} ({s['env']})",
                f"{s['steps']:,}",
                s["seeds"],
                f"{s['train'][0]:.1f} +- {s['train'][1]:.1f}",
                f"{s['eval'][0]:.1f} +- {s['eval'][1]:.1f}",
                f"{s['seconds']:.0f} s{flag}",
                s["published"],
            ]
        )
    lines = table(
        [
            "task",
            "env steps",
            "seeds",
            "train (last 20 episodes)",
            "eval (10 deterministic)",
            "wall-clock per run",
            "published",
        ],
        rows,
    )
    return "\n".join([f"Machine: {machine}", ""] + lines) + "\n"


def plot(results: list[dict], file: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    tasks = list(dict.fromkeys(r["task"] for r in results))
    columns = min(4, len(tasks))
    rows = -(-len(tasks) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat[len(tasks) :]:
        axis.set_visible(False)
    for axis, task in zip(axes.flat, tasks, strict=False):
        for run in (r for r in results if r["task"] == task):
            steps, returns = zip(*run["curve"], strict=True) if run["curve"] else ((), ())
            axis.plot(steps, returns, label=f"seed {run['seed']}")
        axis.set_title(f"{TASKS[task]['env']} ({task})", fontsize=9)
        axis.set_xlabel("env steps")
        axis.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        axis.set_ylabel(f"mean return, last {TRAIN_WINDOW} episodes", fontsize=8)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(file, dpi=90)


def machine_name() -> str:
    import torch

    return f"{machine_line()}, no GPU used, torch {torch.__version__}, 1 torch thread per run"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: " + ", ".join(TASKS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seed index to start from")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--quick", action="store_true", help="1/20 of each budget, 1 seed")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "learning"))
    parser.add_argument(
        "--replot", action="store_true", help="redraw OUT/learning.png from OUT/learning.json"
    )
    args = parser.parse_args(argv)
    if args.replot:
        plot(load_json(Path(args.out) / "learning.json")["runs"], Path(args.out) / "learning.png")
        return
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; choose from {list(TASKS)}")
    seeds = 1 if args.quick else args.seeds
    jobs = [
        (task, seed * SEED_SPACING, TASKS[task]["steps"] // (20 if args.quick else 1))
        for task in tasks
        for seed in range(args.first_seed, args.first_seed + seeds)
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda job: run_worker(*job), jobs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_name()
    summary = summarize(results)
    table = markdown(summary, machine)
    print(table)
    (out / "learning.md").write_text(table)
    save_json(out / "learning.json", dict(machine=machine, summary=summary, runs=results))
    plot(results, out / "learning.png")


if __name__ == "__main__":
    main()
