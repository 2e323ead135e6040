"""Faults around saved files: a save killed at a random point, a full disk, a learner that has
gone non-finite, simultaneous runs. Every file saved before the fault must still load, be
finite and be whole (never a mix of two saves)."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from AsyncTools.AsyncPPO import CHECKPOINT_FILE, AsyncPPO, new_run_folder, ppo_for_env
from PPO import PPO, persistence
from PPO.checkpoint import atomic_save, load_state, non_finite_entries, temporary_path
from PPO.checks import NonFiniteError

OBS_DIM = 4


def rnd_learner(seed: int) -> PPO:
    return PPO(False, OBS_DIM, 2, use_RND=True, normalize_obs=True, device="cpu", seed=seed)


def weights_of(ppo: PPO) -> dict[str, torch.Tensor]:
    state = persistence.weights_state(ppo)
    state.pop("config.json")
    return state


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ kills during a save
@pytest.mark.slow
def test_a_save_killed_at_random_points_leaves_one_whole_save(tmp_path):
    """A child process saves two different RND learners in turn as fast as it can and is
    SIGKILLed at random moments, 24 times: what is on disk always loads as one of the two
    learners, policy and RND together, never a mix or a corrupt file."""
    learners = [rnd_learner(1), rnd_learner(2)]
    for ppo in learners:  # make the observation statistics differ too
        ppo.policy.obs_normalizer.update(torch.randn(64, OBS_DIM) * (ppo.seed + 1))
    expected = [weights_of(ppo) for ppo in learners]
    assert not same_weights(*expected)
    folder = tmp_path / "weights"
    learners[0].save_weights(folder)
    rng = random.Random(0)
    for _ in range(24):
        pid = os.fork()
        if pid == 0:  # the child: save, alternating, until killed
            try:
                for k in range(10**9):
                    learners[k % 2].save_weights(folder)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.01, 0.25))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        loaded = weights_of(PPO.load(folder, device="cpu"))
        assert any(same_weights(loaded, e) for e in expected), "a mixed or altered save"
    # Killed saves leave temporaries; the next save removes those of dead processes.
    learners[1].save_weights(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["Policy_weights.pth"]


def test_temporaries_of_running_processes_and_other_hosts_are_kept(tmp_path):
    file = tmp_path / "state.pth"
    mine = temporary_path(file)
    mine.write_bytes(b"being written")  # this process is alive: its save is under way
    other_host = tmp_path / f".{file.name}.1@some-other-host.abcd.tmp"
    other_host.write_bytes(b"another machine's save")
    atomic_save({"x": torch.ones(2)}, file)
    assert mine.exists() and other_host.exists()
    assert torch.equal(load_state(file, torch.device("cpu"))["x"], torch.ones(2))


# ------------------------------------------------------------------ non-finite learners
def test_atomic_save_refuses_non_finite_tensors_and_keeps_the_old_file(tmp_path):
    file = tmp_path / "state.pth"
    atomic_save({"w": torch.ones(3), "nested": {"m": [torch.zeros(2)]}}, file)
    before = file.read_bytes()
    with pytest.raises(NonFiniteError, match=r"nested\.m\[0\]"):
        atomic_save({"w": torch.ones(3), "nested": {"m": [torch.tensor([0.0, float("nan")])]}}, file)
    assert file.read_bytes() == before
    assert list(non_finite_entries({"ints": torch.arange(3), "inf": torch.tensor([float("inf")])})) == ["inf"]


def test_save_weights_refuses_a_non_finite_learner(tmp_path):
    ppo = PPO(False, OBS_DIM, 2, device="cpu", seed=0)
    ppo.save_weights(tmp_path)
    before = (tmp_path / "Policy_weights.pth").read_bytes()
    with torch.no_grad():
        ppo.policy.actor[0].weight[0, 0] = float("nan")
    assert ppo.non_finite_weights() == ["actor.0.weight"]
    with pytest.raises(NonFiniteError, match="actor.0.weight"):
        ppo.save_weights(tmp_path)
    assert (tmp_path / "Policy_weights.pth").read_bytes() == before


def fill_memory(ppo: PPO, rewards: np.ndarray) -> None:
    n = len(rewards)
    ppo.memory.add_trajectories(
        states=np.random.default_rng(0).normal(size=(n, OBS_DIM)).astype(np.float32),
        actions=np.zeros(n, np.int64),
        rewards=rewards.astype(np.float32),
        terminated=np.eye(1, n, n - 1, dtype=bool)[0],
        truncated=np.zeros(n, bool),
        final_states=np.zeros((1, OBS_DIM), np.float32),
    )


def test_learn_refuses_non_finite_rewards_and_leaves_the_learner_unchanged():
    ppo = PPO(False, OBS_DIM, 2, device="cpu", seed=0, batch_size=64, mini_batch_size=32)
    before = weights_of(ppo)
    rewards = np.ones(64)
    rewards[[5, 9]] = [np.nan, np.inf]
    fill_memory(ppo, rewards)
    with pytest.raises(NonFiniteError, match=r"rewards: 2 of the batch's 64 steps .*rows \[5, 9\]"):
        ppo.learn()
    assert same_weights(weights_of(ppo), before)


def test_an_update_that_diverges_raises_and_names_the_losses():
    """Finite but huge rewards overflow the returns to inf: the update's losses go non-finite."""
    ppo = PPO(
        False, OBS_DIM, 2, device="cpu", seed=0, batch_size=64, mini_batch_size=32, normalize_reward=False
    )
    fill_memory(ppo, np.full(64, 3e38))
    with pytest.raises(NonFiniteError, match=r"the update diverged \(policy_loss=.*value_loss=(inf|nan)"):
        ppo.learn()


class RewardSwitch(gym.Wrapper):
    """Pays `switch["reward"]` instead of the env's reward while it is set."""

    def __init__(self, env: gym.Env, switch: dict):
        super().__init__(env)
        self.switch = switch

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, self.switch.get("reward", reward), terminated, truncated, info


def small_runner(env, log_dir: Path, steps: int, **options) -> AsyncPPO:
    ppo = ppo_for_env(
        gym.make("CartPole-v1"),
        seed=0,
        device="cpu",
        batch_size=256,
        mini_batch_size=128,
        normalize_reward=False,
    )  # raw rewards: they can overflow
    return AsyncPPO(
        env,
        ppo,
        num_envs=4,
        num_steps=64,
        steps=steps,
        progress_bar=False,
        backend="loop",
        log_dir=log_dir,
        **options,
    )


def test_a_diverged_run_stops_with_an_error_and_keeps_the_saved_files(tmp_path):
    switch: dict = {}
    runner = small_runner(lambda: RewardSwitch(gym.make("CartPole-v1"), switch), tmp_path, 1024)
    runner.run()
    saved = {
        f: f.read_bytes()
        for f in (runner.run_dir / CHECKPOINT_FILE, runner.run_dir / "weights" / "Policy_weights.pth")
    }
    switch["reward"] = 3e38
    runner.steps = 4096
    with pytest.raises(NonFiniteError, match="nothing is saved over earlier files"):
        runner.run()
    assert runner.ppo.non_finite_weights()
    for file, content in saved.items():
        assert file.read_bytes() == content, f"{file.name} was overwritten"
    checkpoint = load_state(runner.run_dir / CHECKPOINT_FILE, torch.device("cpu"))
    assert not list(non_finite_entries(checkpoint))
    assert not PPO.load(runner.run_dir / "weights", device="cpu").non_finite_weights()


# ------------------------------------------------------------------ a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs mounted under tmp_path (needs root, as CI has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(disk: Path) -> None:
    with open(disk / "filler", "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC


def test_a_full_disk_gives_one_readable_error_and_keeps_the_checkpoint(small_disk):
    runner = small_runner(gym.make("CartPole-v1"), small_disk, 512)
    runner.run()
    checkpoint, steps_saved = runner.run_dir / CHECKPOINT_FILE, runner.total_steps
    before = checkpoint.read_bytes()
    fill(small_disk)
    runner.steps = 2048
    with pytest.raises(OSError) as raised:
        runner.run()
    assert raised.value.errno == errno.ENOSPC
    assert str(runner.run_dir) in str(raised.value)
    assert checkpoint.read_bytes() == before
    assert load_state(checkpoint, torch.device("cpu"))["runner"]["total_steps"] == steps_saved
    assert not list(small_disk.rglob("*.tmp"))


def test_atomic_save_on_a_full_disk_names_the_file(small_disk):
    file = small_disk / "state.pth"
    atomic_save({"x": torch.zeros(10)}, file)
    fill(small_disk)
    with pytest.raises(OSError, match="could not write .*state.pth") as raised:
        atomic_save({"x": torch.zeros(100_000)}, file)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(file)
    assert torch.equal(load_state(file, torch.device("cpu"))["x"], torch.zeros(10))


# ------------------------------------------------------------------ simultaneous runs
def test_run_folders_are_unique_for_the_same_name(tmp_path):
    folders: list[Path] = []
    threads = [
        threading.Thread(target=lambda: folders.append(new_run_folder(tmp_path, "run"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(f.name for f in folders) == ["run"] + [f"run-{k}" for k in range(1, 8)]


@pytest.mark.slow
def test_two_cli_runs_started_together_keep_their_own_folders(tmp_path):
    command = [
        sys.executable,
        "train.py",
        "--log-dir",
        str(tmp_path / "runs"),
        "--steps",
        "512",
        "--num-envs",
        "4",
        "--num-steps",
        "64",
        "--batch-size",
        "256",
        "--backend",
        "loop",
        "--quiet",
        "--seed",
        "3",
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    runs = [
        subprocess.Popen(
            command + ["--save-dir", str(tmp_path / f"weights{k}")],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=180)
        assert run.returncode == 0, err
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2
    for folder in folders:
        lines = (folder / "progress.csv").read_text().splitlines()
        assert lines[0].startswith("steps,") and not any(row.startswith("steps,") for row in lines[1:])
        assert (folder / "train_args.json").is_file() and (folder / CHECKPOINT_FILE).is_file()


@pytest.mark.slow
def test_the_cli_says_when_it_replaces_weights_from_an_earlier_run(tmp_path):
    command = [
        sys.executable,
        "train.py",
        "--log-dir",
        str(tmp_path / "runs"),
        "--steps",
        "256",
        "--num-envs",
        "4",
        "--num-steps",
        "64",
        "--batch-size",
        "256",
        "--backend",
        "loop",
        "--quiet",
        "--save-dir",
        str(tmp_path / "weights"),
    ]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    first = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0 and "replacing" not in first.stderr
    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0
    assert f"replacing the weights in {tmp_path / 'weights'}" in second.stderr
