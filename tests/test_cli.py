"""train.py from the command line, in a subprocess: --help, a short run that leaves its run
folder, --resume that continues the step counter, --timeout, Ctrl-C, and play.py on the result."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, wait_for_rows

from AsyncTools.AsyncPPO import CHECKPOINT_FILE

pytestmark = pytest.mark.slow  # every test here starts train.py in a new process

ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
SMALL = [
    "--num-envs",
    "4",
    "--num-steps",
    "64",
    "--batch-size",
    "256",
    "--mini-batch-size",
    "128",
    "--backend",
    "loop",
    "--quiet",
]


def train(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "train.py",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(tmp_path / "weights"),
            *args,
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_folder(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def last_steps(run_dir: Path) -> int:
    with open(run_dir / "progress.csv", newline="") as handle:
        return int(list(csv.DictReader(handle))[-1]["steps"])


def test_help_lists_every_option_with_its_default():
    done = subprocess.run(
        [sys.executable, "train.py", "--help"],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(done.stdout.split())
    for option in (
        "--env",
        "--num-envs",
        "--steps",
        "--seed",
        "--lr",
        "--normalize-obs",
        "--normalize-reward",
        "--anneal-lr",
        "--use-rnd",
        "--resume",
        "--timeout",
        "--log-dir",
        "--checkpoint-every",
        "--quiet",
    ):
        assert option in text, option
    assert "(default: CartPole-v1)" in text and "(default: 150000)" in text


def test_short_run_then_resume_continues_the_step_counter(tmp_path):
    first = train(tmp_path, "--steps", "1024", "--normalize-obs", "--anneal-lr", *SMALL)
    assert first.returncode == 0, first.stderr
    run_dir = only_run_folder(tmp_path)
    assert f"run folder: {run_dir}" in first.stdout
    assert "steps; mean return of the last 4 episodes: " in first.stdout
    for name in (
        "progress.csv",
        "episodes.csv",
        CHECKPOINT_FILE,
        "learning_curve.png",
        "train_args.json",
        "weights/Policy_weights.pth",
    ):
        assert (run_dir / name).is_file(), name
    assert (tmp_path / "weights" / "Policy_weights.pth").is_file()
    steps_first = last_steps(run_dir)
    assert 1024 <= steps_first < 1024 + 256

    resumed = train(tmp_path, "--resume", str(run_dir), "--steps", "2048", "--quiet", "--lr", "0.5")
    assert resumed.returncode == 0, resumed.stderr
    assert "--resume: ignoring --lr 0.5: a resumed run keeps its own settings" in resumed.stderr
    assert only_run_folder(tmp_path) == run_dir  # the same folder, the same curve
    with open(run_dir / "progress.csv", newline="") as handle:
        steps = [int(row["steps"]) for row in csv.DictReader(handle)]
    assert steps == sorted(steps) and steps_first in steps and steps[-1] >= 2048
    state = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert state["runner"]["total_steps"] == steps[-1]
    assert json.loads((run_dir / "train_args.json").read_text())["normalize_obs"] is True


def test_timeout_stops_the_run(tmp_path):
    start = time.time()
    done = train(tmp_path, "--steps", "100000000", "--timeout", "2", *SMALL)
    assert done.returncode == 0, done.stderr
    assert time.time() - start < 120
    assert "trained" in done.stdout.strip().splitlines()[-1]
    assert 0 < last_steps(only_run_folder(tmp_path)) < 100_000_000


def test_resume_of_a_folder_without_settings_is_a_clear_error(tmp_path):
    done = train(tmp_path, "--resume", str(tmp_path))
    assert done.returncode != 0 and "train_args.json not found" in done.stderr


def test_ctrl_c_leaves_a_loadable_checkpoint_and_weights(tmp_path):
    process = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(tmp_path / "weights"),
            "--steps",
            "100000000",
            "--checkpoint-every",
            "0",
            *SMALL,
        ],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_rows(tmp_path / "runs")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=90)
    assert process.returncode == 130, err  # 128 + SIGINT: stopped by a signal, all saved
    assert "Traceback" not in err
    assert out.strip().splitlines()[-1].startswith("interrupted")
    run_dir = only_run_folder(tmp_path)
    state = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert state["runner"]["total_steps"] == last_steps(run_dir) > 0
    played = subprocess.run(
        [
            sys.executable,
            "play.py",
            "--weights",
            str(tmp_path / "weights"),
            "--env",
            "CartPole-v1",
            "--episodes",
            "2",
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert played.returncode == 0, played.stderr
    assert played.stdout.strip().splitlines()[-1].startswith("mean return")


def test_a_setting_that_does_not_fit_is_a_usage_error_without_traceback(tmp_path):
    done = train(tmp_path, "--num-envs", "0", "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "train.py: error: num_envs must be a positive integer, got 0" in done.stderr


def test_discrete_observations_are_one_hot_encoded(tmp_path):
    done = train(tmp_path, "--env", "FrozenLake-v1", "--steps", "512", "--quiet")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "train_args.json").read_text())["num_envs"] == 32
    from PPO import PPO

    assert PPO.load(tmp_path / "weights", device="cpu").observ_dim == 16  # one-hot of 16 cells


@pytest.mark.parametrize("flag", ["--save-dir", "--log-dir"])
def test_an_unwritable_output_folder_is_refused_before_training(tmp_path, flag):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--quiet",
            "--save-dir",
            str(tmp_path / "w"),
            "--log-dir",
            str(tmp_path / "runs"),
            flag,
            str(a_file),
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""  # refused at once: no run folder announced
    assert done.stderr == f"train.py: error: {flag} {a_file}: is a file, not a folder\n"
    beyond = subprocess.run(
        [sys.executable, "train.py", "--quiet", flag, "/proc/no-such-dir"],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert beyond.returncode == 2 and beyond.stderr.startswith(
        f"train.py: error: {flag} /proc/no-such-dir: cannot write there ("
    )
