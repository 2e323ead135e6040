"""Envs written the way users write their own: a plain `__init__` with no `render_mode`
argument, no `metadata` of their own, no `spec` unless made through the registry, and
registered under this module's name, so that `gym.make("tests.user_envs:Corridor-v0")` and
`python train.py --env tests.user_envs:Corridor-v0` import this module to find them.

- `Corridor`: walk right along a corridor of 8 cells (one-hot position in a Box); +1 at the end,
  a step cost otherwise; 50 steps at most (truncation).
- `DiscreteCorridor`: the same walk with the position as a Discrete observation (FrozenLake's
  kind of space).
- `DictCorridor`: the same walk with a Dict observation: a small uint8 image of the corridor
  and the position as a Discrete entry.
- `RenderedCorridor`: the corridor with gymnasium's render API (`render_mode`, RGB frames).
- `TupleCorridor`: the same walk with a Tuple observation (a Discrete and a Box).
- `SlopeCorridor`: the same walk with a continuous action in [-1, 1]: its sign picks the way.
- `BrokenCorridor`: raises in its constructor in every process but the one that imported this
  module first (a simulator refusing a second connection), or always with `always=True`.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

LENGTH = 8


class Corridor(gym.Env):
    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(LENGTH,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0
        self.t = 0

    def observe(self):
        one_hot = np.zeros(LENGTH, dtype=np.float32)
        one_hot[self.position] = 1.0
        return one_hot

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.t = 0, 0
        return self.observe(), {}

    def step(self, action):
        self.position = max(0, min(LENGTH - 1, self.position + (1 if int(action) == 1 else -1)))
        self.t += 1
        terminated = self.position == LENGTH - 1
        reward = 1.0 if terminated else -0.01
        return self.observe(), reward, terminated, self.t >= 50, {}


class DiscreteCorridor(Corridor):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Discrete(LENGTH)

    def observe(self):
        return self.position


class DictCorridor(Corridor):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Dict(
            {
                "view": gym.spaces.Box(0, 255, shape=(36, 36, 1), dtype=np.uint8),
                "where": gym.spaces.Discrete(LENGTH),
            }
        )

    def observe(self):
        view = np.zeros((36, 36, 1), dtype=np.uint8)  # the Nature CNN's smallest frame
        view[:, 4 * self.position : 4 * self.position + 4] = 255
        return {"view": view, "where": self.position}


class RenderedCorridor(Corridor):
    """The corridor with gymnasium's render API: a `render_mode` argument and frames."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode=None):
        super().__init__()
        self.render_mode = render_mode

    def render(self):
        frame = np.zeros((16, 16 * LENGTH, 3), dtype=np.uint8)
        frame[:, 16 * self.position : 16 * self.position + 16] = (255, 200, 0)
        return frame


class TupleCorridor(Corridor):
    """The corridor with a Tuple observation: (position as a Discrete, one-hot Box)."""

    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Tuple(
            (gym.spaces.Discrete(LENGTH), gym.spaces.Box(0.0, 1.0, shape=(LENGTH,), dtype=np.float32))
        )

    def observe(self):
        return self.position, super().observe()


class SlopeCorridor(Corridor):
    """The corridor with a Box action: a positive action steps right, any other left."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)

    def step(self, action):
        return super().step(1 if float(np.asarray(action).reshape(-1)[0]) > 0 else 0)


IMPORTED_IN = os.getpid()


class BrokenCorridor(Corridor):
    def __init__(self, always: bool = False):
        if always or os.getpid() != IMPORTED_IN:
            raise ConnectionRefusedError("simulator at port 9000 refused the connection")
        super().__init__()


for _name in (
    "Corridor",
    "DiscreteCorridor",
    "DictCorridor",
    "RenderedCorridor",
    "TupleCorridor",
    "SlopeCorridor",
    "BrokenCorridor",
):
    gym.register(id=f"{_name}-v0", entry_point=f"{__name__}:{_name}")
