"""Faults during a training run: SIGTERM and Ctrl-C (also with subprocess workers), a killed env
worker, a NaN reward, episodes that never end. Each ends in a clean stop or a clear error, in
bounded time, with the run's files saved and loadable."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, NanRewardAt, wait_for_rows

from AsyncTools.AsyncPPO import CHECKPOINT_FILE, AsyncPPO, ppo_for_env
from AsyncTools.evaluation import evaluate
from AsyncTools.vectorizer import EnvOutputError
from PPO import PPO
from PPO.checkpoint import load_state, non_finite_entries

ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
CLI = [
    sys.executable,
    "train.py",
    "--num-envs",
    "2",
    "--num-steps",
    "64",
    "--batch-size",
    "128",
    "--mini-batch-size",
    "64",
    "--steps",
    "100000000",
    "--checkpoint-every",
    "0",
    "--quiet",
]


def start(command: list[str], tmp_path: Path) -> subprocess.Popen:
    """Starts `command` in its own process group (as a terminal would run it)."""
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def assert_run_folder_saved(log_dir: Path) -> Path:
    (run_dir,) = log_dir.iterdir()
    state = load_state(run_dir / CHECKPOINT_FILE, torch.device("cpu"))
    assert state["runner"]["total_steps"] > 0 and not list(non_finite_entries(state))
    PPO.load(run_dir / "weights", device="cpu")
    return run_dir


# ------------------------------------------------------------------ stop signals
LIBRARY_RUN = """
import gymnasium as gym
from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
env = gym.make("CartPole-v1")
runner = AsyncPPO(env, ppo_for_env(env, seed=0, device="cpu", batch_size=256), num_envs=4,
                  steps=10**9, progress_bar=False, backend="loop", log_dir={log_dir!r},
                  checkpoint_every=0)
runner.run()
print(runner.stopped_by, runner.interrupted, runner.total_steps, flush=True)
"""


@pytest.mark.slow
def test_sigterm_stops_a_library_run_like_ctrl_c(tmp_path):
    log_dir = tmp_path / "runs"
    process = start([sys.executable, "-c", LIBRARY_RUN.format(log_dir=str(log_dir))], tmp_path)
    wait_for_rows(log_dir)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    stopped_by, interrupted, steps = out.split()[-3:]
    assert (stopped_by, interrupted) == ("SIGTERM", "True") and int(steps) > 0
    assert "interrupted by SIGTERM at step" in out
    assert_run_folder_saved(log_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_stop_signal_to_the_whole_group_with_subprocess_workers_exits_cleanly(tmp_path, name, code):
    """As a terminal's Ctrl-C or a scheduler's SIGTERM reach every process of the job: the
    workers ignore it, the main process saves everything and exits with 128 + the signal."""
    log_dir, save_dir = tmp_path / "runs", tmp_path / "weights"
    process = start(
        CLI + ["--backend", "subprocess", "--log-dir", str(log_dir), "--save-dir", str(save_dir)], tmp_path
    )
    wait_for_rows(log_dir)
    os.killpg(process.pid, getattr(signal, name))
    out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    assert out.strip().splitlines()[-1].startswith("interrupted")
    assert_run_folder_saved(log_dir)
    PPO.load(save_dir, device="cpu")


def worker_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_with_an_error_naming_it_and_keeps_the_checkpoint(tmp_path):
    log_dir = tmp_path / "runs"
    process = start(
        CLI + ["--backend", "subprocess", "--log-dir", str(log_dir), "--save-dir", str(tmp_path / "weights")],
        tmp_path,
    )
    wait_for_rows(log_dir)
    os.kill(worker_pids(process.pid)[-1], signal.SIGKILL)
    _, err = process.communicate(timeout=60)  # no hang in close()
    assert process.returncode == 1
    assert "EnvStepError: env copy" in err and "worker process died (killed by signal 9, SIGKILL)" in err
    assert_run_folder_saved(log_dir)  # the learner was fine: its state is saved


# ------------------------------------------------------------------ a bad reward
def runner_on(make_env, tmp_path: Path, **options) -> AsyncPPO:
    ppo = ppo_for_env(gym.make("CartPole-v1"), seed=0, device="cpu", batch_size=256, mini_batch_size=128)
    return AsyncPPO(
        make_env,
        ppo,
        num_envs=2,
        num_steps=64,
        steps=4096,
        progress_bar=False,
        backend="loop",
        log_dir=tmp_path,
        **options,
    )


def test_a_nan_reward_stops_the_run_naming_the_copy_and_the_step(tmp_path):
    copies = iter(range(2))
    runner = runner_on(
        lambda: NanRewardAt(gym.make("CartPole-v1"), 300 if next(copies) else 10**9),
        tmp_path,
        checkpoint_every=128,
    )
    with pytest.raises(
        EnvOutputError,
        match=r"env copy 1 of 2 returned reward nan at step (\d+) "
        r"\(vectorizer step count\)",
    ) as raised:
        runner.run()
    assert raised.value.env_index == 1
    # the copy's 300th step, counted with the steps that reset it after its earlier episodes
    assert 300 < int(re.search(r"at step (\d+)", str(raised.value)).group(1)) < 330
    assert not runner.ppo.non_finite_weights()
    assert_run_folder_saved(tmp_path)


def test_non_finite_rewards_zero_replaces_and_counts_them(tmp_path):
    runner = runner_on(lambda: NanRewardAt(gym.make("CartPole-v1"), 100), tmp_path, non_finite_rewards="zero")
    runner.run()
    assert runner.env.non_finite_rewards_replaced == 2
    assert not runner.ppo.non_finite_weights()


# ------------------------------------------------------------------ episodes that never end
class EndlessEnv(gym.Env):
    """An env whose episodes never end (no time limit)."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), {}

    def step(self, action):
        return self.np_random.uniform(-1, 1, 3).astype(np.float32), 1.0, False, False, {}


def endless_runner(**options) -> AsyncPPO:
    ppo = PPO(False, 3, 2, device="cpu", seed=0, batch_size=64, mini_batch_size=64)
    return AsyncPPO(
        EndlessEnv, ppo, num_envs=2, rollout="episodes", progress_bar=False, backend="loop", **options
    )


def test_episodes_rounds_cut_endless_episodes_at_the_cap_with_a_warning():
    runner = endless_runner(steps=300, episode_step_cap=100)
    with pytest.warns(
        RuntimeWarning,
        match=r"env copies \[0, 1\]: still running after "
        r"episode_step_cap=100 steps",
    ):
        runner.run()
    assert runner.episode_lengths == [100] * len(runner.episode_lengths)
    assert runner.total_steps == 200 * runner.rounds and runner.rounds == 2
    # Cut episodes are stored as truncated: their last state's value is bootstrapped.
    stats = runner.ppo.stats
    assert stats["num_samples"] == 200 and np.isfinite(stats["value_loss"])


@pytest.mark.slow
def test_run_timeout_ends_an_endless_episodes_round():
    runner = endless_runner(steps=10**9, episode_step_cap=10**8)
    started = time.perf_counter()
    runner.run(timeout=1.0)
    assert time.perf_counter() - started < 10
    assert runner.stopped_by == "timeout" and not runner.interrupted
    assert runner.rounds == 1 and runner.total_steps > 0
    assert runner.episode_returns == []  # episodes cut by the timeout did not finish


def test_evaluate_ends_an_endless_episode_at_its_cap():
    ppo = PPO(False, 3, 2, device="cpu", seed=0)
    with pytest.warns(
        RuntimeWarning, match="evaluation episode 1: still running after episode_step_cap=50 steps"
    ):
        returns = evaluate(ppo, EndlessEnv(), episodes=2, episode_step_cap=50)
    assert returns == [50.0, 50.0]


def test_episode_step_cap_must_be_positive():
    with pytest.raises(ValueError, match="episode_step_cap must be a positive integer, got 0"):
        endless_runner(steps=10, episode_step_cap=0)
