"""Faulty envs and workers: a killed or failing subprocess worker, Ctrl-C, and env outputs of
the wrong shape or not finite all end in a named error (never a hang), and close() returns."""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import call_with_deadline, wait_for_file

from AsyncTools.vectorizer import EnvOutputError, EnvStepError, EnvVectorizer

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


# ------------------------------------------------------------------------------- envs
class FaultyCartPole(gym.Wrapper):
    """CartPole that misbehaves once, in the copy first reset with `bad_seed` (every copy if
    None): at reset (`at_step=0`) or on its `at_step`-th step it returns, as `fault` says, a
    NaN reward ('nan_reward'), a reward of shape (1,) ('array_reward', 'list_reward'), or an
    observation of shape (3,) instead of (4,) ('short_observation')."""

    def __init__(self, env: gym.Env, fault: str, bad_seed: int | None, at_step: int):
        super().__init__(env)
        self.fault, self.bad_seed, self.at_step = fault, bad_seed, at_step
        self.chosen, self.t = False, 0

    def reset(self, *, seed=None, options=None):
        if seed is not None:  # only the first reset is seeded: it says which copy this is
            self.chosen = self.bad_seed is None or seed == self.bad_seed
        self.t = 0
        observation, info = self.env.reset(seed=seed, options=options)
        if self.chosen and self.at_step == 0 and self.fault == "short_observation":
            observation = observation[:3]
        return observation, info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.chosen and self.t == self.at_step:
            if self.fault == "nan_reward":
                reward = float("nan")
            elif self.fault == "array_reward":
                reward = np.array([reward])
            elif self.fault == "list_reward":
                reward = [reward]
            elif self.fault == "short_observation":
                observation = observation[:3]
        return observation, reward, terminated, truncated, info


def make_faulty_cartpole(fault: str, bad_seed: int | None, at_step: int) -> gym.Env:
    return FaultyCartPole(gym.make("CartPole-v1"), fault, bad_seed, at_step)


def make_cartpole_failing_in_worker_1() -> gym.Env:
    """CartPole, except in the subprocess worker of copy 1 (gymnasium names it '...-1')."""
    if multiprocessing.current_process().name.endswith("-1"):
        raise RuntimeError("no simulator licence in worker 1")
    return gym.make("CartPole-v1")


class SlowStep(gym.Wrapper):
    """A CartPole whose step takes `seconds`; with `started_file`, each step first creates that
    file, so a test can wait for a step to be under way instead of guessing with a sleep."""

    def __init__(self, env: gym.Env, seconds: float, started_file: str | None = None):
        super().__init__(env)
        self.seconds, self.started_file = seconds, started_file

    def step(self, action):
        if self.started_file is not None:
            Path(self.started_file).touch()
        time.sleep(self.seconds)
        return self.env.step(action)


def make_slow_cartpole(seconds: float, started_file: str | None = None) -> gym.Env:
    return SlowStep(gym.make("CartPole-v1"), seconds, started_file)


# ---------------------------------------------------------------------------- helpers
def run_within(seconds: float, fn):
    """fn() in a daemon thread: returns its result or raises its exception here; fails the
    test if it has not returned after `seconds`."""
    finished, error, result = call_with_deadline(fn, seconds)
    assert finished, f"{fn} did not return within {seconds} s"
    if error is not None:
        raise error
    return result


def close_within(vec: EnvVectorizer, seconds: float = 10.0) -> float:
    """Closes `vec`, failing the test if that takes over `seconds`; returns the time taken.
    Kills any worker still running afterwards, so a failing test leaves none behind."""
    start = time.monotonic()
    try:
        run_within(seconds, vec.close)
    finally:
        if hasattr(vec.backend, "vector_env") and hasattr(vec.backend.vector_env, "processes"):
            for process in vec.backend.vector_env.processes:
                if process.is_alive():
                    process.kill()
    return time.monotonic() - start


def zeros(num_envs: int) -> np.ndarray:
    return np.zeros(num_envs, dtype=np.int64)


# ------------------------------------------------------------------ dead worker
@pytest.mark.parametrize("call", ["step_autoreset", "step", "reset"])
def test_killed_worker_is_named_and_close_returns(call):
    vec = EnvVectorizer(gym.make("CartPole-v1"), 3, seed=0, backend="subprocess")
    try:
        vec.reset()
        vec.step_autoreset(zeros(3))
        worker = vec.backend.vector_env.processes[1]
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(10)
        method = vec.reset if call == "reset" else lambda: getattr(vec, call)(zeros(3))
        with pytest.raises(EnvStepError) as info:
            run_within(30, method)
        assert info.value.env_index == 1
        message = str(info.value)
        assert "env copy 1 of 3" in message and "worker process died" in message
        assert "signal 9" in message and "SIGKILL" in message
        with pytest.raises(EnvStepError, match="env copy 1 of 3: its worker process died"):
            run_within(30, lambda: vec.step_autoreset(zeros(3)))  # and again, not a hang
    finally:
        assert close_within(vec) < 10
    vec.close()  # a second close does nothing
    assert not any(process.is_alive() for process in vec.backend.vector_env.processes)


@pytest.mark.slow
def test_worker_killed_while_it_steps():
    vec = EnvVectorizer(functools.partial(make_slow_cartpole, 1.0), 2, seed=0, backend="subprocess")
    try:
        vec.reset()
        pid = vec.backend.vector_env.processes[0].pid
        threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
        with pytest.raises(EnvStepError) as info:
            run_within(30, lambda: vec.step_autoreset(zeros(2)))
        assert info.value.env_index == 0
        assert "env copy 0 of 2: its worker process died (killed by signal 9, SIGKILL)" in str(info.value)
    finally:
        assert close_within(vec) < 10


# ------------------------------------------------------------- worker start-up
def test_constructor_failing_in_one_worker_names_the_copy():
    vec = EnvVectorizer(make_cartpole_failing_in_worker_1, 3, seed=0, backend="subprocess")
    try:
        with pytest.raises(EnvStepError) as info:
            run_within(30, vec.reset)
        error = info.value
        assert type(error) is EnvStepError and error.env_index == 1
        message = str(error)
        assert "env copy 1 of 3" in message and "could not be made" in message
        assert "RuntimeError: no simulator licence in worker 1" in message
        assert "Traceback" in message and "make_cartpole_failing_in_worker_1" in message
    finally:
        assert close_within(vec) < 10


# -------------------------------------------------------------------- signals
def test_workers_ignore_sigint_and_sigterm():
    vec = EnvVectorizer(gym.make("CartPole-v1"), 2, seed=0, backend="subprocess")
    try:
        vec.reset()
        processes = vec.backend.vector_env.processes
        os.kill(processes[0].pid, signal.SIGINT)
        os.kill(processes[1].pid, signal.SIGTERM)
        time.sleep(0.3)
        assert all(process.is_alive() for process in processes)
        for _ in range(5):
            states, rewards, *_ = run_within(30, lambda: vec.step_autoreset(zeros(2)))
            assert states.shape == (2, 4) and rewards.shape == (2,)
    finally:
        assert close_within(vec) < 10
    assert [process.exitcode for process in processes] == [0, 0]  # closed, not killed


CTRL_C_CHILD = f"""
import functools, signal, sys, time
# Ctrl-C raises KeyboardInterrupt, as in a terminal, even where this test runs in a background
# job, whose processes start with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path[:0] = [{str(REPO_ROOT)!r}, {str(TESTS_DIR)!r}]
import numpy as np
from AsyncTools.vectorizer import EnvVectorizer
from test_faults_env import make_slow_cartpole
vec = EnvVectorizer(functools.partial(make_slow_cartpole, 3.0, sys.argv[1]), 2, seed=0,
                    backend="subprocess")
vec.reset()
print("stepping", flush=True)
try:
    vec.step_autoreset(np.zeros(2, dtype=np.int64))
    print("not interrupted")
except KeyboardInterrupt:
    print("interrupted")
start = time.monotonic()
vec.close()
vec.close()
print(f"closed in {{time.monotonic() - start:.2f}} s")
print("exit codes", [p.exitcode for p in vec.backend.vector_env.processes])
"""


@pytest.mark.slow
def test_ctrl_c_mid_step_interrupts_the_main_process_only_and_close_returns(tmp_path):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it, once the workers'
    (3 s) step is under way."""
    started = tmp_path / "step-started"
    child = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_CHILD, str(started)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout.readline().strip() == "stepping"
        wait_for_file(started)
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert child.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "interrupted", out
    assert float(lines[1].split()[2]) < 10, out
    assert lines[2] == "exit codes [0, 0]", out  # the workers finished and closed


# ------------------------------------------------------------------ env outputs
@pytest.mark.parametrize("backend", ["loop", "subprocess"])
def test_nan_reward_names_copy_and_step(backend):
    # seed 10: copies get seeds 10, 11, 12; copy 2 returns a NaN reward on its third step.
    vec = EnvVectorizer(
        functools.partial(make_faulty_cartpole, "nan_reward", 12, 3), 3, seed=10, backend=backend
    )
    try:
        vec.reset()
        for _ in range(2):
            assert np.isfinite(vec.step_autoreset(zeros(3))[1]).all()
        with pytest.raises(EnvOutputError) as info:
            run_within(30, lambda: vec.step_autoreset(zeros(3)))
        error = info.value
        assert isinstance(error, EnvStepError) and isinstance(error, ValueError)
        assert error.env_index == 2
        assert "env copy 2 of 3 returned reward nan at step 3 (vectorizer step count)" in str(error)
    finally:
        close_within(vec)


@pytest.mark.parametrize("backend", ["loop", "subprocess"])
def test_zero_option_replaces_and_counts_non_finite_rewards(backend):
    vec = EnvVectorizer(
        functools.partial(make_faulty_cartpole, "nan_reward", 12, 3),
        3,
        seed=10,
        backend=backend,
        non_finite_rewards="zero",
    )
    try:
        vec.reset()
        rewards = [vec.step(zeros(3))[1].tolist() for _ in range(4)]
        assert rewards[2] == [1.0, 1.0, 0.0]
        assert rewards[0] == rewards[1] == rewards[3] == [1.0, 1.0, 1.0]
        assert vec.non_finite_rewards_replaced == 1 and vec.step_count == 4
    finally:
        close_within(vec)


@pytest.mark.parametrize("fault", ["array_reward", "list_reward"])
@pytest.mark.parametrize("backend", ["loop", "subprocess"])
def test_reward_of_shape_1_names_the_copy(backend, fault):
    vec = EnvVectorizer(functools.partial(make_faulty_cartpole, fault, 11, 2), 3, seed=10, backend=backend)
    try:
        vec.reset()
        vec.step_autoreset(zeros(3))
        with pytest.raises(EnvOutputError) as info:
            run_within(30, lambda: vec.step_autoreset(zeros(3)))
        assert info.value.env_index == 1
        assert "env copy 1 of 3 returned a reward of shape (1,)" in str(info.value)
    finally:
        close_within(vec)


@pytest.mark.parametrize("backend", ["loop", "subprocess"])
@pytest.mark.parametrize("at_step, method", [(0, "reset"), (2, "step")])
def test_observation_of_the_wrong_shape_names_the_copy(backend, at_step, method):
    vec = EnvVectorizer(
        functools.partial(make_faulty_cartpole, "short_observation", 11, at_step), 3, seed=10, backend=backend
    )
    try:
        with pytest.raises(EnvOutputError) as info:
            run_within(30, vec.reset)
            for _ in range(at_step):
                run_within(30, lambda: vec.step(zeros(3)))
        assert info.value.env_index == 1
        message = str(info.value)
        assert f"env copy 1 of 3 returned an observation of shape (3,) from {method}()" in message
        assert "has shape (4,)" in message and "Box(" in message
    finally:
        close_within(vec)


def test_every_copy_returning_the_wrong_shape_names_the_first():
    vec = EnvVectorizer(functools.partial(make_faulty_cartpole, "short_observation", None, 1), 2, seed=0)
    vec.reset()
    with pytest.raises(EnvOutputError, match=r"env copy 0 of 2 .* shape \(3,\) from step\(\)"):
        vec.step_autoreset(zeros(2))
    vec.close()


def test_non_finite_observation_is_an_env_output_error():
    class NanObservation(gym.ObservationWrapper):
        def observation(self, observation):
            return np.full_like(observation, np.nan)

    vec = EnvVectorizer(lambda: NanObservation(gym.make("CartPole-v1")), 2, seed=0)
    with pytest.raises(EnvOutputError, match="non-finite observations from reset") as info:
        vec.reset()
    assert info.value.env_index == 0 and "env copies [0, 1] of 2" in str(info.value)
    vec.close()


@pytest.mark.parametrize("value", ["ignore", "Zero", "", None, 0])
def test_invalid_non_finite_rewards_option(value):
    with pytest.raises(ValueError, match="non_finite_rewards") as info:
        EnvVectorizer(gym.make("CartPole-v1"), 2, non_finite_rewards=value)
    message = str(info.value)
    assert "'raise'" in message and "'zero'" in message and repr(value) in message


def test_native_backend_runs_the_checks_and_counts_steps():
    vec = EnvVectorizer(gym.make("CartPole-v1"), 4, seed=0, backend="native")
    try:
        assert vec.reset()[0].shape == (4, 4)
        for _ in range(20):
            rewards = vec.step_autoreset(zeros(4))[1]
            assert rewards.dtype == np.float32 and np.isfinite(rewards).all()
        assert vec.step_count == 20 and vec.non_finite_rewards_replaced == 0
    finally:
        vec.close()
    vec.close()


def make_env_that_kills_its_process() -> gym.Env:
    """Exits the process it is built in (a crash no Python error reports), unless it is this
    test's own process."""
    if multiprocessing.current_process().name != "MainProcess":
        os._exit(3)
    return gym.make("CartPole-v1")


@pytest.mark.slow
def test_a_worker_that_dies_while_starting_is_an_env_step_error():
    with pytest.raises(
        EnvStepError,
        match=r"a subprocess worker of the 2 env copies died while "
        r"starting \((EOFError|ConnectionResetError|BrokenPipeError)\)",
    ):
        EnvVectorizer(make_env_that_kills_its_process, 2, seed=0, backend="subprocess")
