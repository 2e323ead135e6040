"""bench.py's speed section (CartPole-v1, env steps per second): the raw env, our collection
alone and our whole loop for each of OUR_CONFIGS, and the original design's collection.

    python benchmarks/bench_speed.py [--quick] ...      # = python benchmarks/bench.py --only speed
"""

from __future__ import annotations

import json
import math
import time

from bench_trainers import COLORS, describe_runner, make_our_runner, next_round, ok, status
from harness import fmt, ratio, table

# Extra AsyncPPO keyword options timed beside the defaults ('n/a' where AsyncPPO rejects them).
OUR_CONFIGS = {
    "defaults": {},
    "episodes, loop": {"rollout": "episodes", "backend": "loop"},
    "steps, loop": {"rollout": "steps", "num_steps": 32, "backend": "loop"},
    "steps, native": {"rollout": "steps", "num_steps": 32, "backend": "native"},
}
RAW_ENVS = (("loop", 32), ("native", 32), ("native", 1024), ("native", 4096))  # backend, copies


# ---------------------------------------------------------------- measurements (fresh processes)


def measure_raw_env(backend: str, num_envs: int, seconds: float) -> dict:
    """CartPole-v1 with uniform random actions through EnvVectorizer.step_autoreset."""
    import gymnasium as gym
    import numpy as np

    from AsyncTools.vectorizer import EnvVectorizer

    try:
        env = EnvVectorizer(gym.make("CartPole-v1"), num_envs, seed=0, backend=backend)
    except TypeError as error:
        return dict(na=f"EnvVectorizer rejects backend=: {error}")
    rng = np.random.default_rng(0)
    env.reset()
    for _ in range(10):
        env.step_autoreset(rng.integers(0, 2, size=num_envs))
    steps, calls, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        *_, valid = env.step_autoreset(rng.integers(0, 2, size=num_envs))
        steps += int(valid.sum())
        calls += 1
    elapsed = time.perf_counter() - start
    env.close()
    return dict(
        steps=steps, time=elapsed, steps_per_s=steps / elapsed, calls=calls, backend_class=env.backend_name
    )


def measure_our_rollout(options: dict, seconds: float) -> dict:
    """Collection only, untrained policy (CartPole episodes of ~20 steps). Episode mode:
    `collect_episodes` + clearing the buffer. Other modes: a round with `learn` replaced by
    clearing the learner's memory (collection and transfer, no update)."""
    from AsyncTools.rollout import collect_episodes

    runner, na = make_our_runner("CartPole-v1", 0, 10**9, options, {})
    if runner is None:
        return dict(na=na)
    ppo = runner.ppo
    if describe_runner(runner)["rollout"] == "episodes":
        from AsyncTools.vec_memory import VecMemory

        buffer = VecMemory(runner.num_envs)

        def collect() -> int:
            steps = collect_episodes(runner.env, buffer, ppo.sample_actions).steps
            buffer.clear()
            return steps

        how = "collect_episodes + buffer.clear()"
    else:
        ppo.learn = lambda: (ppo.memory.clear(), None)[1]

        def collect() -> int:
            return next_round(runner)[0]

        how = "a round with learn() replaced by memory.clear()"
    collect()  # warm-up
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        steps += collect()
    elapsed = time.perf_counter() - start
    return dict(steps=steps, time=elapsed, steps_per_s=steps / elapsed, how=how, **describe_runner(runner))


def measure_original_rollout(steps: int) -> dict:
    from benchmarks.original_design import run_original_rollout

    return run_original_rollout("CartPole-v1", seed=0, steps=steps)


# ---------------------------------------------------------------- the section


def run(runs, budget: dict, threads: dict) -> dict:
    """results' raw_env, our_speed and original_rollout entries."""
    ours = threads["ours"]["threads"]
    raw_env = [
        dict(
            backend=backend,
            num_envs=num_envs,
            **runs(
                f"raw env {backend} x{num_envs}",
                "bench_speed:measure_raw_env",
                ours,
                backend=backend,
                num_envs=num_envs,
                seconds=budget["raw_seconds"],
            ),
        )
        for backend, num_envs in RAW_ENVS
    ]
    our_speed = {}
    for config, options in OUR_CONFIGS.items():
        rollout = runs(
            f"ours rollout [{config}]",
            "bench_speed:measure_our_rollout",
            ours,
            options=options,
            seconds=budget["rollout_seconds"],
        )
        if "na" in rollout:
            loop = dict(na=rollout["na"])
        else:
            loop = runs(
                f"ours whole loop [{config}]",
                "bench_trainers:train_ours",
                ours,
                env_id="CartPole-v1",
                seed=0,
                steps=budget["loop_steps"],
                options=options,
            )
        our_speed[config] = dict(options=options, rollout=rollout, whole_loop=loop)
    original = runs(
        "original rollout",
        "bench_speed:measure_original_rollout",
        threads["original"]["threads"],
        steps=budget["original_rollout_steps"],
    )
    return dict(raw_env=raw_env, our_speed=our_speed, original_rollout=original)


def ratios(results: dict) -> list[tuple[str, float | None, str]]:
    raw_speed = {(r["backend"], r["num_envs"]): r.get("steps_per_s") for r in results["raw_env"]}
    rows = []
    original_rollout = results["original_rollout"].get("steps_per_s")
    for config, row in results["our_speed"].items():
        rollout = row["rollout"]
        if not ok(rollout):
            rows.append((f"ours rollout [{config}] / raw env", None, status(rollout)))
            continue
        backend = row["options"].get("backend") or (
            "loop" if rollout.get("backend") == "LoopBackend" else "native"
        )
        rows.append(
            (
                f"ours rollout [{config}] / raw env {backend} x32",
                ratio(rollout["steps_per_s"], raw_speed.get((backend, 32))),
                "fraction of the env's own speed kept by our collection (1 = no overhead)",
            )
        )
        rows.append(
            (
                f"ours rollout [{config}] / original rollout",
                ratio(rollout["steps_per_s"], original_rollout),
                "> 1: ours collects faster",
            )
        )
    return rows


def speed_cell(result: dict) -> str:
    if "error" in result:
        return "error"
    if "na" in result:
        return "n/a"
    return fmt(result["steps_per_s"])


def markdown(results: dict) -> list[str]:
    rows = [
        [
            "raw env, random actions",
            f'EnvVectorizer(backend="{r["backend"]}").step_autoreset',
            r["num_envs"],
            speed_cell(r),
            "the ceiling",
        ]
        for r in results["raw_env"]
    ]
    for config, row in results["our_speed"].items():
        rollout, loop = row["rollout"], row["whole_loop"]
        options = json.dumps(row["options"]) if row["options"] else "one-liner defaults"
        where = (
            f"backend {rollout.get('backend', '?')}, rollout {rollout.get('rollout', '?')}"
            if ok(rollout)
            else ""
        )
        rows.append(
            [
                "rollout only (untrained policy)",
                f"ours [{config}]",
                32,
                speed_cell(rollout),
                f"{options}; {where or status(rollout)}",
            ]
        )
        rows.append(
            [
                f"whole loop, {results['budget']['loop_steps']:,} steps",
                f"ours [{config}]",
                32,
                speed_cell(loop),
                f"collection + learning{'' if ok(loop) else '; ' + status(loop)}",
            ]
        )
    rows.append(
        [
            "rollout only (untrained policy)",
            "original design",
            32,
            speed_cell(results["original_rollout"]),
            "per-env lists, push per step",
        ]
    )
    solve = results.get("cartpole_summary")
    if solve:
        for impl, label, envs in (
            ("ours", "ours [defaults]", 32),
            ("sb3", "SB3 PPO, RL Zoo settings", 8),
            ("original", "original design", 32),
        ):
            rows.append(
                [
                    "whole loop, CartPole solve runs (median)",
                    label,
                    envs,
                    fmt(solve[impl].get("steps_per_s")),
                    "steps / wall time while training to solve, after the first round",
                ]
            )
    return ["", "## Speed (CartPole-v1, env steps per second)", ""] + table(
        ["measurement", "implementation", "envs", "steps/s", "notes"], rows
    )


NOTE = (
    "- Rollout-only speeds use the untrained policy, so CartPole episodes are short (~20 steps); "
    "episode-synchronous collection loses speed while the last episodes of a round finish."
)


def plot(results: dict, axis) -> None:
    bars = [
        (f"raw env {r['backend']} x{r['num_envs']}", r.get("steps_per_s"), "tab:gray")
        for r in results["raw_env"]
    ]
    for config, row in results["our_speed"].items():
        bars.append((f"ours rollout [{config}]", row["rollout"].get("steps_per_s"), "lightsteelblue"))
        bars.append((f"ours whole loop [{config}]", row["whole_loop"].get("steps_per_s"), "tab:blue"))
    bars.append(("original rollout", results["original_rollout"].get("steps_per_s"), "palegreen"))
    solve = results.get("cartpole_summary")
    if solve:
        for impl in ("ours", "sb3", "original"):
            bars.append((f"{impl} whole loop (solve runs)", solve[impl].get("steps_per_s"), COLORS[impl]))
    values = [b[1] if b[1] and math.isfinite(b[1]) else 0 for b in bars]
    y = range(len(bars))
    axis.barh(y, values, color=[b[2] for b in bars])
    axis.set_yticks(list(y), [b[0] for b in bars], fontsize=8)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("CartPole-v1 env steps per second (log scale)")
    axis.set_title(
        "Speed: raw env (gray), rollout only (light), whole loop (dark); n/a bars empty", fontsize=10
    )
    for i, v in enumerate(values):
        axis.text(v if v else 1, i, f" {v:,.0f}" if v else " n/a", va="center", fontsize=7)
    if any(values):
        axis.set_xlim(left=min(v for v in values if v) / 3, right=max(values) * 8)


if __name__ == "__main__":
    import sys

    import bench

    bench.main(["--only", "speed", *sys.argv[1:]])
