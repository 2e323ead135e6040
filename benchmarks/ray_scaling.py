"""Ray backend benchmark: whole-loop steps/s (collection + learning) on an env whose step costs
about 1 ms of CPU, for the local backends and for 1, 2, 4 and 8 Ray workers, in one run.

    python benchmarks/ray_scaling.py [--workers 1,2,4,8] [--num-envs 16] [--rounds 4]

Each configuration trains `rounds` timed rounds of `num_envs` x `num_steps` steps after one
untimed warm-up round (which includes starting the workers). Results: a table on stdout and
benchmarks/results/ray/ray_scaling.md, .json and .png.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

from harness import HERE, REPO, machine_line, pyplot, save_json, table

sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from slow_env import make_slow_cartpole  # noqa: E402

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env  # noqa: E402


def measure(backend: str, workers: int | None, args: argparse.Namespace) -> dict:
    make = functools.partial(make_slow_cartpole, args.step_seconds)
    ppo = ppo_for_env(make(), seed=0, device="cpu", batch_size=args.num_envs * args.num_steps // 2)
    extra = dict(ray_workers=workers) if backend == "ray" else {}
    start = time.perf_counter()
    runner = AsyncPPO(
        make,
        ppo,
        num_envs=args.num_envs,
        num_steps=args.num_steps,
        steps=10**9,
        backend=backend,
        progress_bar=False,
        **extra,
    )
    runner.train_round()
    startup = time.perf_counter() - start
    steps_before, start = runner.total_steps, time.perf_counter()
    for _ in range(args.rounds):
        runner.train_round()
    seconds = time.perf_counter() - start
    runner.close()
    label = backend if backend != "ray" else f"ray, {workers} worker{'s' * (workers > 1)}"
    result = dict(
        config=label,
        backend=backend,
        workers=workers,
        startup_seconds=round(startup, 1),
        steps_per_second=round((runner.total_steps - steps_before) / seconds),
    )
    print(f"  {label}: {result['steps_per_second']} steps/s (start-up {startup:.1f} s)", flush=True)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--step-seconds", type=float, default=1e-3)
    parser.add_argument("--out", default=str(HERE / "results" / "ray"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    import ray

    from AsyncTools.ray_backend import init_local_ray

    init_local_ray()  # one local Ray for every configuration, all cores
    results = [measure("loop", None, args), measure("subprocess", None, args)]
    results += [measure("ray", int(w), args) for w in args.workers.split(",")]
    ray.shutdown()
    machine = f"{machine_line()}, no GPU, torch {torch.__version__}"
    baseline = results[0]["steps_per_second"]
    lines = [
        f"Machine: {machine}; {args.num_envs} envs x {args.num_steps} steps a round, "
        f"env step {args.step_seconds * 1e3:.1f} ms of CPU",
        "",
    ] + table(
        ["backend", "whole-loop steps/s", "vs loop", "start-up"],
        [
            [
                r["config"],
                f"{r['steps_per_second']:,}",
                f"{r['steps_per_second'] / baseline:.2f}x",
                f"{r['startup_seconds']} s",
            ]
            for r in results
        ],
    )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    save_json(out / "ray_scaling.json", dict(machine=machine, results=results))
    (out / "ray_scaling.md").write_text(text)
    plot([r for r in results if r["backend"] == "ray"], results[:2], out / "ray_scaling.png")


def plot(ray_results: list[dict], local: list[dict], file: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    figure, axis = plt.subplots(figsize=(5, 3.5))
    axis.plot(
        [r["workers"] for r in ray_results], [r["steps_per_second"] for r in ray_results], "o-", label="ray"
    )
    for r, style in zip(local, ("--", ":"), strict=False):
        axis.axhline(r["steps_per_second"], linestyle=style, color="gray", label=r["config"])
    axis.set_xlabel("Ray workers")
    axis.set_ylabel("whole-loop steps/s")
    axis.set_xscale("log", base=2)
    axis.legend()
    figure.tight_layout()
    figure.savefig(file, dpi=100)


if __name__ == "__main__":
    main()
