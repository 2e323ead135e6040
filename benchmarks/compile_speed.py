"""`PPO(compile_update=True)` against the plain update, side by side: the seconds spent
compiling (cold: an empty compile cache per run), and whole-loop steps/s after it, for
CartPole-v1 and HalfCheetah-v5 with the family defaults (`preset=False`: HalfCheetah on
CleanRL's 8 x 256 steps, not its RL Zoo preset). Each run in a fresh process, the two
interleaved, no thread setting.
Writes benchmarks/results/compile_update.json and prints a Markdown table.

    python benchmarks/compile_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from harness import REPO, child_env, machine_line, python_json, save_json, table

RESULTS = REPO / "benchmarks" / "results" / "compile_update.json"

CHILD = r"""
import json, time
from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
ppo = ppo_for_env({env_id!r}, seed={seed!r}, compile_update={compiled!r}, preset=False)
runner = AsyncPPO({env_id!r}, ppo, steps=10**12, seed={seed!r}, progress_bar=False, preset=False)
started = time.perf_counter()
for _ in range(3):  # the first update compiles; a later one may compile again for a new shape
    runner.train_round()
warm_up = time.perf_counter() - started
first, started = runner.total_steps, time.perf_counter()
for _ in range({rounds!r}):
    runner.train_round()
elapsed = time.perf_counter() - started
runner.close()
print(json.dumps(dict(warm_up_seconds=warm_up, steps_per_s=(runner.total_steps - first) / elapsed)))
"""

TASKS = {"CartPole-v1": 60, "HalfCheetah-v5": 10}  # timed rounds after the warm-up


def measure(env_id: str, compiled: bool, seed: int) -> dict:
    code = CHILD.format(env_id=env_id, compiled=compiled, seed=seed, rounds=TASKS[env_id])
    with tempfile.TemporaryDirectory() as cache:  # a cold compile, as a user's first run
        return python_json(["-c", code], env=child_env(TORCHINDUCTOR_CACHE_DIR=cache))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for env_id in TASKS:
        runs = {False: [], True: []}
        for seed in range(args.repeats):
            for compiled in (False, True):
                runs[compiled].append(measure(env_id, compiled, seed))
        plain = statistics.median(r["steps_per_s"] for r in runs[False])
        compiled = statistics.median(r["steps_per_s"] for r in runs[True])
        warm_up = [statistics.median(r["warm_up_seconds"] for r in runs[c]) for c in (False, True)]
        rows.append(
            dict(
                env=env_id,
                plain=runs[False],
                compiled=runs[True],
                ratio=compiled / plain,
                compile_seconds=warm_up[1] - warm_up[0],
            )
        )
        print(
            f"{env_id}: plain {plain:,.0f}, compiled {compiled:,.0f} steps/s "
            f"({compiled / plain:.2f}x), compiling cost {warm_up[1] - warm_up[0]:.1f} s",
            flush=True,
        )
    save_json(RESULTS, dict(machine=machine_line(), rows=rows))
    print(
        "\n"
        + "\n".join(
            table(
                [
                    "env",
                    "plain update, steps/s",
                    "compiled update, steps/s",
                    "compiled / plain",
                    "compiling costs",
                ],
                [
                    [
                        row["env"],
                        f"{statistics.median(r['steps_per_s'] for r in row['plain']):,.0f}",
                        f"{statistics.median(r['steps_per_s'] for r in row['compiled']):,.0f}",
                        f"{row['ratio']:.2f}x",
                        f"{row['compile_seconds']:.0f} s",
                    ]
                    for row in rows
                ],
            )
        )
    )


if __name__ == "__main__":
    main()
