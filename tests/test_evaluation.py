"""AsyncTools.evaluation (evaluate, record_gif, record_video) and play.py.

Frame convention: one frame after every reset and one after every step, so an episode of n
steps renders n + 1 frames. Pillow stores a run of identical consecutive frames as one longer
GIF frame, so the GIF's total duration, not its frame count, equals rendered frames x 1000/fps.
"""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from conftest import REPO_ROOT, ActionRecorderEnv
from gymnasium.wrappers import TimeLimit
from PIL import Image, ImageSequence

from AsyncTools.AsyncPPO import ppo_for_env
from AsyncTools.evaluation import evaluate, record_gif, record_video


class StepCounter(gym.Wrapper):
    """Counts the steps of every episode and keeps a copy of every frame rendered."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lengths: list[int] = []
        self.frames: list[np.ndarray] = []

    def reset(self, **kwargs):
        self.lengths.append(0)
        return self.env.reset(**kwargs)

    def step(self, action):
        self.lengths[-1] += 1
        return self.env.step(action)

    def render(self):
        frame = self.env.render()
        self.frames.append(np.array(frame, copy=True))
        return frame


class KnownRewardsEnv(gym.Env):
    """Episode length is `seed % 4 + 1` (3 without a seed); step t (from 1) pays 0.5 * t,
    whatever the action. Checks every action it receives."""

    metadata: dict = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(3)
        self.length, self.t = 3, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length = 3 if seed is None else seed % 4 + 1
        self.t = 0
        return np.zeros(3, dtype=np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        obs = np.full(3, self.t, dtype=np.float32)
        return obs, 0.5 * self.t, self.t >= self.length, False, {}


def frame_duration_ms(fps: int) -> int:
    return round(1000 / fps)


def gif_frames(path) -> tuple[list[np.ndarray], list[int], Image.Image]:
    """The GIF's frames as RGB arrays, their durations (ms) and the opened image's header."""
    with Image.open(path) as image:
        frames, durations = [], []
        for frame in ImageSequence.Iterator(image):
            frames.append(np.asarray(frame.convert("RGB")))
            durations.append(frame.info["duration"])
        return frames, durations, image


@pytest.fixture(scope="module")
def ppo():
    """An untrained CartPole policy: its deterministic episodes last about 10 steps."""
    return ppo_for_env(gym.make("CartPole-v1"), seed=0, device="cpu")


@pytest.fixture(scope="module")
def weights(ppo, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights")
    ppo.save_weights(path)
    return path


# ----------------------------------------------------------------------------------- evaluate
def test_cartpole_returns_are_the_steps_taken_and_repeat_with_the_seed(ppo):
    env = StepCounter(gym.make("CartPole-v1"))
    returns = evaluate(ppo, env, episodes=3, seed=0)
    assert len(returns) == 3 and all(type(r) is float for r in returns)
    assert returns == [float(n) for n in env.lengths]  # CartPole pays 1 per step
    assert all(n >= 1 for n in env.lengths)
    assert evaluate(ppo, gym.make("CartPole-v1"), episodes=3, seed=0) == returns
    # Episode k is reset with seed + k: two episodes from seed 1 are episodes 1 and 2 above.
    assert evaluate(ppo, gym.make("CartPole-v1"), episodes=2, seed=1) == returns[1:]


def test_deterministic_needs_no_seed_on_the_policy_side():
    env = gym.make("CartPole-v1")
    unseeded = ppo_for_env(env, device="cpu")  # random weights, random sampling generator
    first = evaluate(unseeded, env, episodes=2, seed=5, deterministic=True)
    unseeded.get_action(np.zeros((64, 4), dtype=np.float32))  # moves the sampling generator on
    assert evaluate(unseeded, env, episodes=2, seed=5, deterministic=True) == first


def test_known_rewards_give_exact_returns():
    env = KnownRewardsEnv()
    # Seeds 10, 11, 12: lengths 3, 4, 1; returns 0.5 * (1 + ... + n).
    ppo = ppo_for_env(env, seed=0, device="cpu")
    assert evaluate(ppo, env, episodes=3, seed=10) == [3.0, 5.0, 0.5]
    assert evaluate(ppo, env, episodes=1, seed=10, deterministic=False) == [3.0]
    assert evaluate(ppo, env, episodes=2) == [3.0, 3.0]  # no seed: length 3
    # A time limit ends the episode too: seed 11 would run 4 steps, the limit cuts it at 2.
    assert evaluate(ppo, TimeLimit(KnownRewardsEnv(), max_episode_steps=2), 1, seed=11) == [1.5]


def test_continuous_actions_are_clipped_to_the_action_space():
    env = ActionRecorderEnv(low=(-1.0, -1.0), high=(1.0, 1.0), episode_length=4)
    ppo = ppo_for_env(env, seed=0, device="cpu", log_std_init=3.0)  # samples far outside [-1, 1]
    returns = evaluate(ppo, env, episodes=2, deterministic=False, seed=0)
    received = np.stack(env.received)
    assert received.shape == (8, 2)
    # the env pays -|a|^2 for the clipped action it received
    np.testing.assert_allclose(
        returns, [-np.square(received[:4]).sum(), -np.square(received[4:]).sum()], rtol=1e-5
    )
    assert np.all(np.abs(received) <= 1.0) and np.any(np.abs(received) == 1.0)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", None])
def test_bad_episodes_are_refused(ppo, bad, tmp_path):
    with pytest.raises(ValueError, match=r"episodes must be a positive integer, got"):
        evaluate(ppo, gym.make("CartPole-v1"), episodes=bad)
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    with pytest.raises(ValueError, match="episodes"):
        record_gif(ppo, env, tmp_path / "x.gif", episodes=bad)
    with pytest.raises(ValueError, match="episodes"):
        record_video(ppo, env, tmp_path / "videos", episodes=bad)
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made


# ---------------------------------------------------------------------------------- record_gif
def test_gif_holds_one_frame_per_reset_and_step(ppo, tmp_path):
    env = StepCounter(gym.make("CartPole-v1", render_mode="rgb_array"))
    file = tmp_path / "new" / "folder" / "run.gif"
    returns = record_gif(ppo, env, file, episodes=2, seed=0, fps=20)

    assert returns == evaluate(ppo, gym.make("CartPole-v1"), episodes=2, seed=0)
    assert returns == [float(n) for n in env.lengths]
    rendered = env.frames
    assert len(rendered) == sum(env.lengths) + 2  # steps + 1 per episode
    assert list(file.parent.iterdir()) == [file]  # no temporary file left behind

    frames, durations, image = gif_frames(file)
    assert image.format == "GIF" and image.info["loop"] == 0
    height, width, _ = rendered[0].shape
    assert image.size == (width, height) == (600, 400)
    # Pillow merges identical consecutive frames; the time each rendered frame is shown stays.
    distinct = [rendered[0]] + [
        b for a, b in zip(rendered, rendered[1:], strict=False) if not np.array_equal(a, b)
    ]
    assert len(frames) == len(distinct) > 1
    assert sum(durations) == len(rendered) * frame_duration_ms(20)
    for shown, expected in zip(frames, distinct, strict=True):  # CartPole draws < 256 colours: exact
        np.testing.assert_array_equal(shown, expected)


def test_gif_max_frames_caps_the_frames_but_not_the_episodes(ppo, tmp_path):
    env = StepCounter(gym.make("CartPole-v1", render_mode="rgb_array"))
    file = tmp_path / "capped.gif"
    returns = record_gif(ppo, env, file, episodes=2, seed=0, fps=20, max_frames=5)
    assert sum(env.lengths) + 2 > 5
    assert len(env.frames) == 5  # nothing rendered past the cap
    assert returns == [float(n) for n in env.lengths]  # whole episodes all the same
    _, durations, _ = gif_frames(file)
    assert sum(durations) == 5 * frame_duration_ms(20)


def test_gif_needs_rgb_array_rendering(ppo, tmp_path):
    for env in (gym.make("CartPole-v1"), KnownRewardsEnv()):
        with pytest.raises(ValueError, match=r'render_mode="rgb_array"'):
            record_gif(ppo_for_env(env, seed=0, device="cpu"), env, tmp_path / "x.gif")
    with pytest.raises(ValueError, match="max_frames"):
        record_gif(ppo, gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path / "x.gif", max_frames=0)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------- record_video
def test_video_writes_one_mp4_per_episode(ppo, tmp_path):
    folder = tmp_path / "videos"
    env = gym.make("CartPole-v1", render_mode="rgb_array")
    returns = record_video(ppo, env, folder, episodes=2, seed=0, name_prefix="check")
    assert returns == evaluate(ppo, gym.make("CartPole-v1"), episodes=2, seed=0)
    files = sorted(folder.glob("*.mp4"))
    assert [f.name for f in files] == ["check-episode-0.mp4", "check-episode-1.mp4"]
    assert all(f.stat().st_size > 0 for f in files)
    with pytest.raises(ValueError, match=r'render_mode="rgb_array"'):
        record_video(ppo, gym.make("CartPole-v1"), tmp_path / "none")


def test_video_without_moviepy_names_the_install(ppo, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "moviepy", None)  # `import moviepy` raises ImportError
    with pytest.raises(ImportError, match="pip install moviepy"):
        record_video(ppo, gym.make("CartPole-v1", render_mode="rgb_array"), tmp_path / "v")


# ------------------------------------------------------------------------------------ play.py
def run_play(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "play.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_play_records_a_gif(weights, tmp_path):
    gif = tmp_path / "x.gif"
    played = run_play("--weights", str(weights), "--env", "CartPole-v1", "--episodes", "2", "--gif", str(gif))
    assert played.returncode == 0, played.stderr
    lines = played.stdout.strip().splitlines()
    assert lines[-1].startswith("mean return")
    episode_returns = [float(line.split()[-1]) for line in lines if line.startswith("episode ")]
    assert len(episode_returns) == 2
    assert float(lines[-1].split()[-1]) == pytest.approx(np.mean(episode_returns), abs=0.05)
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames > 1


@pytest.mark.slow
def test_play_help_lists_the_recording_options_with_defaults():
    played = run_play("--help")
    assert played.returncode == 0, played.stderr
    assert "--gif" in played.stdout and "--video" in played.stdout
    assert "(default: 5)" in played.stdout and "(default: CartPole-v1)" in played.stdout
    assert "(default: None)" in played.stdout


@pytest.mark.slow
def test_play_refuses_missing_weights_in_one_line(tmp_path):
    missing = tmp_path / "no_such_dir"
    played = run_play("--weights", str(missing))
    assert played.returncode == 2
    assert "Traceback" not in played.stderr
    error = played.stderr.strip().splitlines()[-1]
    assert error.startswith("play.py: error:") and str(missing) in error

    empty = tmp_path / "empty"
    empty.mkdir()
    played = run_play("--weights", str(empty))
    assert played.returncode == 2 and "Traceback" not in played.stderr
    assert "Policy_weights.pth" in played.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_play_refuses_gif_and_video_together(weights, tmp_path):
    played = run_play(
        "--weights", str(weights), "--gif", str(tmp_path / "x.gif"), "--video", str(tmp_path / "v")
    )
    assert played.returncode == 2 and "not allowed with" in played.stderr


@pytest.mark.slow
def test_play_takes_the_most_likely_actions_on_vector_envs_unless_told(weights):
    def mean_return(*flags: str) -> str:
        played = run_play("--weights", str(weights), "--env", "CartPole-v1", "--episodes", "5", *flags)
        assert played.returncode == 0, played.stderr
        return played.stdout.strip().splitlines()[-1]

    assert mean_return() == mean_return("--deterministic") != mean_return("--stochastic")
    both = run_play("--weights", str(weights), "--stochastic", "--deterministic")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
