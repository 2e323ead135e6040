"""The one-shot GPU check: run it once on a CUDA machine (within 8 minutes), or on a CPU with
`--device cpu --quick` (under a minute; CI runs it so, so that it works the first time it meets
a GPU).

    python benchmarks/gpu_check.py                          # CUDA: correctness, then speed
    python benchmarks/gpu_check.py --device cpu --quick     # the same steps, tiny sizes
    python benchmarks/gpu_check.py --out results/gpu        # where gpu_check.json goes

Correctness first (any failure stops the check with exit status 1):
- one PPO update on the device equals the same update on the CPU (same seeds, same batch);
- weights saved from the device load on the CPU and act the same; an exported policy too;
- a short CartPole run on the device learns (mean return of the last episodes).
Then speed, each as whole-loop env steps per second (collection and learning):
- CartPole-v1 with gymnasium's native vector env at 4096 copies (1024 with --quick), with
  synchronous rounds and with overlap=True (collection in a collector process while the GPU
  learns): the on/off ratio;
- one Atari game through EnvPool (Pong-v5, 64 copies; skipped without envpool).
- CartPole again with `compile_update=True`, then with `compile_mode="reduce-overhead"` (the
  compiled update replayed as CUDA graphs), not with --quick (compiling takes tens of seconds):
  each one's ratio to the plain update, counted after the warm-up round that compiles it.
Each speed row is printed and gpu_check.json rewritten as soon as it is measured, so a crash
leaves the rows before it.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import save_json  # noqa: E402

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env  # noqa: E402
from PPO import PPO  # noqa: E402


class CheckFailed(AssertionError):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


def filled_learner(device: str, seed: int = 0) -> PPO:
    ppo = PPO(
        True,
        6,
        2,
        device=device,
        seed=seed,
        batch_size=512,
        mini_batch_size=128,
        k_epochs=2,
        normalize_obs=True,
        normalize_reward=True,
        action_low=[-2, -1],
        action_high=[2, 1],
    )
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(512, 6)).astype(np.float32)
    ends = np.zeros(512, bool)
    ends[127::128] = True
    truncated = ends.copy()
    truncated[255] = False  # one termination among the ends
    ppo.memory.add_trajectories(
        states,
        rng.normal(size=(512, 2)).astype(np.float32),
        rng.normal(size=512).astype(np.float32),
        ends & ~truncated,
        truncated,
        states[ends],
    )
    return ppo


def check_update_matches_cpu(device: str) -> dict:
    """One learn() on `device` against the same on the CPU: weights equal to float tolerance."""
    cpu, other = filled_learner("cpu"), filled_learner(device)
    cpu.learn(), other.learn()
    worst = max(
        float((a.detach().cpu() - b.detach()).abs().max())
        for a, b in zip(other.policy.state_dict().values(), cpu.policy.state_dict().values(), strict=True)
    )
    check(worst < 1e-4, f"the update on {device} differs from the CPU's by {worst:.2e}")
    return {"max_weight_difference": worst}


def check_save_load_export(device: str) -> dict:
    ppo = filled_learner(device)
    ppo.learn()
    states = np.random.default_rng(1).normal(size=(16, 6)).astype(np.float32)
    expected = ppo.get_action(states, deterministic=True)
    with tempfile.TemporaryDirectory() as folder:
        ppo.save_weights(folder)
        loaded = PPO.load(folder, device="cpu")
        np.testing.assert_allclose(
            loaded.get_action(states, deterministic=True), expected, rtol=1e-4, atol=1e-5
        )
        exported = torch.export.load(ppo.export(Path(folder) / "policy.pt2")).module()
        np.testing.assert_allclose(exported(torch.from_numpy(states)).numpy(), expected, rtol=1e-4, atol=1e-5)
    return {"save_load_export": "ok"}


def check_learns(device: str, steps: int) -> dict:
    ppo = ppo_for_env("CartPole-v1", seed=0, device=device)
    runner = AsyncPPO("CartPole-v1", ppo, steps=steps, progress_bar=False)
    start = time.perf_counter()
    try:
        runner.run()
    finally:
        runner.close()
    mean = float(np.mean(runner.episode_returns[-32:]))
    threshold = 100 if steps < 50_000 else 300  # random play: about 22; seed 0 on a CPU: 212 at 40k
    check(mean > threshold, f"CartPole on {device}: mean return {mean:.0f} after {steps} steps")
    return {"steps": steps, "mean_return": mean, "seconds": time.perf_counter() - start}


def loop_speed(
    env_id: str,
    device: str,
    num_envs: int,
    num_steps: int,
    rounds: int,
    backend: str,
    overlap: bool = False,
    compile_mode: str | None = None,
) -> dict:
    """Whole-loop steps/s; `compile_mode` None: the plain update, else compiled in that mode."""
    compiled = dict(compile_update=True, compile_mode=compile_mode) if compile_mode else {}
    # half a round: the native vector env's autoreset rows are not learned from, so a whole
    # round's batch would make the learner wait every other round
    ppo = ppo_for_env(
        env_id,
        seed=0,
        device=device,
        batch_size=num_envs * num_steps // 2,
        mini_batch_size=num_envs * num_steps // 4,
        **compiled,
    )
    runner = AsyncPPO(
        env_id,
        ppo,
        num_envs=num_envs,
        num_steps=num_steps,
        steps=10**12,
        backend=backend,
        progress_bar=False,
        overlap=overlap,
    )
    try:
        while ppo.samples_learned == 0:  # warm-up: first CUDA kernels, allocations, compiling
            runner.train_round()
        if device == "cuda":
            torch.cuda.synchronize()
        steps, start = runner.total_steps, time.perf_counter()
        for _ in range(rounds):
            runner.train_round()
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        where = "collector process" if overlap else runner.env.backend_name
        update = f", compiled ({compile_mode})" if compile_mode else ""
        return {
            "env": env_id,
            "backend": f"{backend}, {where}{update}",
            "num_envs": num_envs,
            "overlap": overlap,
            "compile_mode": compile_mode,
            "steps_per_s": (runner.total_steps - steps) / seconds,
        }
    finally:
        runner.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI, a CPU)")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent / "results"), help="folder for gpu_check.json"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda, but torch sees no CUDA device (pass --device cpu)")
        return 1
    report: dict = {
        "device": args.device,
        "quick": args.quick,
        "torch": torch.__version__,
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    if args.device == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    try:
        report["update_matches_cpu"] = check_update_matches_cpu(args.device)
        report["save_load_export"] = check_save_load_export(args.device)
        report["learns"] = check_learns(args.device, 40_000 if args.quick else 100_000)
        print(f"correctness: ok {report['update_matches_cpu']} {report['learns']}", flush=True)
    except (CheckFailed, AssertionError) as failure:
        report["failed"] = str(failure)
        print(f"gpu_check FAILED: {failure}")
        write(report, args.out)
        return 1

    cartpole = dict(
        num_envs=1024 if args.quick else 4096,
        num_steps=16 if args.quick else 32,
        rounds=2 if args.quick else 10,
        backend="native",
    )
    speed: list[dict] = []
    report["speed"] = speed

    def measured(row: dict) -> float:
        """Keeps a row, printed and saved at once: a crash later (a segfault in a compiler, say)
        leaves the rows before it in gpu_check.json and the log."""
        speed.append(row)
        print_row(row)
        write(report, args.out)
        return row.get("steps_per_s", float("nan"))

    plain = measured(loop_speed("CartPole-v1", args.device, **cartpole))
    report["overlap_speedup"] = (
        measured(loop_speed("CartPole-v1", args.device, **cartpole, overlap=True)) / plain
    )
    if not args.quick:  # compiling takes tens of seconds: not in the quick check
        for mode, key in (("default", "compile_speedup"), ("reduce-overhead", "cuda_graphs_speedup")):
            print(f"compiling the update ({mode}) ...", flush=True)
            report[key] = (
                measured(loop_speed("CartPole-v1", args.device, **cartpole, compile_mode=mode)) / plain
            )
    if importlib.util.find_spec("envpool") is not None:
        measured(
            loop_speed(
                "Pong-v5",
                args.device,
                8 if args.quick else 64,
                16 if args.quick else 128,
                1 if args.quick else 5,
                "envpool",
            )
        )
    else:
        measured({"env": "Pong-v5", "skipped": "envpool is not installed"})
    print(f"overlap on/off (CartPole): {report['overlap_speedup']:.2f}x")
    if "compile_speedup" in report:
        print(
            f"compiled update on/off (CartPole, after compiling): {report['compile_speedup']:.2f}x; "
            f"with CUDA graphs (reduce-overhead): {report['cuda_graphs_speedup']:.2f}x"
        )
    print(
        f"correctness: ok (update vs CPU: {report['update_matches_cpu']['max_weight_difference']:.1e}; "
        f"CartPole mean return {report['learns']['mean_return']:.0f})"
    )
    return 0


def print_row(row: dict) -> None:
    if "skipped" in row:
        print(f"{row['env']:14s} skipped: {row['skipped']}", flush=True)
    else:
        print(
            f"{row['env']:14s} {row['backend']:44s} {row['num_envs']:7d} {row['steps_per_s']:12,.0f} steps/s",
            flush=True,
        )


def write(report: dict, folder: str) -> None:
    save_json(Path(folder) / "gpu_check.json", report)
    print(f"wrote {Path(folder) / 'gpu_check.json'}")


if __name__ == "__main__":
    sys.exit(main())
