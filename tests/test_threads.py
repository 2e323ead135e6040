"""The CPU learner's choice of torch threads: 1 for vector policies, a few for CNNs, and the
user's own choice (num_threads=, torch.set_num_threads after importing PPO, OMP_NUM_THREADS)
respected. Each case runs in a fresh process: the thread count is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

SCRIPT = """
import torch
print(torch.get_num_threads(), torch.get_num_threads())
from PPO import PPO
{before}
vector = PPO(False, 4, 2, device="cpu"{options})
print(vector.num_threads, torch.get_num_threads())
image = PPO(False, 4 * 84 * 84, 2, observation_shape=(4, 84, 84), device="cpu"{options})
print(image.num_threads, torch.get_num_threads())
"""


def thread_counts(before: str = "", options: str = "", **environment: str) -> list[tuple[int, int]]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env.update(environment, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(before=before, options=options)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(map(int, line.split())) for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_one_thread_for_vector_policies_and_a_few_for_cnns():
    cnn_threads = max(1, min(4, (os.cpu_count() or 1) // 4))
    assert thread_counts()[1:] == [(1, 1), (cnn_threads, cnn_threads)]


@pytest.mark.slow
def test_num_threads_is_used_as_given():
    assert thread_counts(options=", num_threads=3")[1:] == [(3, 3), (3, 3)]


@pytest.mark.slow
def test_the_users_own_setting_stands():
    assert thread_counts(before="torch.set_num_threads(3)")[1:] == [(3, 3), (3, 3)]
    torchs_own, *chosen = thread_counts(OMP_NUM_THREADS="3")  # torch reads it (and may cap it)
    assert chosen == [torchs_own, torchs_own]


def test_num_threads_must_be_positive():
    from PPO import PPO

    with pytest.raises(ValueError, match="num_threads must be a positive integer, got 0"):
        PPO(False, 4, 2, device="cpu", num_threads=0)
