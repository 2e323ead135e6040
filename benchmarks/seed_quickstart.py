"""The original README's quickstart, verbatim and unseeded: this project against the original.

Goal checked: with the original README's quickstart settings (CartPole-v1, 32 envs, 100k steps,
lr 0.001, clip 0.2, 11 epochs, GAE lambda 0.95, batch 1024, mini-batch 512, gamma 0.995), the
saved policy plays >= 475 in >= 9 of 10 runs, and its median is at or above the original
project's, both measured in one invocation on the same machine.

    python benchmarks/seed_quickstart.py --original /tmp/original              # 10 + 10 runs
    python benchmarks/seed_quickstart.py --original /tmp/original --runs 1 --original-runs 1
    python benchmarks/seed_quickstart.py --report          # reprint the table from results.json

The original is github.com/Raven4567/Parallel-Reinforcement-Learning, exported as a work tree:
    git --git-dir=<bare mirror> archive HEAD | tar -x -C /tmp/original

Each training run is a fresh subprocess executing QUICKSTART below: the original README's first
python block, character for character apart from the save path (a fresh temporary directory
instead of '(insert your path)/...'). No seed, no torch thread setting, no other argument. Both
implementations run the same script; only the working directory and PYTHONPATH differ (the
implementation's root, since both name their packages `PPO` and `AsyncTools`). Runs alternate
ours / original so machine noise falls on both alike. stdout is discarded; stderr (where both
progress bars go: ours keeps `progress_bar` at its default) goes to a log file, whose tail is kept
only for a failed run. `wall_s` is the training subprocess's wall time, interpreter start-up and
imports included; evaluation is not counted.

Evaluation, in a second fresh subprocess with the same PYTHONPATH: 10 deterministic, unseeded
episodes of gym.make('CartPole-v1', max_episode_steps=500); the run's score is their mean.
- ours: PPO.load(dir, device='cpu') and AsyncTools.evaluation.evaluate(..., episodes=10,
  deterministic=True);
- original: it has no deterministic mode, so its own loading code is used (PPO(is_continuous=
  False, observ_dim=4, action_dim=2).load_weights(dir), after checking Policy_weights.pth exists,
  since load_weights silently ignores a missing file) and the action is the argmax of the
  Categorical's probs from `policy_old.get_dist` (its actor ends in a Softmax), in a plain loop.

No shim in the original: its modules pick `cuda if torch.cuda.is_available() else cpu`, so on
this CPU-only machine it runs unmodified on the CPU. It is run with this project's venv (torch,
gymnasium, numpy, tqdm as installed here, recorded in results.json), not its pinned
requirements.txt (torch 2.7.1+cu118, gymnasium 1.1.1).

Torch threads, as a user gets them: our PPO chooses 1 intra-op thread by itself for a vector
policy on the CPU (unless OMP_NUM_THREADS is set or the user called torch.set_num_threads); the
original never sets it, so it runs with torch's default (the number of physical cores). Recorded
per run as `torch_threads`: torch's thread count in the evaluation child once the learner is
built, the same code path as in training. The environment is passed through unchanged apart from
PYTHONPATH; OMP_NUM_THREADS, if set, is recorded.

Results: benchmarks/results/seed_quickstart/results.json (rewritten after every run, so a cut
invocation keeps its finished runs) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO, child_env, cpu_model, load_json, or_error, python_json, save_json, table

OUT_DIR = REPO / "benchmarks" / "results" / "seed_quickstart"
SOLVED = 475.0
EVAL_EPISODES = 10
SAVE_PATH_PLACEHOLDER = "(insert your path)/Parallel-Reinforcement-Learning/PPO/data"

# The original README's first ```python block, verbatim (tabs included). The save path is
# substituted by quickstart_source().
QUICKSTART = """from PPO import PPO
from AsyncTools.AsyncPPO import AsyncPPO

import gymnasium as gym

if __name__ == '__main__':
\tenv = gym.make('CartPole-v1', max_episode_steps=500)

\tppo = PPO(
\t\tis_continuous=False, 
\t\tobserv_dim=env.observation_space.shape[0],
\t\taction_dim=env.action_space.n, 
\t\tlr=0.001, 
\t\t# action_scaling=2.0
\t\tpolicy_clip=0.2, 
\t\tk_epochs=11, 
\t\tGAE_lambda=0.95, 
\t\tbatch_size=1024, 
\t\tmini_batch_size=512, 
\t\tgamma=0.995,
\t\t# use_RND=True, 
\t\t# beta=0.001
\t)

\tasync_ppo = AsyncPPO(
\t\tenv=env,
\t\tppo=ppo,
\t\tnum_envs=32,
\t\tsteps=100000
\t)

\tasync_ppo.run()

\tasync_ppo.ppo.save_weights(path='(insert your path)/Parallel-Reinforcement-Learning/PPO/data')
"""


# ---------------------------------------------------------------- evaluation (child processes)


def eval_ours(weights: str) -> list[float]:
    """Our saved policy: PPO.load + evaluate, deterministic, unseeded."""
    import gymnasium as gym

    from AsyncTools.evaluation import evaluate
    from PPO import PPO

    ppo = PPO.load(weights, device="cpu")
    env = gym.make("CartPole-v1", max_episode_steps=500)
    return evaluate(ppo, env, episodes=EVAL_EPISODES, deterministic=True)


def eval_original(weights: str) -> list[float]:
    """The original's saved policy, loaded with its own code, played greedily (argmax of the
    Categorical's probs of policy_old, as its get_action samples from) in a plain loop."""
    import gymnasium as gym
    import torch

    from PPO import PPO

    if not (Path(weights) / "Policy_weights.pth").is_file():
        raise FileNotFoundError(f"no Policy_weights.pth in {weights}")
    env = gym.make("CartPole-v1", max_episode_steps=500)
    ppo = PPO(is_continuous=False, observ_dim=env.observation_space.shape[0], action_dim=env.action_space.n)
    ppo.load_weights(weights)
    device = next(ppo.policy_old.parameters()).device
    returns = []
    for _ in range(EVAL_EPISODES):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                state = torch.as_tensor(obs, dtype=torch.float32, device=device).unsqueeze(0)
                action = int(ppo.policy_old.get_dist(state).probs.argmax(-1).item())
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


def eval_worker(impl: str, weights: str) -> None:
    """Entry point of the evaluation subprocess: prints one JSON line."""
    import torch

    returns = (eval_ours if impl == "ours" else eval_original)(weights)
    print(json.dumps({"returns": returns, "torch_threads": torch.get_num_threads()}))


# ---------------------------------------------------------------- runs (parent process)


def quickstart_source(save_dir: str) -> str:
    """QUICKSTART with only its save path replaced by `save_dir`."""
    assert QUICKSTART.count(SAVE_PATH_PLACEHOLDER) == 1
    return QUICKSTART.replace(SAVE_PATH_PLACEHOLDER, save_dir)


def train(python: str, root: Path, work: Path, timeout: float) -> tuple[float, int | None, str]:
    """Runs the quickstart in a fresh subprocess; returns (wall seconds, exit code or None on
    timeout, stderr tail when it failed)."""
    weights = work / "weights"
    weights.mkdir()
    script = work / "quickstart.py"
    script.write_text(quickstart_source(str(weights)))
    log = work / "stderr.log"
    start = time.perf_counter()
    with open(log, "wb") as err:
        try:
            rc = subprocess.run(
                [python, str(script)],
                cwd=root,
                env=child_env((root,)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = None
    wall = time.perf_counter() - start
    tail = "" if rc == 0 else log.read_text(errors="replace")[-1500:]
    return wall, rc, tail


def evaluate_run(python: str, impl: str, root: Path, weights: Path) -> dict:
    """Evaluates saved weights in a fresh subprocess (PYTHONPATH the implementation's root
    only); returns its JSON (or an error)."""
    return or_error(
        python_json,
        [str(Path(__file__).resolve()), "--eval-worker", impl, "--weights", str(weights)],
        python=python,
        cwd=root,
        env=child_env((root,)),
        timeout=600,
    )


def one_run(python: str, impl: str, root: Path, timeout: float) -> dict:
    """Trains and evaluates one run of `impl`; returns its record."""
    with tempfile.TemporaryDirectory(prefix=f"quickstart_{impl}_") as tmp:
        work = Path(tmp)
        wall, rc, tail = train(python, root, work, timeout)
        record = {"impl": impl, "wall_s": round(wall, 2), "rc": rc, "eval_mean": None}
        if rc != 0:
            record["error"] = "timeout" if rc is None else tail
            return record
        result = evaluate_run(python, impl, root, work / "weights")
    if "error" in result:
        record["error"] = result["error"]
        return record
    record.update(
        eval_mean=round(statistics.fmean(result["returns"]), 2),
        eval_returns=result["returns"],
        torch_threads=result["torch_threads"],
    )
    return record


def schedule(runs: int, original_runs: int) -> list[str]:
    """ours, original, ours, original, ... then whichever has runs left."""
    order = []
    for i in range(max(runs, original_runs)):
        if i < runs:
            order.append("ours")
        if i < original_runs:
            order.append("original")
    return order


# ---------------------------------------------------------------- reporting


def source_digest(root: Path) -> str:
    """sha256 (first 12 hex digits) of the implementation's PPO/ and AsyncTools/ .py files."""
    digest = hashlib.sha256()
    files = sorted([*(root / "PPO").glob("*.py"), *(root / "AsyncTools").glob("*.py")])
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info(python: str) -> dict:
    """Processor, cores and the child interpreter's package versions."""
    code = (
        "import json,sys,torch,gymnasium,numpy,tqdm;print(json.dumps({'python':sys.version"
        ".split()[0],'torch':torch.__version__,'gymnasium':gymnasium.__version__,"
        "'numpy':numpy.__version__,'tqdm':tqdm.__version__}))"
    )
    versions = python_json(["-c", code], python=python)
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        **versions,
    }


def summary_rows(runs: list[dict]) -> list[dict]:
    """Per implementation: solved count, median, min, mean wall time."""
    rows = []
    for impl in ("ours", "original"):
        mine = [r for r in runs if r["impl"] == impl]
        if not mine:
            continue
        scores = [r["eval_mean"] if r["eval_mean"] is not None else 0.0 for r in mine]
        rows.append(
            {
                "impl": impl,
                "n": len(mine),
                "solved": sum(s >= SOLVED for s in scores),
                "median": statistics.median(scores),
                "min": min(scores),
                "wall_mean_s": statistics.fmean(r["wall_s"] for r in mine),
                "failed": sum(r["eval_mean"] is None for r in mine),
            }
        )
    return rows


def markdown(results: dict) -> str:
    """The summary table, the per-run scores and the machine line."""
    rows = [
        [
            row["impl"],
            f"{row['solved']}/{row['n']}" + (f" ({row['failed']} failed, scored 0)" if row["failed"] else ""),
            f"{row['median']:.1f}",
            f"{row['min']:.1f}",
            f"{row['wall_mean_s']:.1f}",
        ]
        for row in summary_rows(results["runs"])
    ]
    lines = table(["implementation", f"eval >= {SOLVED:g}", "median", "min", "mean wall s / run"], rows)
    for impl in ("ours", "original"):
        scores = [
            f"{r['eval_mean']:.1f}" if r["eval_mean"] is not None else "fail"
            for r in results["runs"]
            if r["impl"] == impl
        ]
        walls = [f"{r['wall_s']:.0f}" for r in results["runs"] if r["impl"] == impl]
        if scores:
            lines.append(f"\n{impl}: eval {', '.join(scores)}; wall s {', '.join(walls)}")
    m = results["machine"]
    lines.append(
        f"\nMachine: {m['processor']} ({m.get('cpu_model')}), {m['cores']} cores, "
        f"torch {m['torch']}, gymnasium {m['gymnasium']}, numpy {m['numpy']}, "
        f"python {m['python']}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--original", type=Path, help="work tree of the original project")
    parser.add_argument("--runs", type=int, default=10, help="runs of ours (default 10)")
    parser.add_argument("--original-runs", type=int, default=10, help="runs of the original (default 10)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per training run")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the runs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="results folder")
    parser.add_argument("--report", action="store_true", help="reprint the table from results.json")
    parser.add_argument("--eval-worker", choices=("ours", "original"), help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.eval_worker:
        eval_worker(args.eval_worker, args.weights)
        return
    if args.report:
        print(markdown(load_json(args.out / "results.json")))
        return
    if args.original_runs and not (args.original and (args.original / "PPO" / "PPO.py").is_file()):
        sys.exit("--original DIR (a work tree of the original project) is required")
    roots = {"ours": REPO, "original": args.original.resolve() if args.original else None}
    results = {
        "settings": {
            "runs": args.runs,
            "original_runs": args.original_runs,
            "timeout_s": args.timeout,
            "eval_episodes": EVAL_EPISODES,
            "quickstart": QUICKSTART,
        },
        "sources": {k: {"root": str(v), "digest": source_digest(v)} for k, v in roots.items() if v},
        "machine": machine_info(args.python),
        "runs": [],
    }
    started = time.perf_counter()
    for i, impl in enumerate(schedule(args.runs, args.original_runs)):
        record = one_run(args.python, impl, roots[impl], args.timeout)
        results["runs"].append(record)
        results["total_wall_s"] = round(time.perf_counter() - started, 1)
        save_json(args.out / "results.json", results)
        print(
            f"[{i + 1}] {impl}: eval {record['eval_mean']}  wall {record['wall_s']:.1f}s"
            + (f"  ERROR {record['error'][-300:]}" if "error" in record else ""),
            flush=True,
        )
    print()
    print(markdown(results))


if __name__ == "__main__":
    main()
