"""bench.py's CartPole-v1 time-to-solve section: ours (one-liner defaults), Stable-Baselines3 with
RL Zoo's tuned settings and the original design (benchmarks/original_design.py), each seed
trained until the mean of the last 32 episodes reaches 475, or the step cap.

    python benchmarks/bench_cartpole.py [--quick] ...   # = python benchmarks/bench.py --only cartpole
"""

from __future__ import annotations

import functools
import time

from bench_trainers import (
    COLORS,
    SOLVE_RETURN,
    SOLVE_WINDOW,
    linear,
    loop_rate,
    ok,
    sb3_recorder,
    sb3_result,
    status,
)
from harness import fmt, median, ratio, table

ZOO_CARTPOLE_STEPS = 100_000  # RL Zoo's n_timesteps for CartPole-v1: the horizon of its schedules
TRAINERS = {
    "ours": "bench_trainers:train_ours",
    "sb3": "bench_cartpole:train_sb3_cartpole",
    "original": "bench_cartpole:train_original",
}
fmt_time = functools.partial(fmt, infinite="not solved")  # an unsolved run's time is inf


# ---------------------------------------------------------------- measurements (fresh processes)


def train_sb3_cartpole(seed: int, steps: int, stop_return: float | None = SOLVE_RETURN) -> dict:
    """SB3 PPO with RL Zoo's tuned CartPole-v1 settings. Its linear schedules run over the
    Zoo's 1e5 steps and reach 0 there, so it runs at most min(steps, 1e5) steps."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=256,
        n_epochs=20,
        gae_lambda=0.8,
        gamma=0.98,
        learning_rate=linear(1e-3),
        clip_range=linear(0.2),
        ent_coef=0.0,
        device="cpu",
        seed=seed,
        verbose=0,
    )
    recorder = sb3_recorder(start, SOLVE_WINDOW, stop_return)
    planned = min(steps, ZOO_CARTPOLE_STEPS)
    model.learn(total_timesteps=planned, callback=recorder)
    return sb3_result(model, recorder, start, planned)


def train_original(seed: int, steps: int, stop_return: float | None = SOLVE_RETURN) -> dict:
    from benchmarks.original_design import run_original

    return run_original("CartPole-v1", seed=seed, steps=steps, stop_return=stop_return, window=SOLVE_WINDOW)


# ---------------------------------------------------------------- the section


def run(runs, budget: dict, threads: dict, seeds: list[int]) -> dict:
    """results' cartpole entry: each implementation's runs, seed by seed."""
    cap = budget["solve_cap"]
    by_impl = {impl: [] for impl in TRAINERS}
    for seed in seeds:
        for impl, label in (("ours", "ours"), ("sb3", "SB3"), ("original", "original")):
            extra = dict(env_id="CartPole-v1", stop_return=SOLVE_RETURN) if impl == "ours" else {}
            by_impl[impl].append(
                runs(
                    f"CartPole {label} seed {seed}",
                    TRAINERS[impl],
                    threads[impl]["threads"],
                    seed=seed,
                    steps=cap,
                    **extra,
                )
            )
    return by_impl


def summarize(runs: list[dict]) -> dict:
    """Solved count, median time and steps to solve (inf where a run did not), loop speed."""
    good = [r for r in runs if ok(r)]
    if not good:
        return dict(status=status(runs[0]) if runs else "no runs")
    inf = float("inf")
    times = [r["time"] if r["solved"] else inf for r in good]
    steps = [r["steps"] if r["solved"] else inf for r in good]
    return dict(
        solved=sum(bool(r["solved"]) for r in good),
        runs=len(good),
        median_time=median(times),
        median_steps=median(steps),
        times=[round(t, 1) for t in times],
        steps_per_s=median(loop_rate(r["records"]) for r in good),
        steps_per_s_with_setup=median(r["steps_per_s"] for r in good),
    )


def ratios(solve: dict) -> list[tuple[str, float | None, str]]:
    ours = solve["ours"]
    return [
        (
            "time-to-solve CartPole, ours / SB3",
            ratio(ours.get("median_time"), solve["sb3"].get("median_time")),
            "< 1: ours solves sooner (median wall-clock)",
        ),
        (
            "time-to-solve CartPole, ours / original",
            ratio(ours.get("median_time"), solve["original"].get("median_time")),
            "< 1: ours solves sooner",
        ),
        (
            "whole-loop steps/s, ours / SB3",
            ratio(ours.get("steps_per_s"), solve["sb3"].get("steps_per_s")),
            "> 1: ours faster (CartPole solve runs, medians)",
        ),
        (
            "whole-loop steps/s, ours / original",
            ratio(ours.get("steps_per_s"), solve["original"].get("steps_per_s")),
            "> 1: ours faster (CartPole solve runs, medians)",
        ),
    ]


def markdown(results: dict) -> list[str]:
    solve = results["cartpole_summary"]
    ours_run = next((r for r in results["cartpole"]["ours"] if ok(r)), {})
    ours_how = f"backend {ours_run.get('backend', '?')}, rollout {ours_run.get('rollout', '?')}"
    rows = []
    for impl, label in (
        ("ours", f"ours: ppo_for_env + AsyncPPO defaults, 32 envs ({ours_how})"),
        ("sb3", f"SB3 PPO, RL Zoo tuned (8 envs, schedules over {ZOO_CARTPOLE_STEPS:,} steps)"),
        ("original", "original design, README settings (32 envs)"),
    ):
        s = solve[impl]
        if "status" in s:
            rows.append([label, s["status"], "", "", "", ""])
            continue
        rows.append(
            [
                label,
                f"{s['solved']}/{s['runs']}",
                fmt_time(s["median_time"], 1, " s"),
                fmt_time(s["median_steps"]),
                ", ".join(fmt_time(t, 1) for t in s["times"]),
                fmt(s["steps_per_s"]),
            ]
        )
    return [
        "",
        f"## CartPole-v1 time-to-solve (mean of the last {SOLVE_WINDOW} episodes >= "
        f"{SOLVE_RETURN:g}; cap {results['budget']['solve_cap']:,} steps; "
        f"{len(results['seeds'])} seeds, median)",
        "",
    ] + table(
        [
            "implementation",
            "solved",
            "median time to solve",
            "median steps to solve",
            "per-seed time (s)",
            "whole-loop steps/s",
        ],
        rows,
    )


NOTE = (
    "- Time-to-solve counts from building the envs and model (imports, and torch's one-time "
    "lazy import of torch._dynamo on the first optimizer, excluded) to the end "
    "of the round (ours, original: collection + learn) or rollout (SB3: before its update) "
    "where the mean first reaches the threshold."
)


def plot(results: dict, axis) -> None:
    names = {"ours": "ours", "sb3": "SB3 (RL Zoo)", "original": "original design"}
    for impl, runs in results["cartpole"].items():
        for seed, run_ in zip(results["seeds"], runs, strict=False):
            if not ok(run_):
                continue
            times = [0.0] + [r["time"] for r in run_["records"]]
            means = [float("nan")] + [r["mean_return"] for r in run_["records"]]
            axis.plot(
                times,
                means,
                color=COLORS[impl],
                alpha=0.8,
                label=f"{names[impl]}" if seed == results["seeds"][0] else None,
            )
    axis.axhline(SOLVE_RETURN, color="black", linestyle="--", linewidth=0.8)
    axis.set_xlabel("wall-clock (s)")
    axis.set_ylabel(f"mean return of the last {SOLVE_WINDOW} episodes")
    axis.set_title("CartPole-v1 learning curves (one line per seed)")
    axis.legend(loc="lower right")


if __name__ == "__main__":
    import sys

    import bench

    bench.main(["--only", "cartpole", *sys.argv[1:]])
