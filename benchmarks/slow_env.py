"""A CartPole whose step costs a fixed amount of CPU time: a stand-in for a simulator with an
expensive step, importable by worker processes (Ray actors, subprocess workers)."""

from __future__ import annotations

import time

import gymnasium as gym


class BusyStep(gym.Wrapper):
    """Spins the CPU for `step_seconds` on every step, as a physics step would."""

    def __init__(self, env: gym.Env, step_seconds: float):
        super().__init__(env)
        self.step_seconds = step_seconds

    def step(self, action):
        deadline = time.perf_counter() + self.step_seconds
        while time.perf_counter() < deadline:
            pass
        return self.env.step(action)


def make_slow_cartpole(step_seconds: float = 1e-3) -> gym.Env:
    return BusyStep(gym.make("CartPole-v1"), step_seconds)
