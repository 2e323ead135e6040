"""Speed and learning benchmark: raw env speed, our rollout and whole-loop speed, CartPole-v1
time-to-solve, and a continuous env at a fixed budget (HalfCheetah-v5, a heavier MuJoCo step;
Pendulum-v1 where `mujoco` is not importable), against Stable-Baselines3 (RL Zoo's tuned
settings) and a model of the original project's design (benchmarks/original_design.py).

    python benchmarks/bench.py --quick                 # < 3 minutes: 2 seeds (1 for HalfCheetah), small
                                                       # budgets
    python benchmarks/bench.py [--seeds 5] [--out benchmarks/results] [--threads auto|1|2]
    python benchmarks/bench.py --only continuous       # one section: all, speed, cartpole, continuous

Seeds: 5 (--quick 2) for CartPole and Pendulum-v1, 3 (--quick 1) for HalfCheetah-v5;
--seeds N sets them all.

Every measurement runs in its own fresh subprocess (harness.Runs), one after the other, never in
parallel. Results: a markdown table on stdout and OUT/results.md, OUT/results.json, OUT/bench.png.
The sections are bench_speed.py, bench_cartpole.py and bench_continuous.py (each also runnable
alone: `python benchmarks/bench_speed.py --quick` = `--only speed`); this file drives them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import bench_cartpole
import bench_continuous
import bench_speed
from bench_trainers import status
from harness import (
    REPO,
    Runs,
    cpu_model,
    fmt,
    git_commit,
    gpu_name,
    load_json,
    package_versions,
    pyplot,
    save_json,
    table,
)

SECTIONS = ("speed", "cartpole", "continuous")
UNTIMED = ("machine_info", "probe_env")  # no timing to spoil when the machine is busy
FULL = dict(
    seeds=5,
    raw_seconds=3.0,
    rollout_seconds=5.0,
    loop_steps=100_000,
    original_rollout_steps=100_000,
    solve_cap=300_000,
    pendulum_steps=100_000,
    thread_probe_steps=30_000,
    halfcheetah_steps=200_000,
    halfcheetah_seeds=3,
    timeout=1800,
)
QUICK = dict(
    seeds=2,
    raw_seconds=0.7,
    rollout_seconds=1.0,
    loop_steps=20_000,
    original_rollout_steps=20_000,
    solve_cap=150_000,
    pendulum_steps=30_000,
    thread_probe_steps=10_000,
    halfcheetah_steps=20_000,
    halfcheetah_seeds=1,
    timeout=300,
)


def machine_info() -> dict:
    """The machine and the versions measured with (called in a fresh process, like the rest)."""
    import torch

    versions = package_versions("gymnasium", "numpy", "stable_baselines3", "mujoco")
    return dict(
        processor=f"{cpu_model()} ({platform.machine()})",
        cpu_count=os.cpu_count(),
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        **versions,
        gpu=gpu_name(),
        commit=git_commit(),
    )


def pick_threads(
    runs: Runs, budget: dict, mode: str, impls: tuple[str, ...] = ("ours", "sb3", "original")
) -> dict:
    """Torch intra-op threads per implementation: fixed, or (auto) the faster of 1 and 2 on a
    short CartPole training run (2 only if at least 10% faster: two threads on two
    cores collapse when anything else runs on the machine)."""
    if mode != "auto":
        return {impl: dict(threads=int(mode), how="fixed") for impl in impls}
    steps = budget["thread_probe_steps"]
    choice = {}
    for impl in impls:
        kwargs = dict(env_id="CartPole-v1") if impl == "ours" else dict(stop_return=None)
        speed = {
            threads: runs(
                f"threads probe {impl} x{threads}",
                bench_cartpole.TRAINERS[impl],
                threads,
                seed=0,
                steps=steps,
                **kwargs,
            ).get("steps_per_s", 0.0)
            for threads in (1, 2)
        }
        best = 2 if speed[2] > 1.10 * speed[1] else 1
        choice[impl] = dict(threads=best, how="probe", steps_per_s={str(k): v for k, v in speed.items()})
    return choice


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small budgets and fewer seeds (< 3 minutes)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per learning run (default 5, --quick 2; HalfCheetah 3, --quick 1)",
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output directory")
    parser.add_argument(
        "--threads",
        choices=("auto", "1", "2"),
        default=None,
        help="torch threads per implementation: auto = the faster of 1/2, probed (default auto; --quick: 1)",
    )
    parser.add_argument(
        "--only",
        choices=("all",) + SECTIONS,
        default="all",
        help="run one section: speed (raw env, rollout, whole loop), cartpole "
        "(time-to-solve), continuous (HalfCheetah-v5, or Pendulum-v1 without mujoco)",
    )
    parser.add_argument(
        "--continuous-env",
        choices=("auto", "halfcheetah", "pendulum"),
        default="auto",
        help="the continuous section's env: auto = HalfCheetah-v5 where it can be built, else Pendulum-v1",
    )
    parser.add_argument(
        "--replot",
        action="store_true",
        help="measure nothing: recompute the summaries, ratios, table and plot "
        "from OUT/results.json (after a change to how they are computed)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if args.replot:
        write_results(summarize(load_json(out / "results.json")), out)
        return
    budget = dict(QUICK if args.quick else FULL)
    seeds = list(range(args.seeds if args.seeds is not None else budget["seeds"]))
    sections = SECTIONS if args.only == "all" else (args.only,)
    impls = ("ours", "sb3") if sections == ("continuous",) else ("ours", "sb3", "original")
    runs = Runs(budget["timeout"], describe=status)
    start = time.perf_counter()

    print("benchmark: measuring, one subprocess at a time...", file=sys.stderr, flush=True)
    results = dict(
        quick=args.quick,
        only=args.only,
        seeds=seeds,
        budget=budget,
        date=time.strftime("%Y-%m-%d %H:%M"),
        machine=runs("machine info", "bench:machine_info"),
    )
    thread_mode = args.threads or ("1" if args.quick else "auto")
    threads = results["threads"] = pick_threads(runs, budget, thread_mode, impls)
    if "speed" in sections:
        results.update(bench_speed.run(runs, budget, threads))
    if "cartpole" in sections:
        results["cartpole"] = bench_cartpole.run(runs, budget, threads, seeds)
    if "continuous" in sections:
        choice = bench_continuous.env_choice(runs, args.continuous_env)
        results["continuous"] = bench_continuous.run(runs, budget, threads, seeds, args.seeds, choice)
    results["total_wall_s"] = time.perf_counter() - start
    results["log"] = runs.log
    write_results(summarize(results), out)


def summarize(results: dict) -> dict:
    """Adds the per-implementation summaries and the ratios (of the sections that ran)."""
    ratios = []
    if "cartpole" in results:
        results["cartpole_summary"] = {
            impl: bench_cartpole.summarize(runs) for impl, runs in results["cartpole"].items()
        }
        ratios += bench_cartpole.ratios(results["cartpole_summary"])
    if "our_speed" in results:
        ratios += bench_speed.ratios(results)
    if "continuous" in results:
        cont = results["continuous"]
        cont["summary"] = {impl: bench_continuous.summarize(runs) for impl, runs in cont["runs"].items()}
        ratios += bench_continuous.ratios(cont)
    results["ratios"] = ratios
    return results


def markdown(results: dict) -> str:
    m, only = results["machine"], results.get("only", "all")
    thread_text = ", ".join(f"{impl} {c['threads']} ({probed(c)})" for impl, c in results["threads"].items())
    lines = [
        f"# Benchmark results{' (--quick)' if results['quick'] else ''}"
        + ("" if only == "all" else f" (--only {only})"),
        "",
        f"Machine: {m.get('processor')}, {m.get('cpu_count')} logical CPUs, {m.get('gpu')}; "
        f"Python {m.get('python')}, torch {m.get('torch')}, gymnasium {m.get('gymnasium')}, "
        f"numpy {m.get('numpy')}, stable-baselines3 {m.get('stable_baselines3')}, "
        f"mujoco {m.get('mujoco', '?')}; repo {m.get('commit')}; {results['date']}.",
        f"Torch intra-op threads per implementation: {thread_text}. Every measurement ran in its "
        "own fresh subprocess, one after the other; all learners on CPU.",
    ]
    if "our_speed" in results:
        lines += bench_speed.markdown(results)
    if "cartpole_summary" in results:
        lines += bench_cartpole.markdown(results)
    if "continuous" in results:
        lines += bench_continuous.markdown(results["continuous"])
    ratios = [[name, fmt(value, 2), reading] for name, value, reading in results["ratios"]]
    lines += ["", "## Ratios", ""] + table(["ratio", "value", "reading"], ratios)
    return "\n".join(lines + ["", "## Notes", ""] + notes(results)) + "\n"


def probed(choice: dict) -> str:
    """How an implementation's thread count was chosen: "fixed", or each probe's speed."""
    if choice["how"] != "probe":
        return "fixed"
    return "probed: " + ", ".join(f"{k} thread(s) {fmt(v)} steps/s" for k, v in choice["steps_per_s"].items())


def notes(results: dict) -> list[str]:
    lines = []
    if "cartpole_summary" in results:
        lines.append(bench_cartpole.NOTE)
    if "our_speed" in results:
        lines.append(bench_speed.NOTE)
    if "original_rollout" in results or "cartpole_summary" in results:
        lines.append(
            "- The original design is a model written from a description of the original project "
            "(benchmarks/original_design.py), not the original code."
        )
    if "continuous" in results:
        lines += bench_continuous.notes(results["continuous"])
    lines.append(f"- Total benchmark wall-clock: {results['total_wall_s']:.0f} s.")
    busy = [
        e for e in results["log"] if (e["other_cpu_cores"] or 0) >= 0.3 and e["measurement"] not in UNTIMED
    ]
    if busy:
        lines.append(
            "- Other processes used >= 0.3 CPU cores during: "
            + "; ".join(f"{e['label']} ({e['other_cpu_cores']})" for e in busy)
            + " -- those timings may be low."
        )
    return lines


def plot(results: dict, path: Path) -> None:
    """One panel per section that ran, side by side."""
    plt = pyplot()
    if plt is None:
        return
    panels = [
        (module.plot, width)
        for module, key, width in (
            (bench_speed, "our_speed", 1.1),
            (bench_cartpole, "cartpole", 1.0),
            (bench_continuous, "continuous", 1.0),
        )
        if key in results
    ]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(7.5 * len(panels), 6.5),
        squeeze=False,
        gridspec_kw=dict(width_ratios=[width for _, width in panels]),
    )
    for (draw, _), axis in zip(panels, axes[0], strict=True):
        draw(results, axis)
    m = results["machine"]
    fig.suptitle(
        f"{m.get('processor')}, {m.get('cpu_count')} CPUs, {m.get('gpu')}, torch {m.get('torch')}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(results: dict, out: Path) -> None:
    text = markdown(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text)
    save_json(out / "results.json", results)
    plot(results, out / "bench.png")
    print(text)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'bench.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
