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
import os
from pathlib import Path

from harness import BUSY_LOOP, REPO, beside_load, machine_line, run_python, save_json

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

# An image learner's update (the Nature CNN, CleanRL's Atari batch: 1024 frames, 4 epochs of
# 256): frames learned per second.
CNN_UPDATE = """
import time, torch
from PPO import PPO
threads = {threads!r}
ppo = PPO(False, 4 * 84 * 84, 6, observation_shape=(4, 84, 84), device="cpu", seed=0, lr=2.5e-4,
          batch_size=1024, mini_batch_size=256, normalize_reward=False, num_threads=threads)
def fill():
    n = 1024
    ppo.memory.add_trajectories(states=torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8),
                   actions=torch.randint(0, 6, (n,)), rewards=torch.randn(n),
                   terminated=torch.arange(n) % 128 == 127, truncated=torch.zeros(n, dtype=torch.bool),
                   final_states=torch.zeros(n // 128, 4, 84, 84, dtype=torch.uint8))
fill(); ppo.learn()
start = time.perf_counter()
for _ in range(3):
    fill(); ppo.learn()
print(torch.get_num_threads(), 3 * 1024 / (time.perf_counter() - start))
"""

LOADS = {
    "idle": None,
    "busy-loop": BUSY_LOOP,
    "torch-matmul": "import torch\na = torch.randn(1024, 1024)\nwhile True: a @ a",
}


def measure(threads: int | None, steps: int, load: str | None, program: str = TRAIN) -> tuple[int, float]:
    """(torch threads the child used, its speed), the child run beside `load`."""
    with beside_load(load):
        used, speed = run_python(["-c", program.format(threads=threads, steps=steps)], timeout=900).split()
    return int(used), float(speed)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/threads_under_load.json"))
    parser.add_argument(
        "--cnn",
        action="store_true",
        help="time an image learner's update (frames/s) instead of CartPole training",
    )
    args = parser.parse_args()
    program = CNN_UPDATE if args.cnn else TRAIN
    settings = (
        {"learner's choice": None, "1 thread": 1}
        if args.cnn
        else {"learner's choice": None, "torch default": os.cpu_count()}
    )
    results: dict[str, dict[str, list[float]]] = {s: {load: [] for load in LOADS} for s in settings}
    used: dict[str, int] = {}
    for _ in range(args.repeats):
        for setting, threads in settings.items():
            for load_name, load in LOADS.items():
                used[setting], speed = measure(threads, args.steps, load, program)
                results[setting][load_name].append(speed)
                print(f"{setting:17s} {load_name:13s} {speed:9.0f} steps/s", flush=True)
    machine = machine_line()
    what = "image learner update, frames/s" if args.cnn else "CartPole-v1 one-liner defaults, steps/s"
    print(f"\n{what} (median of {args.repeats}), {machine}")
    print(f"{'setting':32s}" + "".join(f"{load:>14s}" for load in LOADS) + "   loaded/idle")
    for setting, by_load in results.items():
        medians = {load: sorted(v)[len(v) // 2] for load, v in by_load.items()}
        ratios = " / ".join(f"{medians[load] / medians['idle']:.2f}" for load in LOADS if load != "idle")
        print(
            f"{setting + f' ({used[setting]} threads)':32s}"
            + "".join(f"{m:14.0f}" for m in medians.values())
            + f"   {ratios}"
        )
    out = Path(args.out).with_name(Path(args.out).stem + "_cnn.json") if args.cnn else Path(args.out)
    save_json(
        out,
        {"machine": machine, "steps": args.steps, "what": what, "threads": used, "steps_per_second": results},
    )


if __name__ == "__main__":
    main()
