"""Speed and learning benchmark: raw env speed, our rollout and whole-loop speed, CartPole-v1
time-to-solve, and a continuous env at a fixed budget (HalfCheetah-v5, a heavier MuJoCo step;
Pendulum-v1 where `mujoco` is not importable), against Stable-Baselines3 (RL Zoo's tuned
settings) and a model of the original project's design (benchmarks/original_design.py).

    python benchmarks/bench.py --quick                 # < 3 minutes: 2 seeds (1 for HalfCheetah), small budgets
    python benchmarks/bench.py [--seeds 5] [--out benchmarks/results] [--threads auto|1|2]
    python benchmarks/bench.py --only continuous       # one section: all, speed, cartpole, continuous

Seeds: 5 (--quick 2) for CartPole and Pendulum-v1, 3 (--quick 1) for HalfCheetah-v5;
--seeds N sets them all.

Every measurement runs in its own fresh subprocess (this file with --worker), one after the
other, never in parallel. Results: a markdown table on stdout and OUT/results.md,
OUT/results.json, OUT/bench.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from hardware import cpu_model

REPO = Path(__file__).resolve().parents[1]
SOLVE_RETURN = 475.0        # CartPole-v1 is solved when the last 32 episodes average >= 475
SOLVE_WINDOW = 32
PENDULUM_WINDOW = 20
HALFCHEETAH = "HalfCheetah-v5"
HALFCHEETAH_WINDOW = 10       # mean return of the last 10 finished episodes (1000 steps each)
HALFCHEETAH_OUR_ENVS = 16
# RL Zoo's tuned HalfCheetah settings (rl-baselines3-zoo hyperparams/ppo.yml, HalfCheetah-v4;
# `normalize: true` = VecNormalize of observations and rewards, with the algorithm's gamma).
# No schedules, so a budget below the Zoo's 1e6 steps changes nothing but the length.
ZOO_HALFCHEETAH = dict(n_envs=1, n_steps=512, batch_size=64, gamma=0.98, learning_rate=2.0633e-05,
                       ent_coef=0.000401762, clip_range=0.1, n_epochs=20, gae_lambda=0.92,
                       max_grad_norm=0.8, vf_coef=0.58096)
ZOO_HALFCHEETAH_POLICY = dict(log_std_init=-2, ortho_init=False, activation_fn="ReLU",  # torch.nn.ReLU
                              net_arch=dict(pi=[256, 256], vf=[256, 256]))
SECTIONS = ("speed", "cartpole", "continuous")
UNTIMED = ("machine_info", "probe_env")  # no timing to spoil when the machine is busy
ZOO_CARTPOLE_STEPS = 100_000  # RL Zoo's n_timesteps for CartPole-v1: the horizon of its schedules

# Extra AsyncPPO keyword options timed beside the defaults ('n/a' where AsyncPPO rejects them).
OUR_CONFIGS = {
    "defaults": {},
    "episodes, loop": {"rollout": "episodes", "backend": "loop"},
    "steps, loop": {"rollout": "steps", "num_steps": 32, "backend": "loop"},
    "steps, native": {"rollout": "steps", "num_steps": 32, "backend": "native"},
}

FULL = dict(seeds=5, raw_seconds=3.0, rollout_seconds=5.0, loop_steps=100_000,
            original_rollout_steps=100_000, solve_cap=300_000, pendulum_steps=100_000,
            thread_probe_steps=30_000, halfcheetah_steps=200_000, halfcheetah_seeds=3,
            timeout=1800)
QUICK = dict(seeds=2, raw_seconds=0.7, rollout_seconds=1.0, loop_steps=20_000,
             original_rollout_steps=20_000, solve_cap=150_000, pendulum_steps=30_000,
             thread_probe_steps=10_000, halfcheetah_steps=20_000, halfcheetah_seeds=1,
             timeout=300)


# =============================================================================================
# Measurements: each runs inside a worker subprocess and returns a JSON-able dict.
# =============================================================================================

def next_round(runner) -> tuple[int, list[float]]:
    """One round of our trainer (collection + learn): `train_round()` where AsyncPPO has it,
    else `run()` with the step budget set one step past what is done (run() always finishes
    the round it starts, so this runs exactly one round). Returns (env steps, finished
    episodes' returns)."""
    if hasattr(runner, "train_round"):
        result = runner.train_round()
        return int(result.steps), [float(r) for r in result.episode_returns]
    done_before, returns_before = runner.total_steps, len(runner.episode_returns)
    runner.steps = runner.total_steps + 1
    runner.run()
    return runner.total_steps - done_before, runner.episode_returns[returns_before:]


def make_our_runner(env_id: str, seed: int, steps: int, options: dict, ppo_options: dict,
                    num_envs: int = 32):
    import gymnasium as gym
    from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env

    env = gym.make(env_id)
    ppo = ppo_for_env(env, seed=seed, device="cpu", **ppo_options)
    try:
        runner = AsyncPPO(env, ppo, num_envs=num_envs, steps=steps, progress_bar=False, **options)
    except TypeError as error:
        if not options:
            raise
        return None, f"AsyncPPO rejects {sorted(options)}: {error}"
    return runner, None


def describe_runner(runner) -> dict:
    env = runner.env
    return dict(backend=getattr(env, "backend_name", "?"),
                rollout=str(getattr(runner, "rollout", "episodes")),
                driven_by="train_round" if hasattr(runner, "train_round") else "run")


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
    return dict(steps=steps, time=elapsed, steps_per_s=steps / elapsed, calls=calls,
                backend_class=env.backend_name)


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
    return dict(steps=steps, time=elapsed, steps_per_s=steps / elapsed, how=how,
                **describe_runner(runner))


def train_ours(env_id: str, seed: int, steps: int, stop_return: float | None = None,
               window: int = SOLVE_WINDOW, options: dict | None = None,
               ppo_options: dict | None = None, num_envs: int = 32) -> dict:
    """Our whole loop (collection + learning), round by round, until `steps` env steps or the
    mean of the last `window` episode returns reaches `stop_return`."""
    start = time.perf_counter()
    runner, na = make_our_runner(env_id, seed, steps, options or {}, ppo_options or {}, num_envs)
    if runner is None:
        return dict(na=na)
    recent, records, total, solved = deque(maxlen=window), [], 0, None
    while total < steps:
        round_steps, returns = next_round(runner)
        total += round_steps
        recent.extend(returns)
        mean = float(sum(recent) / len(recent)) if recent else float("nan")
        records.append(dict(time=time.perf_counter() - start, steps=total, mean_return=mean))
        if stop_return is not None:
            solved = len(recent) == window and mean >= stop_return
            if solved:
                break
    elapsed = time.perf_counter() - start
    return dict(records=records, steps=total, time=elapsed, solved=solved,
                steps_per_s=total / elapsed, last_mean=records[-1]["mean_return"],
                num_envs=num_envs, **describe_runner(runner))


def _sb3_recorder(start: float, window: int, stop_return: float | None):
    """An SB3 callback that, after each rollout, records (time, steps, mean of the last
    `window` finished episodes from the Monitor 'episode' infos) and stops once solved."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Recorder(BaseCallback):
        def __init__(self):
            super().__init__()
            self.records, self.solved = [], None if stop_return is None else False

        def _on_step(self) -> bool:
            return not self.solved  # stops at the first step after the solving rollout

        def _on_rollout_end(self) -> None:
            returns = [info["r"] for info in self.model.ep_info_buffer][-window:]
            mean = float(sum(returns) / len(returns)) if returns else float("nan")
            self.records.append(dict(time=time.perf_counter() - start,
                                     steps=int(self.model.num_timesteps), mean_return=mean))
            if stop_return is not None and len(returns) == window and mean >= stop_return:
                self.solved = True

    return Recorder()


def _sb3_result(model, recorder, start: float, planned_steps: int) -> dict:
    records = recorder.records
    if recorder.solved:  # time and steps at the end of the solving rollout
        steps, elapsed = records[-1]["steps"], records[-1]["time"]
    else:
        steps, elapsed = int(model.num_timesteps), time.perf_counter() - start
    return dict(records=records, steps=steps, time=elapsed, solved=recorder.solved,
                steps_per_s=steps / elapsed, last_mean=records[-1]["mean_return"] if records else None,
                planned_steps=planned_steps)


def linear(initial: float):
    return lambda progress_remaining: progress_remaining * initial


def train_sb3_cartpole(seed: int, steps: int, stop_return: float | None = SOLVE_RETURN) -> dict:
    """SB3 PPO with RL Zoo's tuned CartPole-v1 settings. Its linear schedules run over the
    Zoo's 1e5 steps and reach 0 there, so it runs at most min(steps, 1e5) steps."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, n_epochs=20, gae_lambda=0.8,
                gamma=0.98, learning_rate=linear(1e-3), clip_range=linear(0.2), ent_coef=0.0,
                device="cpu", seed=seed, verbose=0)
    recorder = _sb3_recorder(start, SOLVE_WINDOW, stop_return)
    planned = min(steps, ZOO_CARTPOLE_STEPS)
    model.learn(total_timesteps=planned, callback=recorder)
    return _sb3_result(model, recorder, start, planned)


def train_sb3_pendulum(seed: int, steps: int) -> dict:
    """SB3 PPO with RL Zoo's Pendulum-v1 settings (use_sde off), VecNormalize obs + reward."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    start = time.perf_counter()
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=4, seed=seed), norm_obs=True,
                       norm_reward=True, gamma=0.9)
    model = PPO("MlpPolicy", env, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=False, device="cpu",
                seed=seed, verbose=0)
    recorder = _sb3_recorder(start, PENDULUM_WINDOW, None)
    model.learn(total_timesteps=steps, callback=recorder)
    result = _sb3_result(model, recorder, start, steps)
    returns = [info["r"] for info in model.ep_info_buffer][-PENDULUM_WINDOW:]
    result["last_mean"] = float(sum(returns) / len(returns))  # after the last update too
    return result


def train_sb3_halfcheetah(seed: int, steps: int) -> dict:
    """SB3 PPO with RL Zoo's tuned HalfCheetah settings (ZOO_HALFCHEETAH), VecNormalize obs +
    reward (gamma 0.98, as the Zoo passes the algorithm's gamma to it)."""
    import torch.nn as nn
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    settings = dict(ZOO_HALFCHEETAH)
    start = time.perf_counter()
    env = VecNormalize(make_vec_env(HALFCHEETAH, n_envs=settings.pop("n_envs"), seed=seed),
                       norm_obs=True, norm_reward=True, gamma=settings["gamma"])
    policy_kwargs = dict(ZOO_HALFCHEETAH_POLICY,
                         activation_fn=getattr(nn, ZOO_HALFCHEETAH_POLICY["activation_fn"]))
    model = PPO("MlpPolicy", env, policy_kwargs=policy_kwargs, device="cpu", seed=seed, verbose=0,
                **settings)
    recorder = _sb3_recorder(start, HALFCHEETAH_WINDOW, None)
    model.learn(total_timesteps=steps, callback=recorder)
    result = _sb3_result(model, recorder, start, steps)
    returns = [info["r"] for info in model.ep_info_buffer][-HALFCHEETAH_WINDOW:]
    result["last_mean"] = float(sum(returns) / len(returns)) if returns else float("nan")
    result["num_envs"] = ZOO_HALFCHEETAH["n_envs"]
    return result


def probe_env(env_id: str) -> dict:
    """Whether `env_id` can be built and stepped here (HalfCheetah needs mujoco and imageio)."""
    try:
        import gymnasium as gym

        env = gym.make(env_id)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        env.close()
    except Exception as error:  # ImportError, gymnasium's DependencyNotInstalled, ...
        return dict(na=f"{type(error).__name__}: {error}")
    try:
        import mujoco
        version = mujoco.__version__
    except ImportError:
        version = None
    return dict(ok=True, mujoco=version)


def train_original(seed: int, steps: int, stop_return: float | None = SOLVE_RETURN) -> dict:
    from benchmarks.original_design import run_original

    return run_original("CartPole-v1", seed=seed, steps=steps, stop_return=stop_return,
                        window=SOLVE_WINDOW)


def measure_original_rollout(steps: int) -> dict:
    from benchmarks.original_design import run_original_rollout

    return run_original_rollout("CartPole-v1", seed=0, steps=steps)


def machine_info() -> dict:
    import gymnasium
    import numpy
    import torch

    processor = f"{cpu_model()} ({platform.machine()})"
    try:
        import stable_baselines3
        sb3 = stable_baselines3.__version__
    except ImportError:
        sb3 = "not installed"
    try:
        import mujoco
        mujoco_version = mujoco.__version__
    except ImportError:
        mujoco_version = "not installed"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return dict(processor=processor or platform.machine(), cpu_count=os.cpu_count(),
                platform=platform.platform(), python=platform.python_version(),
                torch=torch.__version__, gymnasium=gymnasium.__version__, numpy=numpy.__version__,
                stable_baselines3=sb3, mujoco=mujoco_version, gpu=gpu, commit=_git_commit())


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "PPO", "AsyncTools"],
                               cwd=REPO, text=True, capture_output=True).stdout.strip()
        return commit + (" + uncommitted changes in PPO/ or AsyncTools/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


MEASUREMENTS = {f.__name__: f for f in (
    measure_raw_env, measure_our_rollout, train_ours, train_sb3_cartpole, train_sb3_pendulum,
    train_sb3_halfcheetah, probe_env, train_original, measure_original_rollout, machine_info)}


def worker_main(name: str, kwargs: str, result_path: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    # The first torch optimizer a process builds imports torch._dynamo (~1 s here); do it before
    # any clock starts, so that every implementation is timed warm.
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    result = MEASUREMENTS[name](**json.loads(kwargs))
    Path(result_path).write_text(json.dumps(result))


# =============================================================================================
# The driver: one subprocess per measurement, sequentially.
# =============================================================================================

def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (None if unknown)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Runner:
    """Runs measurements in fresh subprocesses and keeps a log of each (wall time, the CPU the
    rest of the machine used meanwhile)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.log: list[dict] = []

    def __call__(self, label: str, name: str, threads: int = 1, **kwargs) -> dict:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS=str(threads),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        with tempfile.TemporaryDirectory() as tmp:
            result_path = Path(tmp) / "result.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                       "--kwargs", json.dumps(kwargs), "--result", str(result_path),
                       "--threads", str(threads)]
            busy0, cpu0, start = _busy_seconds(), _children_cpu(), time.perf_counter()
            try:
                done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                                      timeout=self.timeout)
                if done.returncode == 0 and result_path.exists():
                    result = json.loads(result_path.read_text())
                else:
                    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                    result = dict(error=f"exit {done.returncode}: " + " | ".join(tail))
            except subprocess.TimeoutExpired:
                result = dict(error=f"timed out after {self.timeout:.0f} s")
            wall = time.perf_counter() - start
            busy1, cpu1 = _busy_seconds(), _children_cpu()
        others = None if busy0 is None else max(0.0, (busy1 - busy0) - (cpu1 - cpu0)) / wall
        self.log.append(dict(label=label, measurement=name, threads=threads, kwargs=kwargs,
                             wall_s=round(wall, 2),
                             other_cpu_cores=None if others is None else round(others, 2),
                             status=_status(result)))
        flag = "" if others is None or others < 0.3 else f"  [other processes used {others:.1f} cores]"
        print(f"  {label}: {_status(result)} ({wall:.1f} s){flag}", file=sys.stderr, flush=True)
        return result


def _status(result: dict) -> str:
    if "error" in result:
        return "error: " + result["error"]
    if "na" in result:
        return "n/a: " + result["na"]
    if "steps_per_s" in result:
        text = f"{result['steps_per_s']:,.0f} steps/s"
        if result.get("solved") is not None:
            text += f", {'solved' if result['solved'] else 'not solved'} at {result['steps']:,} steps, {result['time']:.1f} s"
        return text
    return "ok"


def ok(result: dict) -> bool:
    return "error" not in result and "na" not in result


# ------------------------------------------------------------------------------ sections

def pick_threads(run: Runner, budget: dict, mode: str,
                 impls: tuple[str, ...] = ("ours", "sb3", "original")) -> dict:
    """Torch intra-op threads per implementation: fixed, or (auto) the faster of 1 and 2 on a
    short CartPole training run (2 only if at least 10% faster: two threads on two
    cores collapse when anything else runs on the machine)."""
    if mode != "auto":
        return {impl: dict(threads=int(mode), how="fixed") for impl in impls}
    steps = budget["thread_probe_steps"]
    probes = {"ours": ("train_ours", dict(env_id="CartPole-v1", seed=0, steps=steps)),
              "sb3": ("train_sb3_cartpole", dict(seed=0, steps=steps, stop_return=None)),
              "original": ("train_original", dict(seed=0, steps=steps, stop_return=None))}
    choice = {}
    for impl in impls:
        name, kwargs = probes[impl]
        speed = {}
        for threads in (1, 2):
            result = run(f"threads probe {impl} x{threads}", name, threads, **kwargs)
            speed[threads] = result.get("steps_per_s", 0.0)
        best = 2 if speed[2] > 1.10 * speed[1] else 1
        choice[impl] = dict(threads=best, how="probe", steps_per_s={str(k): v for k, v in speed.items()})
    return choice


def bench_raw_env(run: Runner, budget: dict, threads: int) -> list[dict]:
    rows = []
    for backend, num_envs in (("loop", 32), ("native", 32), ("native", 1024), ("native", 4096)):
        result = run(f"raw env {backend} x{num_envs}", "measure_raw_env", threads,
                     backend=backend, num_envs=num_envs, seconds=budget["raw_seconds"])
        rows.append(dict(backend=backend, num_envs=num_envs, **result))
    return rows


def bench_our_speed(run: Runner, budget: dict, threads: int) -> dict:
    rows = {}
    for config, options in OUR_CONFIGS.items():
        rollout = run(f"ours rollout [{config}]", "measure_our_rollout", threads,
                      options=options, seconds=budget["rollout_seconds"])
        if "na" in rollout:
            loop = dict(na=rollout["na"])
        else:
            loop = run(f"ours whole loop [{config}]", "train_ours", threads, env_id="CartPole-v1",
                       seed=0, steps=budget["loop_steps"], options=options)
        rows[config] = dict(options=options, rollout=rollout, whole_loop=loop)
    return rows


def bench_cartpole(run: Runner, budget: dict, threads: dict, seeds: list[int]) -> dict:
    cap = budget["solve_cap"]
    runs = {"ours": [], "sb3": [], "original": []}
    for seed in seeds:
        runs["ours"].append(run(f"CartPole ours seed {seed}", "train_ours", threads["ours"]["threads"],
                                env_id="CartPole-v1", seed=seed, steps=cap, stop_return=SOLVE_RETURN))
        runs["sb3"].append(run(f"CartPole SB3 seed {seed}", "train_sb3_cartpole",
                               threads["sb3"]["threads"], seed=seed, steps=cap))
        runs["original"].append(run(f"CartPole original seed {seed}", "train_original",
                                    threads["original"]["threads"], seed=seed, steps=cap))
    return runs


def bench_pendulum(run: Runner, budget: dict, threads: dict, seeds: list[int]) -> dict:
    steps = budget["pendulum_steps"]
    runs = {"ours": [], "sb3": []}
    for seed in seeds:
        runs["ours"].append(run(f"Pendulum ours seed {seed}", "train_ours", threads["ours"]["threads"],
                                env_id="Pendulum-v1", seed=seed, steps=steps,
                                window=PENDULUM_WINDOW, ppo_options=dict(gamma=0.9)))
        runs["sb3"].append(run(f"Pendulum SB3 seed {seed}", "train_sb3_pendulum",
                               threads["sb3"]["threads"], seed=seed, steps=steps))
    return runs


def continuous_env_choice(run: Runner, wanted: str) -> dict:
    """HalfCheetah-v5 where it can be built (mujoco and imageio importable), else Pendulum-v1;
    `wanted` ('auto', 'halfcheetah', 'pendulum') forces one."""
    if wanted == "pendulum":
        return dict(env="Pendulum-v1", reason="chosen with --continuous-env pendulum")
    probe = run(f"probe {HALFCHEETAH}", "probe_env", 1, env_id=HALFCHEETAH)
    if ok(probe):
        return dict(env=HALFCHEETAH, reason=f"mujoco {probe.get('mujoco')} importable")
    if wanted == "halfcheetah":
        return dict(env=HALFCHEETAH, reason=f"forced, but the probe failed: {_status(probe)}")
    return dict(env="Pendulum-v1", reason=f"fallback: {HALFCHEETAH} unavailable ({_status(probe)})")


def bench_continuous(run: Runner, budget: dict, threads: dict, seeds: list[int],
                     seeds_override: int | None, choice: dict) -> dict:
    """The continuous-action section at a fixed budget: HalfCheetah-v5 (ours with
    normalize_obs=True, 16 envs; SB3 with RL Zoo's settings) or the Pendulum-v1 fallback."""
    if choice["env"] != HALFCHEETAH:
        runs = bench_pendulum(run, budget, threads, seeds)
        return dict(choice, seeds=seeds, steps=budget["pendulum_steps"], window=PENDULUM_WINDOW,
                    our_envs=32, sb3_envs=4, runs=runs)
    steps = budget["halfcheetah_steps"]
    seeds = list(range(seeds_override if seeds_override is not None else budget["halfcheetah_seeds"]))
    our_ppo_options = dict(normalize_obs=True)
    runs = {"ours": [], "sb3": []}
    for seed in seeds:
        runs["ours"].append(run(f"HalfCheetah ours seed {seed}", "train_ours", threads["ours"]["threads"],
                                env_id=HALFCHEETAH, seed=seed, steps=steps, window=HALFCHEETAH_WINDOW,
                                ppo_options=our_ppo_options, num_envs=HALFCHEETAH_OUR_ENVS))
        runs["sb3"].append(run(f"HalfCheetah SB3 seed {seed}", "train_sb3_halfcheetah",
                               threads["sb3"]["threads"], seed=seed, steps=steps))
    return dict(choice, seeds=seeds, steps=steps, window=HALFCHEETAH_WINDOW,
                our_envs=HALFCHEETAH_OUR_ENVS, sb3_envs=ZOO_HALFCHEETAH["n_envs"],
                our_ppo_options=our_ppo_options, sb3_settings=ZOO_HALFCHEETAH,
                sb3_policy_kwargs=ZOO_HALFCHEETAH_POLICY, runs=runs)


# ------------------------------------------------------------------------------ summaries

def median_or_inf(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def loop_rate(records: list[dict]) -> float:
    """Env steps per second of the training loop itself: from the end of the first round (or
    rollout) to the last, so that building the envs and model, which every run pays once,
    does not count against the runs that finish soonest."""
    if len(records) < 2 or records[-1]["time"] <= records[0]["time"]:
        return float("nan")
    first, last = records[0], records[-1]
    return (last["steps"] - first["steps"]) / (last["time"] - first["time"])


def summarize_solve(runs: list[dict]) -> dict:
    good = [r for r in runs if ok(r)]
    if not good:
        return dict(status=_status(runs[0]) if runs else "no runs")
    inf = float("inf")
    times = [r["time"] if r["solved"] else inf for r in good]
    steps = [r["steps"] if r["solved"] else inf for r in good]
    return dict(solved=sum(bool(r["solved"]) for r in good), runs=len(good),
                median_time=median_or_inf(times), median_steps=median_or_inf(steps),
                times=[round(t, 1) for t in times],
                steps_per_s=median_or_inf([loop_rate(r["records"]) for r in good]),
                steps_per_s_with_setup=median_or_inf([r["steps_per_s"] for r in good]))


def summarize_fixed_budget(runs: list[dict]) -> dict:
    good = [r for r in runs if ok(r)]
    if not good:
        return dict(status=_status(runs[0]) if runs else "no runs")
    return dict(runs=len(good), median_return=median_or_inf([r["last_mean"] for r in good]),
                returns=[round(r["last_mean"], 1) for r in good],
                median_time=median_or_inf([r["time"] for r in good]),
                median_steps=median_or_inf([r["steps"] for r in good]),
                steps_per_s=median_or_inf([r["steps_per_s"] for r in good]))


def ratio(a, b) -> float | None:
    if a is None or b is None or not all(map(math.isfinite, (a, b))) or b == 0:
        return None
    return a / b


def difference(a, b) -> float | None:
    if a is None or b is None or not all(map(math.isfinite, (a, b))):
        return None
    return a - b


def compute_ratios(results: dict) -> list[tuple[str, float | None, str]]:
    """The ratios of the sections that ran."""
    rows = []
    if "cartpole_summary" in results:
        rows += cartpole_ratios(results["cartpole_summary"])
    if "our_speed" in results:
        rows += speed_ratios(results)
    if "continuous" in results:
        rows += continuous_ratios(results["continuous"])
    return rows


def continuous_ratios(cont: dict) -> list[tuple[str, float | None, str]]:
    ours, sb3 = cont["summary"]["ours"], cont["summary"]["sb3"]
    env = cont["env"]
    return [
        (f"{env} return at {cont['steps']:,} steps, ours - SB3", difference(ours.get("median_return"), sb3.get("median_return")),
         f"difference of the medians (mean of the last {cont['window']} episodes); > 0: ours higher"),
        (f"{env} wall-clock, ours / SB3", ratio(ours.get("median_time"), sb3.get("median_time")),
         "< 1: ours trains the same budget sooner (medians)"),
        (f"{env} whole-loop steps/s, ours / SB3", ratio(ours.get("steps_per_s"), sb3.get("steps_per_s")),
         "> 1: ours faster (medians)"),
    ]


def cartpole_ratios(solve: dict) -> list[tuple[str, float | None, str]]:
    return [
        ("time-to-solve CartPole, ours / SB3", ratio(solve["ours"].get("median_time"), solve["sb3"].get("median_time")),
         "< 1: ours solves sooner (median wall-clock)"),
        ("time-to-solve CartPole, ours / original", ratio(solve["ours"].get("median_time"), solve["original"].get("median_time")),
         "< 1: ours solves sooner"),
        ("whole-loop steps/s, ours / SB3", ratio(solve["ours"].get("steps_per_s"), solve["sb3"].get("steps_per_s")),
         "> 1: ours faster (CartPole solve runs, medians)"),
        ("whole-loop steps/s, ours / original", ratio(solve["ours"].get("steps_per_s"), solve["original"].get("steps_per_s")),
         "> 1: ours faster (CartPole solve runs, medians)"),
    ]


def speed_ratios(results: dict) -> list[tuple[str, float | None, str]]:
    speed, raw = results["our_speed"], results["raw_env"]
    raw_speed = {(r["backend"], r["num_envs"]): r.get("steps_per_s") for r in raw}
    rows = []
    original_rollout = results["original_rollout"].get("steps_per_s")
    for config, row in speed.items():
        rollout = row["rollout"]
        if not ok(rollout):
            rows.append((f"ours rollout [{config}] / raw env", None, _status(rollout)))
            continue
        backend = row["options"].get("backend") or (
            "loop" if rollout.get("backend") == "LoopBackend" else "native")
        rows.append((f"ours rollout [{config}] / raw env {backend} x32",
                     ratio(rollout["steps_per_s"], raw_speed.get((backend, 32))),
                     "fraction of the env's own speed kept by our collection (1 = no overhead)"))
        rows.append((f"ours rollout [{config}] / original rollout",
                     ratio(rollout["steps_per_s"], original_rollout), "> 1: ours collects faster"))
    return rows


def fmt(value, digits: int = 0, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "not solved"
    return f"{value:,.{digits}f}{unit}"


def speed_cell(result: dict) -> str:
    if "error" in result:
        return "error"
    if "na" in result:
        return "n/a"
    return fmt(result["steps_per_s"])


def markdown(results: dict) -> str:
    m = results["machine"]
    threads = results["threads"]
    thread_text = ", ".join(
        f"{impl} {c['threads']}" + (f" (probed: {', '.join(f'{k} thread(s) {fmt(v)} steps/s' for k, v in c['steps_per_s'].items())})"
                                    if c["how"] == "probe" else " (fixed)")
        for impl, c in threads.items())
    only = results.get("only", "all")
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
        lines += markdown_speed(results)
    if "cartpole_summary" in results:
        lines += markdown_cartpole(results)
    if "continuous" in results:
        lines += markdown_continuous(results["continuous"])
    lines += ["", "## Ratios", "", "| ratio | value | reading |", "|---|---|---|"]
    for name, value, reading in results["ratios"]:
        lines.append(f"| {name} | {fmt(value, 2)} | {reading} |")
    busy = [e for e in results["log"] if (e["other_cpu_cores"] or 0) >= 0.3
            and e["measurement"] not in UNTIMED]
    lines += ["", "## Notes", ""]
    if "cartpole_summary" in results:
        lines.append("- Time-to-solve counts from building the envs and model (imports, and torch's one-time "
                     "lazy import of torch._dynamo on the first optimizer, excluded) to the end "
                     "of the round (ours, original: collection + learn) or rollout (SB3: before its update) "
                     "where the mean first reaches the threshold.")
    if "our_speed" in results:
        lines.append("- Rollout-only speeds use the untrained policy, so CartPole episodes are short (~20 steps); "
                     "episode-synchronous collection loses speed while the last episodes of a round finish.")
    if "original_rollout" in results or "cartpole_summary" in results:
        lines.append("- The original design is a model written from a description of the original project "
                     "(benchmarks/original_design.py), not the original code.")
    if "continuous" in results:
        lines += continuous_notes(results["continuous"])
    lines.append(f"- Total benchmark wall-clock: {results['total_wall_s']:.0f} s.")
    if busy:
        lines.append("- Other processes used >= 0.3 CPU cores during: "
                     + "; ".join(f"{e['label']} ({e['other_cpu_cores']})" for e in busy)
                     + " -- those timings may be low.")
    return "\n".join(lines) + "\n"


def markdown_speed(results: dict) -> list[str]:
    b = results["budget"]
    lines = [
        "",
        "## Speed (CartPole-v1, env steps per second)",
        "",
        "| measurement | implementation | envs | steps/s | notes |",
        "|---|---|---|---|---|",
    ]
    for r in results["raw_env"]:
        lines.append(f"| raw env, random actions | EnvVectorizer(backend=\"{r['backend']}\").step_autoreset "
                     f"| {r['num_envs']} | {speed_cell(r)} | the ceiling |")
    for config, row in results["our_speed"].items():
        rollout, loop = row["rollout"], row["whole_loop"]
        options = json.dumps(row["options"]) if row["options"] else "one-liner defaults"
        where = f"backend {rollout.get('backend', '?')}, rollout {rollout.get('rollout', '?')}" if ok(rollout) else ""
        lines.append(f"| rollout only (untrained policy) | ours [{config}] | 32 | {speed_cell(rollout)} "
                     f"| {options}; {where or _status(rollout)} |")
        lines.append(f"| whole loop, {b['loop_steps']:,} steps | ours [{config}] | 32 | {speed_cell(loop)} "
                     f"| collection + learning{'' if ok(loop) else '; ' + _status(loop)} |")
    lines.append(f"| rollout only (untrained policy) | original design | 32 | {speed_cell(results['original_rollout'])} | per-env lists, push per step |")
    solve = results.get("cartpole_summary")
    if solve:
        for impl, label in (("ours", "ours [defaults]"), ("sb3", "SB3 PPO, RL Zoo settings"),
                            ("original", "original design")):
            envs = {"ours": 32, "sb3": 8, "original": 32}[impl]
            lines.append(f"| whole loop, CartPole solve runs (median) | {label} | {envs} "
                         f"| {fmt(solve[impl].get('steps_per_s'))} | steps / wall time while training to solve, after the first round |")
    return lines


def markdown_cartpole(results: dict) -> list[str]:
    b, solve = results["budget"], results["cartpole_summary"]
    lines = [
        "",
        f"## CartPole-v1 time-to-solve (mean of the last {SOLVE_WINDOW} episodes >= {SOLVE_RETURN:g}; "
        f"cap {b['solve_cap']:,} steps; {len(results['seeds'])} seeds, median)",
        "",
        "| implementation | solved | median time to solve | median steps to solve | per-seed time (s) | whole-loop steps/s |",
        "|---|---|---|---|---|---|",
    ]
    ours_run = next((r for r in results["cartpole"]["ours"] if ok(r)), {})
    ours_how = f"backend {ours_run.get('backend', '?')}, rollout {ours_run.get('rollout', '?')}"
    for impl, label in (("ours", f"ours: ppo_for_env + AsyncPPO defaults, 32 envs ({ours_how})"),
                        ("sb3", f"SB3 PPO, RL Zoo tuned (8 envs, schedules over {ZOO_CARTPOLE_STEPS:,} steps)"),
                        ("original", "original design, README settings (32 envs)")):
        s = solve[impl]
        if "status" in s:
            lines.append(f"| {label} | {s['status']} | | | | |")
            continue
        lines.append(f"| {label} | {s['solved']}/{s['runs']} | {fmt(s['median_time'], 1, ' s')} "
                     f"| {fmt(s['median_steps'])} | {', '.join(fmt(t, 1) for t in s['times'])} "
                     f"| {fmt(s['steps_per_s'])} |")
    return lines


def markdown_continuous(cont: dict) -> list[str]:
    summary, env = cont["summary"], cont["env"]
    random_score = "-1200" if env == "Pendulum-v1" else "-300"
    lines = [
        "",
        f"## {env} at {cont['steps']:,} steps (mean return of the last {cont['window']} "
        f"episodes; median of {len(cont['seeds'])} seed{'s' if len(cont['seeds']) != 1 else ''}; "
        f"random policy ~ {random_score})",
        "",
        "| implementation | median return | per-seed returns | steps run | median wall-clock | steps/s |",
        "|---|---|---|---|---|---|",
    ]
    ours_run = next((r for r in cont["runs"]["ours"] if ok(r)), {})
    ours_how = f"backend {ours_run.get('backend', '?')}, rollout {ours_run.get('rollout', '?')}"
    if env == HALFCHEETAH:
        labels = (("ours", f"ours: ppo_for_env(normalize_obs=True) + AsyncPPO defaults, "
                           f"{cont['our_envs']} envs ({ours_how})"),
                  ("sb3", f"SB3 PPO, RL Zoo HalfCheetah settings ({cont['sb3_envs']} env, VecNormalize obs + reward)"))
    else:
        labels = (("ours", f"ours: ppo_for_env(gamma=0.9) + AsyncPPO defaults, {cont['our_envs']} envs"),
                  ("sb3", f"SB3 PPO, RL Zoo settings ({cont['sb3_envs']} envs, VecNormalize, no gSDE)"))
    for impl, label in labels:
        s = summary[impl]
        if "status" in s:
            lines.append(f"| {label} | {s['status']} | | | | |")
            continue
        lines.append(f"| {label} | {fmt(s['median_return'], 1)} | {', '.join(fmt(r, 1) for r in s['returns'])} "
                     f"| {fmt(s['median_steps'])} | {fmt(s['median_time'], 1, ' s')} | {fmt(s['steps_per_s'])} |")
    return lines


def continuous_notes(cont: dict) -> list[str]:
    env = cont["env"]
    notes = [f"- Continuous section: {env} ({cont['reason']})."]
    if env == HALFCHEETAH:
        zoo = ", ".join(f"{k}={v}" for k, v in cont["sb3_settings"].items())
        policy = cont["sb3_policy_kwargs"]
        notes += [
            f"- {env}, ours: `ppo_for_env(env, seed=s, device='cpu', normalize_obs=True)` and "
            f"`AsyncPPO(env, ppo, num_envs={cont['our_envs']}, steps={cont['steps']:,})`, every other option "
            "at its default (gamma 0.99, lr 3e-3, 4 epochs of 512 over 2048-step batches, 64x64 tanh, "
            "no reward normalisation); AsyncPPO finishes the round that reaches the budget.",
            f"- {env}, SB3: RL Zoo's tuned HalfCheetah entry (rl-baselines3-zoo hyperparams/ppo.yml, "
            f"HalfCheetah-v4): {zoo}; policy_kwargs log_std_init={policy['log_std_init']}, "
            f"ortho_init={policy['ortho_init']}, activation_fn=nn.{policy['activation_fn']}, "
            f"net_arch={policy['net_arch']}; `normalize: true` = VecNormalize(norm_obs=True, "
            f"norm_reward=True, gamma={cont['sb3_settings']['gamma']}); device='cpu'. The Zoo trains "
            "1e6 steps; its settings have no schedules, so the shorter budget only stops it earlier.",
            f"- {env} returns are the raw env returns (Monitor, before VecNormalize) of the last "
            f"{cont['window']} finished 1000-step episodes after the last update; wall-clock includes "
            "building the envs and the model. Ours steps its copies in lockstep, so its episodes end "
            f"together every {cont['our_envs']}x1000 steps: its last ones ran during the "
            f"{cont['our_envs']:,}k steps before the last multiple of {cont['our_envs']:,}k (SB3's, during "
            "the last 10k steps).",
            f"- {env} starting points differ: SB3's initial policy (log_std_init=-2, std 0.14) scores "
            "about -20, HalfCheetah's control cost being small for small actions; ours (log std 0: a "
            "std of half the action range) starts near a random policy's -300.",
        ]
    return notes


def unfinite(value):
    """The inverse of `finite`: the strings "inf", "-inf" and "nan" back to floats."""
    if value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, dict):
        return {k: unfinite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unfinite(v) for v in value]
    return value


def finite(value):
    """A copy of `value` that strict JSON can hold: inf/nan floats become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [name for name, key in (("speed", "our_speed"), ("cartpole", "cartpole"),
                                     ("continuous", "continuous")) if key in results]
    widths = {"speed": 1.1, "cartpole": 1.0, "continuous": 1.0}
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 6.5), squeeze=False,
                             gridspec_kw=dict(width_ratios=[widths[p] for p in panels]))
    for panel, ax in zip(panels, axes[0]):
        {"speed": plot_speed, "cartpole": plot_cartpole, "continuous": plot_continuous}[panel](results, ax)
    m = results["machine"]
    fig.suptitle(f"{m.get('processor')}, {m.get('cpu_count')} CPUs, {m.get('gpu')}, torch {m.get('torch')}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


COLORS = {"ours": "tab:blue", "sb3": "tab:orange", "original": "tab:green"}


def plot_speed(results: dict, left) -> None:
    bars = []
    for r in results["raw_env"]:
        bars.append((f"raw env {r['backend']} x{r['num_envs']}", r.get("steps_per_s"), "tab:gray"))
    for config, row in results["our_speed"].items():
        bars.append((f"ours rollout [{config}]", row["rollout"].get("steps_per_s"), "lightsteelblue"))
        bars.append((f"ours whole loop [{config}]", row["whole_loop"].get("steps_per_s"), "tab:blue"))
    bars.append(("original rollout", results["original_rollout"].get("steps_per_s"), "palegreen"))
    solve = results.get("cartpole_summary")
    if solve:
        for impl in ("ours", "sb3", "original"):
            bars.append((f"{impl} whole loop (solve runs)", solve[impl].get("steps_per_s"), COLORS[impl]))

    labels = [b[0] for b in bars]
    values = [b[1] if b[1] and math.isfinite(b[1]) else 0 for b in bars]
    y = range(len(bars))
    left.barh(y, values, color=[b[2] for b in bars])
    left.set_yticks(list(y), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel("CartPole-v1 env steps per second (log scale)")
    left.set_title("Speed: raw env (gray), rollout only (light), whole loop (dark); n/a bars empty",
                   fontsize=10)
    for i, v in enumerate(values):
        left.text(v if v else 1, i, f" {v:,.0f}" if v else " n/a", va="center", fontsize=7)
    if any(values):
        left.set_xlim(left=min(v for v in values if v) / 3, right=max(values) * 8)


def plot_cartpole(results: dict, right) -> None:
    names = {"ours": "ours", "sb3": "SB3 (RL Zoo)", "original": "original design"}
    for impl, runs in results["cartpole"].items():
        for seed, run in zip(results["seeds"], runs):
            if not ok(run):
                continue
            times = [0.0] + [r["time"] for r in run["records"]]
            means = [float("nan")] + [r["mean_return"] for r in run["records"]]
            right.plot(times, means, color=COLORS[impl], alpha=0.8,
                       label=f"{names[impl]}" if seed == results["seeds"][0] else None)
    right.axhline(SOLVE_RETURN, color="black", linestyle="--", linewidth=0.8)
    right.set_xlabel("wall-clock (s)")
    right.set_ylabel(f"mean return of the last {SOLVE_WINDOW} episodes")
    right.set_title("CartPole-v1 learning curves (one line per seed)")
    right.legend(loc="lower right")


def plot_continuous(results: dict, ax) -> None:
    """Learning curves against env steps (the same budget for both), with each
    implementation's median wall-clock and speed in the legend."""
    cont = results["continuous"]
    names = {"ours": f"ours ({cont['our_envs']} envs)", "sb3": f"SB3, RL Zoo settings ({cont['sb3_envs']} env"
             + ("s" if cont["sb3_envs"] != 1 else "") + ")"}
    for impl, runs in cont["runs"].items():
        s = cont["summary"][impl]
        legend = names[impl] + ("" if "status" in s else
                                f": {fmt(s['median_time'], 0, ' s')}, {fmt(s['steps_per_s'])} steps/s")
        first = True
        for run in runs:
            if not ok(run) or not run.get("records"):
                continue
            ax.plot([r["steps"] for r in run["records"]], [r["mean_return"] for r in run["records"]],
                    color=COLORS[impl], alpha=0.8, label=legend if first else None)
            first = False
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"mean return of the last {cont['window']} episodes")
    ax.set_title(f"{cont['env']} learning curves at a fixed budget (one line per seed)", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small budgets and fewer seeds (< 3 minutes)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per learning run (default 5, --quick 2; HalfCheetah 3, --quick 1)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="output directory")
    parser.add_argument("--threads", choices=("auto", "1", "2"), default=None,
                        help="torch threads per implementation: auto = the faster of 1/2, probed "
                             "(default auto; --quick: 1)")
    parser.add_argument("--only", choices=("all",) + SECTIONS, default="all",
                        help="run one section: speed (raw env, rollout, whole loop), cartpole "
                             "(time-to-solve), continuous (HalfCheetah-v5, or Pendulum-v1 without mujoco)")
    parser.add_argument("--continuous-env", choices=("auto", "halfcheetah", "pendulum"), default="auto",
                        help="the continuous section's env: auto = HalfCheetah-v5 where it can be "
                             "built, else Pendulum-v1")
    parser.add_argument("--replot", action="store_true",
                        help="measure nothing: recompute the summaries, ratios, table and plot "
                             "from OUT/results.json (after a change to how they are computed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.kwargs, args.result, int(args.threads))
        return

    if args.replot:
        results = json.loads((Path(args.out) / "results.json").read_text())
        write_results(summarize(unfinite(results)), Path(args.out))
        return

    budget = dict(QUICK if args.quick else FULL)
    seeds = list(range(args.seeds if args.seeds is not None else budget["seeds"]))
    thread_mode = args.threads or ("1" if args.quick else "auto")
    sections = SECTIONS if args.only == "all" else (args.only,)
    impls = ("ours", "sb3") if sections == ("continuous",) else ("ours", "sb3", "original")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(budget["timeout"])
    start = time.perf_counter()

    print("benchmark: measuring, one subprocess at a time...", file=sys.stderr, flush=True)
    results = dict(quick=args.quick, only=args.only, seeds=seeds, budget=budget,
                   date=time.strftime("%Y-%m-%d %H:%M"),
                   machine=run("machine info", "machine_info"))
    results["threads"] = pick_threads(run, budget, thread_mode, impls)
    ours_threads = results["threads"]["ours"]["threads"]
    if "speed" in sections:
        results["raw_env"] = bench_raw_env(run, budget, ours_threads)
        results["our_speed"] = bench_our_speed(run, budget, ours_threads)
        results["original_rollout"] = run("original rollout", "measure_original_rollout",
                                          results["threads"]["original"]["threads"],
                                          steps=budget["original_rollout_steps"])
    if "cartpole" in sections:
        results["cartpole"] = bench_cartpole(run, budget, results["threads"], seeds)
    if "continuous" in sections:
        choice = continuous_env_choice(run, args.continuous_env)
        results["continuous"] = bench_continuous(run, budget, results["threads"], seeds, args.seeds, choice)
    results["total_wall_s"] = time.perf_counter() - start
    results["log"] = run.log
    write_results(summarize(results), out)


def summarize(results: dict) -> dict:
    """Adds the per-implementation summaries and the ratios to the raw measurements."""
    if "cartpole" in results:
        results["cartpole_summary"] = {impl: summarize_solve(runs) for impl, runs in results["cartpole"].items()}
    if "continuous" in results:
        cont = results["continuous"]
        cont["summary"] = {impl: summarize_fixed_budget(runs) for impl, runs in cont["runs"].items()}
    results["ratios"] = compute_ratios(results)
    return results


def write_results(results: dict, out: Path) -> None:
    text = markdown(results)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(finite(results), indent=1, default=str))
    plot(results, out / "bench.png")
    print(text)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'bench.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
