"""Overlapped collection (`AsyncPPO(..., overlap=True)`) against synchronous rounds, side by
side: whole-loop steps/s on CartPole-v1 and on HalfCheetah-v5 (a step costing far more), both
with their family's defaults (`preset=False`: HalfCheetah on CleanRL's 8 x 256 steps, not its
RL Zoo preset), idle and beside a CPU-heavy process, and CartPole's time to solve.

Every measurement runs in a fresh process, the two modes interleaved, no thread setting (as a
user runs it). Writes benchmarks/results/overlap.json and prints a Markdown table.

    python benchmarks/overlap_speed.py [--repeats 3] [--seeds 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from harness import BUSY_LOOP, REPO, beside_load, machine_line, python_json, save_json, table

RESULTS = REPO / "benchmarks" / "results" / "overlap.json"

CHILD = r"""
import json, time
from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
env_id, overlap, steps, seed, solve = {env_id!r}, {overlap!r}, {steps!r}, {seed!r}, {solve!r}
ppo = ppo_for_env(env_id, seed=seed, preset=False)
runner = AsyncPPO(env_id, ppo, steps=steps, seed=seed, progress_bar=False, overlap=overlap,
                  preset=False)
runner.train_round()  # building the envs and the first round are not charged to either mode
start, first = time.perf_counter(), runner.total_steps
solved_at = None
def stop_when_solved(r, stats):
    global solved_at
    recent = r.episode_returns[-32:]
    if solve and len(recent) == 32 and sum(recent) / 32 >= 475:
        solved_at = (time.perf_counter() - start, r.total_steps)
        return False
runner.callback = stop_when_solved
runner.run()
elapsed = time.perf_counter() - start
runner.close()
print(json.dumps(dict(steps_per_s=(runner.total_steps - first) / elapsed, solved_at=solved_at)))
"""


def measure(env_id: str, overlap: bool, steps: int, seed: int, solve: bool = False) -> dict:
    return python_json(
        ["-c", CHILD.format(env_id=env_id, overlap=overlap, steps=steps, seed=seed, solve=solve)]
    )


def speed_rows(tasks: list[tuple[str, int]], repeats: int, busy: bool) -> list[dict]:
    rows = []
    with beside_load(BUSY_LOOP if busy else None):
        for env_id, steps in tasks:
            runs = {False: [], True: []}
            for repeat in range(repeats):
                for overlap in (False, True):
                    runs[overlap].append(measure(env_id, overlap, steps, seed=repeat)["steps_per_s"])
            sync, over = statistics.median(runs[False]), statistics.median(runs[True])
            rows.append(
                dict(
                    env=env_id,
                    busy=busy,
                    steps=steps,
                    synchronous=runs[False],
                    overlapped=runs[True],
                    ratio=over / sync,
                )
            )
            print(
                f"{env_id} busy={busy}: sync {sync:,.0f}, overlap {over:,.0f} steps/s, "
                f"ratio {over / sync:.2f}",
                flush=True,
            )
    return rows


def solve_rows(seeds: int) -> dict:
    results = {}
    for overlap in (False, True):
        results[overlap] = [
            measure("CartPole-v1", overlap, 300_000, seed, solve=True)["solved_at"] for seed in range(seeds)
        ]

    def median_time(runs):
        times = [r[0] for r in runs if r is not None]
        return statistics.median(times) if len(times) == len(runs) else None

    summary = dict(
        synchronous=results[False],
        overlapped=results[True],
        median_seconds_synchronous=median_time(results[False]),
        median_seconds_overlapped=median_time(results[True]),
    )
    print(
        f"CartPole time to solve (median of {seeds}): sync "
        f"{summary['median_seconds_synchronous']}, overlap {summary['median_seconds_overlapped']}"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    args = parser.parse_args()
    tasks = [
        ("CartPole-v1", 20_000 if args.quick else 100_000),
        ("HalfCheetah-v5", 5_000 if args.quick else 30_000),
    ]
    started = time.time()
    rows = speed_rows(tasks, args.repeats, busy=False) + speed_rows(tasks, args.repeats, busy=True)
    solve = solve_rows(1 if args.quick else args.seeds)
    save_json(RESULTS, dict(machine=machine_line(), rows=rows, solve=solve, seconds=time.time() - started))
    print(
        "\n"
        + "\n".join(
            table(
                ["env", "machine", "synchronous steps/s", "overlapped steps/s", "overlap / sync"],
                [
                    [
                        row["env"],
                        "beside a busy process" if row["busy"] else "idle",
                        f"{statistics.median(row['synchronous']):,.0f}",
                        f"{statistics.median(row['overlapped']):,.0f}",
                        f"{row['ratio']:.2f}x",
                    ]
                    for row in rows
                ],
            )
        )
    )


if __name__ == "__main__":
    main()
