"""Tests of AsyncTools.atari: the wrappers' logic on a small scripted fake ALE game, and the
whole stack on real ALE games (Breakout, MsPacman) from ale-py's bundled ROMs."""

from __future__ import annotations

import sys

import gymnasium as gym
import numpy as np
import pytest

from AsyncTools.atari import EpisodicLifeEnv, FireResetEnv, make_atari_env, wrap_atari
from AsyncTools.vectorizer import wrapper_types

pytest.importorskip("cv2", reason="AtariPreprocessing needs OpenCV")

NOOP, FIRE = 0, 1


class FakeALE:
    """The few ALE calls the wrappers use: lives and the grayscale screen."""

    def __init__(self, game: FakeAtariGame):
        self.game = game

    def lives(self) -> int:
        return self.game.lives_left

    def getScreenGrayscale(self, out: np.ndarray) -> None:  # noqa: N802 (ALE's name)
        out.fill(self.game.frame % 256)


class FakeAtariGame(gym.Env):
    """A scripted one-frame-per-step game with `lives` lives.

    A life is lost every `frames_per_life` frames whatever the actions; losing the last one
    ends the game (terminated). The reward of the game's k-th frame (k = 1, 2, ...) is
    `rewards[(k - 1) % len(rewards)]`. The screen is uniformly gray with value `frame`.
    """

    metadata: dict = {"render_modes": []}

    def __init__(
        self,
        lives: int = 3,
        frames_per_life: int = 4,
        rewards=(5.0, 0.0, -3.0),
        meanings=("NOOP", "FIRE", "RIGHT", "LEFT"),
        truncate_at: int | None = None,
    ):
        self.observation_space = gym.spaces.Box(0, 255, shape=(210, 160, 3), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(len(meanings))
        self._frameskip = 1
        self.meanings = list(meanings)
        self.ale = FakeALE(self)
        self.max_lives, self.frames_per_life = lives, frames_per_life
        self.rewards, self.truncate_at = list(rewards), truncate_at
        self.lives_left, self.frame = lives, 0
        self.resets = 0
        self.actions: list[int] = []

    def get_action_meanings(self) -> list[str]:
        return self.meanings

    def _obs(self) -> np.ndarray:
        return np.full(self.observation_space.shape, self.frame % 256, dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.resets += 1
        self.lives_left, self.frame = self.max_lives, 0
        return self._obs(), {"lives": self.lives_left}

    def step(self, action):
        self.actions.append(int(action))
        self.frame += 1
        reward = self.rewards[(self.frame - 1) % len(self.rewards)]
        if self.frame % self.frames_per_life == 0:
            self.lives_left -= 1
        terminated = self.lives_left == 0
        truncated = self.truncate_at is not None and self.frame >= self.truncate_at
        return self._obs(), reward, terminated, truncated, {"lives": self.lives_left}


def fake_stack(game: FakeAtariGame, **kwargs) -> gym.Env:
    """The full wrapper stack on a fake game, one frame per step and no random no-ops."""
    options = dict(noop_max=0, frame_skip=1)
    options.update(kwargs)
    return wrap_atari(game, **options)


# --- EpisodicLifeEnv and FireResetEnv, exactly, on the fake game -------------------------


def test_episodic_life_ends_episode_on_life_loss_without_restarting_the_game():
    game = FakeAtariGame(lives=3, frames_per_life=3)
    env = EpisodicLifeEnv(game)
    env.reset()
    assert game.resets == 1
    assert [env.step(NOOP)[2] for _ in range(3)] == [False, False, True]
    assert game.lives_left == 2

    env.reset()
    assert game.resets == 1, "a lost life must not restart the game"
    assert game.actions[-1] == NOOP and game.frame == 4 and game.lives_left == 2


def test_episodic_life_truly_resets_when_the_game_is_over():
    game = FakeAtariGame(lives=2, frames_per_life=2)
    env = EpisodicLifeEnv(game)
    env.reset()
    ends = []
    for _ in range(2):  # two lives: each learner episode ends with terminated=True
        terminated = False
        while not terminated:
            _, _, terminated, _, _ = env.step(NOOP)
        ends.append((game.lives_left, game.resets))
        env.reset()
    assert ends == [(1, 1), (0, 1)]
    assert game.resets == 2 and game.lives_left == 2 and game.frame == 0


def test_episodic_life_resets_after_truncation_and_when_seeded():
    game = FakeAtariGame(lives=5, frames_per_life=100, truncate_at=2)
    env = EpisodicLifeEnv(game)
    env.reset()
    env.step(NOOP)
    _, _, terminated, truncated, _ = env.step(NOOP)
    assert truncated and not terminated
    env.reset()
    assert game.resets == 2

    env.step(NOOP)
    env.reset(seed=3)  # a seed asks for a reproducible start: always a real reset
    assert game.resets == 3


def test_fire_reset_presses_fire_and_returns_the_observation_after_it():
    game = FakeAtariGame(meanings=("NOOP", "RIGHT", "FIRE"))
    env = FireResetEnv(game)
    obs, _ = env.reset()
    assert game.actions == [2], "FIRE is found by its meaning, not assumed to be action 1"
    assert game.frame == 1 and np.all(obs == 1)


def test_fire_reset_resets_again_if_fire_ends_the_episode():
    game = FakeAtariGame(lives=1, frames_per_life=1)
    obs, _ = FireResetEnv(game).reset()
    assert game.resets == 2 and game.frame == 0 and np.all(obs == 0)


def test_fire_reset_rejects_a_game_without_fire():
    with pytest.raises(ValueError, match="FIRE"):
        FireResetEnv(FakeAtariGame(meanings=("NOOP", "UP", "DOWN")))
    stack = fake_stack(FakeAtariGame(meanings=("NOOP", "UP", "DOWN")))
    assert FireResetEnv not in wrapper_types(stack), "make/wrap skip FIRE for such games"


# --- the whole stack on the fake game -----------------------------------------------------


def test_stack_clips_rewards_but_records_the_real_score_of_the_whole_game():
    game = FakeAtariGame(lives=3, frames_per_life=4, rewards=(5.0, 0.0, -3.0))
    env = fake_stack(game)
    env.reset()
    rewards, life_ends, episodes = [], 0, []
    while game.resets == 1:
        _, reward, terminated, truncated, info = env.step(NOOP)
        rewards.append(reward)
        if "episode" in info:
            episodes.append(info["episode"])
        if terminated or truncated:
            life_ends += 1
            env.reset()
    assert set(rewards) == {-1.0, 0.0, 1.0}
    assert life_ends == 3, "each of the 3 lives ends a learner episode"
    assert len(episodes) == 1, "info['episode'] only when the game is over"
    # 12 frames in all (FIRE and the no-op after a lost life included): 4 x (5 + 0 - 3).
    assert episodes[0]["r"] == pytest.approx(8.0)
    assert episodes[0]["l"] == 12


def test_stack_without_clipping_or_episodic_life_passes_rewards_and_lives_through():
    game = FakeAtariGame(lives=2, frames_per_life=2, rewards=(5.0,))
    env = fake_stack(game, clip_rewards=False, episodic_life=False, fire_reset=False)
    env.reset()
    steps = [env.step(NOOP) for _ in range(4)]
    assert [s[1] for s in steps] == [5.0] * 4
    assert [s[2] for s in steps] == [False, False, False, True]
    assert steps[-1][4]["episode"]["r"] == pytest.approx(20.0)


def test_frame_stack_shifts_oldest_frames_out_and_the_newest_in():
    env = fake_stack(FakeAtariGame(lives=1, frames_per_life=100), frame_stack=4, screen_size=10)
    obs, _ = env.reset()
    assert obs.shape == (4, 10, 10) and obs.dtype == np.uint8
    assert [int(f[0, 0]) for f in obs] == [1, 1, 1, 1], "reset pads with its own frame"
    for _ in range(4):
        new, *_ = env.step(NOOP)
        np.testing.assert_array_equal(new[:-1], obs[1:])
        assert not np.array_equal(new[-1], obs[-1])
        obs = new
    assert [int(f[0, 0]) for f in obs] == [2, 3, 4, 5]


def test_frame_skip_repeats_the_action_and_max_pools_the_last_two_frames():
    game = FakeAtariGame(lives=1, frames_per_life=100, rewards=(1.0,))
    env = fake_stack(game, frame_skip=4, fire_reset=False, clip_rewards=False)
    env.reset()
    obs, reward, *_ = env.step(3)
    assert game.actions == [3, 3, 3, 3] and reward == 4.0
    assert int(obs[-1, 0, 0]) == 4, "max of frames 3 and 4"


# --- arguments and missing dependencies ----------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("frame_stack", 0),
        ("frame_stack", -4),
        ("frame_stack", 2.5),
        ("screen_size", 0),
        ("screen_size", "84"),
        ("frame_skip", 0),
        ("frame_skip", True),
        ("max_episode_steps", 0),
        ("noop_max", -1),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_parameter(name, value):
    with pytest.raises(ValueError, match=name) as excinfo:
        make_atari_env("BreakoutNoFrameskip-v4", **{name: value})
    assert repr(value) in str(excinfo.value), "the message says what came"
    with pytest.raises(ValueError, match=name):
        wrap_atari(FakeAtariGame(), **{name: value})


def test_frameskip_in_make_kwargs_is_refused():
    with pytest.raises(ValueError, match="frame_skip"):
        make_atari_env("ALE/Breakout-v5", frameskip=4)


def test_missing_ale_py_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # makes `import ale_py` fail
    with pytest.raises(ImportError, match="pip install ale-py"):
        make_atari_env("BreakoutNoFrameskip-v4")


def test_missing_opencv_says_how_to_install_it(monkeypatch):
    pytest.importorskip("ale_py")
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match="pip install opencv"):
        make_atari_env("BreakoutNoFrameskip-v4")


# --- real ALE games ---------------------------------------------------------------------------


@pytest.fixture
def breakout():
    pytest.importorskip("ale_py")
    env = make_atari_env("BreakoutNoFrameskip-v4")
    yield env
    env.close()


@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "ALE/Breakout-v5"])
def test_real_game_spaces_and_observations(env_id):
    pytest.importorskip("ale_py")
    env = make_atari_env(env_id)
    try:
        assert isinstance(env.action_space, gym.spaces.Discrete)
        assert env.observation_space.shape == (4, 84, 84)
        assert env.observation_space.dtype == np.uint8
        assert env.unwrapped._frameskip == 1, "the frame skip is AtariPreprocessing's alone"
        obs, _ = env.reset(seed=0)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        assert obs in env.observation_space
        obs, *_ = env.step(env.action_space.sample())
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    finally:
        env.close()


def test_v5_keeps_sticky_actions_unless_asked_otherwise():
    pytest.importorskip("ale_py")
    sticky = make_atari_env("ALE/Breakout-v5")
    plain = make_atari_env("ALE/Breakout-v5", repeat_action_probability=0.0)
    assert sticky.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert plain.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    sticky.close()
    plain.close()


def _noop_until_episode_end(env: gym.Env, limit: int = 500):
    for _ in range(limit):
        obs, _, terminated, truncated, info = env.step(NOOP)
        if terminated or truncated:
            return obs, terminated, info
    raise AssertionError(f"no episode end in {limit} steps")


def test_breakout_serves_the_ball_on_reset_and_continues_after_a_lost_life(breakout):
    ale = breakout.unwrapped.ale
    obs, _ = breakout.reset(seed=0)
    moved, *_ = breakout.step(NOOP)
    assert not np.array_equal(moved[-1], obs[-1]), "the ball is in play after reset"

    _, terminated, info = _noop_until_episode_end(breakout)
    assert terminated and ale.lives() == 4 and "episode" not in info
    frame = ale.getEpisodeFrameNumber()
    obs, _ = breakout.reset()
    assert ale.lives() == 4 and ale.getEpisodeFrameNumber() > frame, "same game goes on"
    moved, *_ = breakout.step(NOOP)
    assert not np.array_equal(moved[-1], obs[-1]), "FIRE served a new ball"

    for lives_left in (3, 2, 1):
        _noop_until_episode_end(breakout)
        assert ale.lives() == lives_left
        breakout.reset()
    _, terminated, info = _noop_until_episode_end(breakout)
    assert terminated and ale.lives() == 0
    assert info["episode"]["r"] == 0.0 and info["episode"]["l"] > 100, "the whole game"
    breakout.reset()
    assert ale.lives() == 5 and ale.getEpisodeFrameNumber() < frame, "a new game"


def test_breakout_without_fire_reset_waits_for_the_serve():
    pytest.importorskip("ale_py")
    env = make_atari_env("BreakoutNoFrameskip-v4", fire_reset=False)
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        new, *_ = env.step(NOOP)
        np.testing.assert_array_equal(new, obs)
    env.close()


def test_real_rewards_are_clipped_while_the_game_score_is_not():
    pytest.importorskip("ale_py")
    env = make_atari_env("MsPacmanNoFrameskip-v4")  # a pellet is worth 10 points
    env.reset(seed=0)
    env.action_space.seed(0)
    rewards = []
    for _ in range(200):
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        rewards.append(reward)
        if terminated or truncated:
            env.reset()
    assert set(rewards) <= {-1.0, 0.0, 1.0} and 1.0 in rewards
    game_score = env.get_wrapper_attr("episode_returns")  # RecordEpisodeStatistics' sum
    assert game_score > sum(rewards) and game_score >= 10
    env.close()
