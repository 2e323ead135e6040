"""Dict observations holding an image: flattened by a documented rule (AsyncTools.envs.
FlattenParts), the image going to a CNN and the rest to the MLP heads (PPO's
`observation_parts`), saved, loaded and exported with the layout; and a policy that can only
act well by looking at the image learns to."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.envs import FlattenParts, flattened_parts
from PPO import PPO

SIDE = 36  # the smallest frame the Nature CNN takes


class LightSwitchEnv(gym.Env):
    """Each step shows a camera frame that is dark or bright and a 2-number noise reading;
    action 1 earns 1 on a bright frame, action 0 on a dark one. 16 steps an episode."""

    def __init__(self):
        self.observation_space = gym.spaces.Dict(
            {
                "noise": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                "camera": gym.spaces.Box(0, 255, (SIDE, SIDE, 1), np.uint8),
            }
        )
        self.action_space = gym.spaces.Discrete(2)

    def _observe(self):
        self.bright = bool(self.np_random.integers(2))
        frame = np.full((SIDE, SIDE, 1), 255 if self.bright else 0, np.uint8)
        return {"noise": self.np_random.uniform(-1, 1, 2).astype(np.float32), "camera": frame}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(int(action) == int(self.bright))
        self.t += 1
        return self._observe(), reward, False, self.t >= 16, {}


def test_the_parts_follow_gymnasiums_flattening_order():
    env = LightSwitchEnv()
    parts = flattened_parts(env.observation_space)
    observation, _ = env.reset(seed=0)
    flat = gym.spaces.flatten(env.observation_space, observation)
    sizes = [int(np.prod(part)) for part in parts]
    assert sum(sizes) == len(flat)
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    for part, piece in zip(parts, pieces, strict=True):
        key = "camera" if len(part) == 3 else "noise"
        np.testing.assert_array_equal(piece.reshape(observation[key].shape), observation[key])


def test_ppo_for_env_sends_the_image_to_a_cnn_and_round_trips(tmp_path):
    env = FlattenParts(LightSwitchEnv())
    ppo = ppo_for_env(env, seed=0, device="cpu")
    assert sorted(map(len, ppo.observation_parts)) == [1, 3]
    assert len(ppo.policy.torso.cnns) == 1 and ppo.numpy_actor is None
    assert ppo.policy.torso.out_features == 512 + 2
    observations = np.stack([env.reset(seed=s)[0] for s in range(6)])
    ppo.save_weights(tmp_path)
    loaded = PPO.load(tmp_path, device="cpu")
    assert loaded.observation_parts == ppo.observation_parts
    expected = ppo.get_action(observations, deterministic=True)
    np.testing.assert_array_equal(loaded.get_action(observations, deterministic=True), expected)
    exported = torch.export.load(ppo.export(tmp_path / "policy.pt2")).module()
    np.testing.assert_array_equal(exported(torch.from_numpy(observations)).numpy(), expected)


def test_a_dict_holding_only_an_image_also_goes_to_a_cnn():
    class CameraOnly(LightSwitchEnv):
        def __init__(self):
            super().__init__()
            self.observation_space = gym.spaces.Dict({"camera": self.observation_space["camera"]})

        def _observe(self):
            return {"camera": super()._observe()["camera"]}

    ppo = ppo_for_env(FlattenParts(CameraOnly()), seed=0, device="cpu")
    assert ppo.observation_parts == [[SIDE, SIDE, 1]]
    assert len(ppo.policy.torso.cnns) == 1 and ppo.policy.torso.out_features == 512


def test_the_image_changes_the_features_and_the_noise_reaches_the_heads():
    ppo = ppo_for_env(FlattenParts(LightSwitchEnv()), seed=0, device="cpu")
    env = LightSwitchEnv()
    space = env.observation_space
    dark = {"noise": np.array([0.1, -0.2], np.float32), "camera": np.zeros((SIDE, SIDE, 1), np.uint8)}
    bright = dict(dark, camera=np.full((SIDE, SIDE, 1), 255, np.uint8))
    batch = torch.from_numpy(np.stack([gym.spaces.flatten(space, o) for o in (dark, bright)]))
    features = ppo.policy.features(batch)
    assert not torch.allclose(features[0, :-2], features[1, :-2])  # the CNN sees the frame
    torch.testing.assert_close(features[:, -2:], batch[:, -2:])  # noise passes through as is


@pytest.mark.parametrize(
    "options, error",
    [
        (
            dict(observation_parts=[[SIDE, SIDE, 1], [3]]),
            r"observation_parts: \[\[36, 36, 1\], \[3\]\] hold 1299 values, but observ_dim=1298",
        ),
        (dict(observation_parts=[[1296], [2]]), r"observation_parts: is for observations holding an image"),
        (
            dict(observation_parts=[[SIDE, SIDE, 1], [2]], normalize_obs=True),
            r"normalize_obs: image observations",
        ),
        (dict(observation_parts=[[SIDE, SIDE, 0], [2]]), r"observation_parts: expected a list of shapes"),
    ],
)
def test_bad_observation_parts_are_named(options, error):
    with pytest.raises(ValueError, match=error):
        PPO(False, SIDE * SIDE + 2, 2, device="cpu", seed=0, **options)


@pytest.mark.slow
def test_a_policy_that_must_look_at_the_image_learns_to():
    env = FlattenParts(LightSwitchEnv())
    ppo = ppo_for_env(env, seed=0, device="cpu", lr=1e-3)
    runner = AsyncPPO(env, ppo, num_envs=8, num_steps=64, steps=30_720, progress_bar=False)
    runner.run()
    first, last = np.mean(runner.episode_returns[:16]), np.mean(runner.episode_returns[-16:])
    assert first < 10, f"an untrained policy should be right about half the time: {first}"
    # seed 0: about 15 (its entropy bonus keeps some exploring); looking at the noise alone: 8
    assert last > 14, f"mean return of the last 16 episodes (16 is perfect): {last}"
