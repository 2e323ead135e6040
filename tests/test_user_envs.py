"""A user's own env, as users write it (tests/user_envs.py: a plain `__init__` without
`render_mode`, no metadata of its own, no spec unless made from its id, registered under its
module's name), on every entry: the API with an instance, a factory and an id; evaluation and
recording; saved weights; every observation space; and the command line (train.py --env
module:Id, play.py, its backends, --overlap, periodic evaluation, Ctrl-C + --resume, SIGTERM)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, wait_for_rows

from AsyncTools.AsyncPPO import CHECKPOINT_FILE, AsyncPPO, ppo_for_env
from AsyncTools.envs import describe_space, env_from_id
from AsyncTools.evaluation import evaluate, record_gif
from PPO import PPO
from tests.user_envs import LENGTH, Corridor, DictCorridor, DiscreteCorridor, TupleCorridor

CORRIDOR_ID = "tests.user_envs:Corridor-v0"
BEST_RETURN = 1.0 - 0.01 * (LENGTH - 2)  # straight to the end: LENGTH - 2 costs, then +1


def test_an_id_is_made_without_a_render_mode_argument():
    env = env_from_id(CORRIDOR_ID)
    assert isinstance(env.unwrapped, Corridor) and env.render_mode is None
    env.close()


def test_recording_an_env_that_takes_no_render_mode_is_one_clear_error():
    with pytest.raises(
        ValueError,
        match=r"render_mode: recording needs frames from "
        r"tests.user_envs:Corridor-v0 \(render_mode='rgb_array'\), "
        r"but its constructor takes no render_mode argument",
    ):
        env_from_id(CORRIDOR_ID, render_mode="rgb_array")
    ppo = ppo_for_env(Corridor(), device="cpu")
    with pytest.raises(ValueError, match=r"record_gif: the env renders with render_mode=None"):
        record_gif(ppo, Corridor(), "never-written.gif")
    assert not Path("never-written.gif").exists()


SOURCES = {"instance": Corridor, "factory": lambda: Corridor, "id": lambda: CORRIDOR_ID}


@pytest.mark.parametrize("source", SOURCES)
def test_the_one_liner_learns_a_user_env_given_as_an_instance_a_factory_or_an_id(source):
    env = SOURCES[source]()
    ppo = ppo_for_env(env, seed=0, device="cpu")
    runner = AsyncPPO(env, ppo, num_envs=8, steps=6000, progress_bar=False)
    returns = runner.run()
    assert np.mean(returns[-16:]) > 0.7  # random walks: about -0.3 (most never reach the end)
    assert evaluate(ppo, Corridor(), episodes=2) == pytest.approx([BEST_RETURN] * 2)
    assert runner.evaluate(episodes=1) == pytest.approx([BEST_RETURN])
    runner.close()


SPACE_ENVS = {"discrete": DiscreteCorridor, "dict-with-image": DictCorridor, "tuple": TupleCorridor}


@pytest.mark.parametrize("kind", SPACE_ENVS)
@pytest.mark.parametrize("source", ["instance", "factory", "id"])
def test_every_observation_space_is_flattened_on_every_entry(kind, source, tmp_path):
    cls = SPACE_ENVS[kind]
    env = {"instance": cls(), "factory": cls, "id": f"tests.user_envs:{cls.__name__}-v0"}[source]
    ppo = ppo_for_env(env, seed=0, device="cpu", batch_size=256, mini_batch_size=128)
    assert ppo.observation_space == describe_space(cls().observation_space)
    assert ppo.observ_dim == gym.spaces.flatdim(cls().observation_space)
    assert ppo.has_images == (kind == "dict-with-image")  # the image entry goes to a CNN
    runner = AsyncPPO(env, ppo, num_envs=2, steps=512, progress_bar=False)
    assert runner.run() and runner.total_steps >= 512
    raw_returns = evaluate(ppo, cls(), episodes=2, seed=0)  # raw observations: flattened too
    ppo.save_weights(tmp_path)
    loaded = PPO.load(tmp_path, device="cpu")
    assert loaded.observation_space == ppo.observation_space  # the saved model records it
    assert evaluate(loaded, cls(), episodes=2, seed=0) == raw_returns
    runner.close()


class WiderDiscreteCorridor(DiscreteCorridor):
    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Discrete(LENGTH + 2)


def test_an_env_whose_space_differs_from_the_recorded_one_is_refused_by_name():
    ppo = ppo_for_env(DiscreteCorridor(), device="cpu")
    with pytest.raises(
        ValueError,
        match=r"observation_space: the model was trained on "
        r"observations flattened from \{'type': 'Discrete', "
        r"'n': 8, 'start': 0\}, but this env's observations "
        r"are \{'type': 'Discrete', 'n': 10",
    ):
        evaluate(ppo, WiderDiscreteCorridor(), episodes=1)


class SpaceEnv(gym.Env):
    """Random observations of `space`: what matters here is what the learner is fed."""

    def __init__(self, space: gym.Space):
        self.observation_space, self.action_space = space, gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Discrete(5, start=2),
        gym.spaces.MultiDiscrete([3, 4], start=[1, 0]),
        gym.spaces.MultiDiscrete([[2, 3], [4, 2]]),
        gym.spaces.MultiBinary(4),
    ],
    ids=["discrete-start-2", "multidiscrete", "multidiscrete-2d", "multibinary"],
)
@pytest.mark.parametrize("format", ["export", "torchscript"])
def test_an_exported_policy_flattens_raw_observations_as_training_did(space, format, tmp_path):
    ppo = ppo_for_env(SpaceEnv(space), seed=0, device="cpu")
    file = ppo.export(tmp_path / "policy", format=format)
    policy = torch.export.load(file).module() if format == "export" else torch.jit.load(file)
    space.seed(0)
    raw = [space.sample() for _ in range(16)]
    flat = np.stack([gym.spaces.flatten(space, value) for value in raw]).astype(np.float32)
    np.testing.assert_array_equal(
        policy(torch.as_tensor(np.stack(raw))).numpy(), ppo.get_action(flat, deterministic=True)
    )


def test_the_exported_policy_takes_raw_discrete_observations(tmp_path):
    ppo = ppo_for_env(DiscreteCorridor(), seed=0, device="cpu")
    AsyncPPO(DiscreteCorridor(), ppo, num_envs=8, steps=4000, progress_bar=False).run()
    policy = torch.export.load(ppo.export(tmp_path / "corridor.pt2")).module()
    positions = np.arange(LENGTH)
    one_hot = np.eye(LENGTH, dtype=np.float32)
    expected = ppo.get_action(one_hot, deterministic=True)
    np.testing.assert_array_equal(policy(torch.as_tensor(positions)).numpy(), expected)


# ------------------------------------------------------------------ the command line
ENV = dict(os.environ, PYTHONPATH=str(REPO_ROOT))


def train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "train.py",
            "--env",
            CORRIDOR_ID,
            "--quiet",
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
        timeout=300,
    )


def play(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "play.py", "--env", CORRIDOR_ID, *args],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_train_and_play_a_registered_user_env_from_the_command_line(tmp_path):
    done = train(tmp_path, "--steps", "8000", "--eval-every", "2000")
    assert done.returncode == 0, done.stderr
    assert "mean return of the last 32 episodes" in done.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("tests.user_envs-Corridor-v0_")  # no ':' in the folder name
    assert (run_dir / "best" / "Policy_weights.pth").is_file()  # periodic evaluation ran
    played = play("--weights", str(tmp_path / "weights"), "--episodes", "2")
    assert played.returncode == 0, played.stderr
    assert float(played.stdout.strip().splitlines()[-1].split()[-1]) > 0.5
    refused = play("--weights", str(tmp_path / "weights"), "--gif", str(tmp_path / "x.gif"))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .startswith(f"play.py: error: --env {CORRIDOR_ID}: render_mode: recording needs frames")
    )


@pytest.mark.slow
def test_a_user_env_with_the_render_api_records_a_gif_from_play(tmp_path):
    rendered = "tests.user_envs:RenderedCorridor-v0"
    done = train(tmp_path, "--steps", "2048", "--env", rendered, "--eval-every", "0")
    assert done.returncode == 0, done.stderr
    played = subprocess.run(
        [
            sys.executable,
            "play.py",
            "--env",
            rendered,
            "--weights",
            str(tmp_path / "weights"),
            "--gif",
            str(tmp_path / "corridor.gif"),
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert played.returncode == 0, played.stderr
    from PIL import Image

    with Image.open(tmp_path / "corridor.gif") as gif:
        assert gif.size == (16 * LENGTH, 16) and gif.n_frames > 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [["--backend", "subprocess"], ["--overlap"], ["--overlap", "--backend", "subprocess"]],
    ids=["subprocess", "overlap", "overlap-subprocess"],
)
def test_every_backend_trains_a_registered_user_env(tmp_path, options):
    done = train(tmp_path, "--steps", "3000", "--num-envs", "4", *options)
    assert done.returncode == 0, done.stderr
    assert PPO.load(tmp_path / "weights", device="cpu").observ_dim == LENGTH


def start(tmp_path: Path, *args: str, env_id: str = CORRIDOR_ID) -> subprocess.Popen:
    """train.py in its own process group, as a terminal or a scheduler runs it."""
    return subprocess.Popen(
        [
            sys.executable,
            "train.py",
            "--env",
            env_id,
            "--quiet",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(tmp_path / "weights"),
            "--num-envs",
            "4",
            *args,
        ],
        cwd=REPO_ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def children_of(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in found.split()]


def stop_and_check(process: subprocess.Popen, tmp_path: Path, name: str) -> Path:
    """Sends `name` to the whole group once two rounds are logged; checks the exit status,
    the saved checkpoint and weights, and that no process of the run is left."""
    wait_for_rows(tmp_path / "runs")
    os.killpg(process.pid, getattr(signal, name))
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + getattr(signal, name), err
    assert "Traceback" not in err and out.strip().splitlines()[-1].startswith("interrupted")
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert state["runner"]["total_steps"] > 0
    assert (tmp_path / "weights" / "Policy_weights.pth").is_file()
    leftover = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True)
    assert leftover.stdout.split() == []  # no worker or collector process outlives the run
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [["--backend", "subprocess"], ["--overlap", "--backend", "subprocess"]],
    ids=["subprocess", "overlap-subprocess"],
)
def test_ctrl_c_then_resume_reaches_the_total_with_a_user_env(tmp_path, options):
    process = start(tmp_path, "--steps", "100000000", "--checkpoint-every", "0", *options)
    run_dir = stop_and_check(process, tmp_path, "SIGINT")
    stopped_at = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["runner"]["total_steps"]
    assert stopped_at < 6000
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--resume",
            str(run_dir),
            "--steps",
            "6000",
            "--quiet",
            "--save-dir",
            str(tmp_path / "weights"),
        ],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["runner"]["total_steps"] >= 6000
    assert done.stdout.strip().splitlines()[-1].startswith("trained")


@pytest.mark.slow
@pytest.mark.parametrize(
    "options", [["--backend", "loop"], ["--overlap", "--backend", "loop"]], ids=["loop", "overlap"]
)
def test_sigterm_saves_and_exits_143_with_a_user_env(tmp_path, options):
    stop_and_check(
        start(tmp_path, "--steps", "100000000", "--checkpoint-every", "0", *options), tmp_path, "SIGTERM"
    )


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("envpool") is None, reason="envpool is not installed")
@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_overlap_on_envpool_stops_cleanly_on_a_signal(tmp_path, name):
    """EnvPool builds its copies from an id it knows (no user env there): CartPole-v1."""
    stop_and_check(
        start(
            tmp_path,
            "--steps",
            "100000000",
            "--checkpoint-every",
            "0",
            "--overlap",
            "--backend",
            "envpool",
            env_id="CartPole-v1",
        ),
        tmp_path,
        name,
    )


@pytest.mark.slow
@pytest.mark.parametrize("source", ["id", "factory"])
def test_ray_workers_train_a_user_env(ray_session, source):
    env = {"id": CORRIDOR_ID, "factory": DiscreteCorridor}[source]
    ppo = ppo_for_env(env, seed=0, device="cpu")
    runner = AsyncPPO(env, ppo, num_envs=4, steps=2048, progress_bar=False, backend="ray", ray_workers=2)
    assert runner.run() and runner.total_steps >= 2048
    runner.close()
