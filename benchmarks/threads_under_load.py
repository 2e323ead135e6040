"""The one-liner's speed as a user runs it (no thread setting), on an idle machine and beside
another CPU-heavy process, with the learner's own thread choice and with torch's default
thread count (what it ran with before the learner chose).

    python benchmarks/threads_under_load.py [--steps 30000] [--repeats 3] [--out FILE.json]

Each measurement is a fresh process training CartPole-v1 with `ppo_for_env(env)` and
`AsyncPPO(env, ppo)` defaults; steps/s are counted from the end of the first round. Loads:
"busy-loop" is one pure-Python spinning process (one core), "torch-matmul" one process doing
float32 matrix products with torch's default threads (every core, like another training job).
Settings are interleaved, so slow minutes of a noisy machine hit all of them alike.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

TRAIN = """
import time, sys, torch, gymnasium as gym
from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
threads = {threads!r}
env = gym.make("CartPole-v1")
ppo = ppo_for_env(env, num_threads=threads) if threads else ppo_for_env(env)
runner = AsyncPPO(env, ppo, steps={steps}, progress_bar=False)
runner.train_round()
start, steps0 = time.perf_counter(), runner.total_steps
runner.run()
print(torch.get_num_threads(), (runner.total_steps - steps0) / (time.perf_counter() - start))
"""

LOADS = {
    "idle": None,
    "busy-loop": "while True: pass",
    "torch-matmul": "import torch\na = torch.randn(1024, 1024)\nwhile True: a @ a",
}


def measure(threads: int | None, steps: int, load: str | None) -> tuple[int, float]:
    hog = None if load is None else subprocess.Popen([sys.executable, "-c", load])
    try:
        time.sleep(0.5 if hog else 0)
        done = subprocess.run([sys.executable, "-c", TRAIN.format(threads=threads, steps=steps)],
                              cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                              capture_output=True, text=True, check=True, timeout=900)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    used, speed = done.stdout.split()
    return int(used), float(speed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/threads_under_load.json"))
    args = parser.parse_args()
    settings = {"learner's choice": None, "torch default": os.cpu_count()}
    results: dict[str, dict[str, list[float]]] = {s: {l: [] for l in LOADS} for s in settings}
    used: dict[str, int] = {}
    for _ in range(args.repeats):
        for setting, threads in settings.items():
            for load_name, load in LOADS.items():
                used[setting], speed = measure(threads, args.steps, load)
                results[setting][load_name].append(speed)
                print(f"{setting:17s} {load_name:13s} {speed:9.0f} steps/s", flush=True)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\nCartPole-v1 one-liner defaults, steps/s (median of {args.repeats}), {machine}")
    print(f"{'setting':32s}" + "".join(f"{l:>14s}" for l in LOADS) + "   loaded/idle")
    for setting, by_load in results.items():
        medians = {l: sorted(v)[len(v) // 2] for l, v in by_load.items()}
        ratios = " / ".join(f"{medians[l] / medians['idle']:.2f}" for l in LOADS if l != "idle")
        print(f"{setting + f' ({used[setting]} threads)':32s}"
              + "".join(f"{m:14.0f}" for m in medians.values()) + f"   {ratios}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine, "steps": args.steps,
                                          "threads": used, "steps_per_second": results}, indent=1))


if __name__ == "__main__":
    main()
