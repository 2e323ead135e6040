"""Shared fixtures and tiny deterministic gymnasium envs for the test suite.

The envs are plain Python classes (no registration): pass an instance, or a factory, to
`EnvVectorizer` / `AsyncPPO`.
"""

from __future__ import annotations

import importlib.util
import itertools
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit

REPO_ROOT = Path(__file__).resolve().parents[1]

import PPO  # noqa: E402,F401  (first, so that the setting below is the user's own: it stands)

# Small, deterministic CPU runs: one intra-op thread keeps float reductions reproducible and
# avoids oversubscription when several test processes share the machine. Set after importing
# PPO, it counts as the user's choice, which learners keep (tests/test_threads.py checks the
# learner's own choice in fresh processes).
torch.set_num_threads(1)


class CounterEnv(gym.Env):
    """Deterministic counter. Observation after t steps: [offset + t, last action as float].

    Reward of step t is `offset + t` (so every reward says which env and which step it came
    from). With `episode_length` set the episode *terminates* after that many steps; with
    `episode_length=None` it never ends by itself (wrap it in TimeLimit to truncate it).
    """

    metadata: dict = {"render_modes": []}

    def __init__(self, episode_length: int | None = 5, offset: float = 0.0):
        self.episode_length = episode_length
        self.offset = float(offset)
        self.observation_space = gym.spaces.Box(-1e6, 1e6, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.received_actions: list = []

    def _obs(self, action: float = 0.0) -> np.ndarray:
        return np.array([self.offset + self.t, float(action)], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"t": 0}

    def step(self, action):
        self.received_actions.append(action)
        self.t += 1
        terminated = self.episode_length is not None and self.t >= self.episode_length
        return self._obs(action), float(self.offset + self.t), bool(terminated), False, {"t": self.t}


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance (2 CPUs, no dashboard) for a whole test file; skips without Ray."""
    ray = pytest.importorskip("ray")
    from AsyncTools.ray_backend import init_local_ray

    init_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def take_flat(memory) -> SimpleNamespace:
    """Empties a PPO Memory into the flat layout (every copy's transitions laid end to end,
    copy 0 first; `Rollout.trajectories`), as tensors: the easiest layout to check by hand."""
    flat = memory.take().trajectories()
    return SimpleNamespace(**{name: torch.from_numpy(value) for name, value in flat.items()})


def make_counter_env(length: int = 5, end: str = "terminate", offset: float = 0.0) -> gym.Env:
    """A CounterEnv whose episode lasts `length` steps and ends by termination (`end=
    'terminate'`), by a TimeLimit truncation (`end='truncate'`), or both at once (`'both'`)."""
    if end == "terminate":
        return CounterEnv(length, offset)
    if end == "truncate":
        return TimeLimit(CounterEnv(None, offset), max_episode_steps=length)
    if end == "both":
        return TimeLimit(CounterEnv(length, offset), max_episode_steps=length)
    raise ValueError(f"end must be 'terminate', 'truncate' or 'both', got {end!r}")


def counter_factory(specs):
    """A factory for EnvVectorizer: the i-th call builds `make_counter_env(*specs[i])` with
    offset 100 * i, so observations and rewards identify the env copy."""
    calls = itertools.count()

    def make() -> gym.Env:
        i = next(calls)
        length, end = specs[i]
        return make_counter_env(length, end, offset=100.0 * i)

    return make


class RandomResetEnv(gym.Env):
    """Reset observation drawn from `self.np_random`: differs between copies iff their RNGs do."""

    metadata: dict = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(size=3).astype(np.float32), {}

    def step(self, action):
        obs = self.np_random.uniform(size=3).astype(np.float32)
        return obs, float(self.np_random.uniform()), False, False, {}


class NanRewardAt(gym.Wrapper):
    """Returns a NaN reward at its `at`-th step."""

    def __init__(self, env: gym.Env, at: int):
        super().__init__(env)
        self.at, self.steps = at, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, (float("nan") if self.steps == self.at else reward), terminated, truncated, info


class RaisingEnv(CounterEnv):
    """A counter that raises ValueError('boom') in the step after `k` successful steps."""

    def __init__(self, k: int = 2):
        super().__init__(episode_length=None)
        self.k = k

    def step(self, action):
        if self.t >= self.k:
            raise ValueError("boom")
        return super().step(action)


class ActionRecorderEnv(gym.Env):
    """Continuous actions in [low, high]; records a copy of every action it receives."""

    metadata: dict = {"render_modes": []}

    def __init__(self, low=(-1.0, 0.0), high=(1.0, 2.0), episode_length: int = 3):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(
            np.array(low, dtype=np.float32), np.array(high, dtype=np.float32), dtype=np.float32
        )
        self.episode_length = episode_length
        self.received: list[np.ndarray] = []
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        self.received.append(np.array(action, copy=True))
        self.t += 1
        obs = np.full(2, self.t, dtype=np.float32)
        return obs, -float(np.sum(np.square(action))), self.t >= self.episode_length, False, {}


class NonFiniteEnv(CounterEnv):
    """A counter whose observation becomes NaN at step `nan_at` (0 = already at reset)."""

    def __init__(self, nan_at: int = 1):
        super().__init__(episode_length=None)
        self.nan_at = nan_at

    def _obs(self, action: float = 0.0) -> np.ndarray:
        obs = super()._obs(action)
        if self.t >= self.nan_at:
            obs[0] = np.nan
        return obs


class DictObsEnv(gym.Env):
    """An env with a Dict observation space of one Box entry (AsyncPPO flattens it)."""

    metadata: dict = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Dict(
            {"x": gym.spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)}
        )
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"x": np.zeros(4, dtype=np.float32)}, {}

    def step(self, action):
        return {"x": np.zeros(4, dtype=np.float32)}, 0.0, True, False, {}


@pytest.fixture
def cartpole():
    env = gym.make("CartPole-v1")
    yield env
    env.close()


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


def load_benchmark(name: str) -> ModuleType:
    """The script benchmarks/NAME.py, loaded by its path (benchmarks/ is not a package import
    the tests rely on)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RaiseOnSeedEnv(CounterEnv):
    """A never-ending counter that raises ValueError('boom') in only one copy: the one whose
    first reset got seed `raise_seed` (EnvVectorizer seeds copy i with seed + i).

    `raise_in="step"`: that copy raises on the step after `k` successful steps;
    `raise_in="reset"`: it raises in that seeded reset. Module-level (importable as `conftest`)
    and built by a picklable factory, so it also works in spawned subprocess workers.
    """

    def __init__(self, raise_seed: int, k: int = 2, raise_in: str = "step"):
        super().__init__(episode_length=None)
        self.raise_seed, self.k, self.raise_in = raise_seed, k, raise_in
        self.armed = False

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.armed = seed == self.raise_seed
            if self.armed and self.raise_in == "reset":
                raise ValueError("boom")
        return super().reset(seed=seed, options=options)

    def step(self, action):
        if self.armed and self.raise_in == "step" and self.t >= self.k:
            raise ValueError("boom")
        return super().step(action)


def make_raise_on_seed_env(raise_seed: int, k: int = 2, raise_in: str = "step") -> gym.Env:
    """Factory for RaiseOnSeedEnv; use `functools.partial(make_raise_on_seed_env, ...)`."""
    return RaiseOnSeedEnv(raise_seed, k, raise_in)


def rows_logged(log_dir: Path) -> int:
    """Data rows in the progress.csv of the run folder under `log_dir` (0 if none yet)."""
    files = list(Path(log_dir).glob("*/progress.csv"))
    return max(0, len(files[0].read_text().splitlines()) - 1) if files else 0


def wait_for_rows(log_dir: Path, rows: int = 2, seconds: float = 120) -> None:
    """Waits until the run under `log_dir` has logged `rows` rounds (an event, not a guess)."""
    deadline = time.monotonic() + seconds
    while rows_logged(log_dir) < rows:
        assert time.monotonic() < deadline, f"no {rows} progress rows in {seconds} s"
        time.sleep(0.05)


def wait_for_file(file: Path, seconds: float = 60) -> None:
    """Waits until `file` exists (tests' envs create one to say that a step is under way)."""
    deadline = time.monotonic() + seconds
    while not file.exists():
        assert time.monotonic() < deadline, f"{file} did not appear within {seconds} s"
        time.sleep(0.01)


def call_with_deadline(fn, seconds: float = 30.0) -> tuple[bool, BaseException | None, object]:
    """Runs `fn` in a daemon thread for at most `seconds`; returns (finished, the exception it
    raised or None, its result)."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), outcome.get("error"), outcome.get("result")
