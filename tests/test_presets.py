"""Settings chosen by the env: family defaults from the spaces, the per-id presets table, the
user's options winning over both, and train.py recording the values it used."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys

import gymnasium as gym
import pytest
from conftest import REPO_ROOT, load_benchmark

from AsyncTools import train_cli
from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.presets import FAMILY_DEFAULTS, presets, settings_for
from PPO import PPO

PPO_KEYWORDS = set(inspect.signature(PPO).parameters)
RUNNER_KEYWORDS = set(inspect.signature(AsyncPPO).parameters)


def test_every_preset_names_real_options_and_its_source():
    assert {"CartPole-v1", "Pendulum-v1", "HalfCheetah-v5", "LunarLander-v3"} <= set(presets())
    for env_id, entry in presets().items():
        gym.spec(env_id)  # a registered id
        assert entry["source"], env_id
        assert set(entry["ppo"]) <= PPO_KEYWORDS, (env_id, set(entry["ppo"]) - PPO_KEYWORDS)
        assert set(entry["runner"]) <= RUNNER_KEYWORDS, env_id
    for family in FAMILY_DEFAULTS.values():
        assert set(family["ppo"]) <= PPO_KEYWORDS and set(family["runner"]) <= RUNNER_KEYWORDS


def zoo_table() -> dict:
    """ZOO_PPO of benchmarks/defaults_vs_sb3.py: RL Zoo's numbers as the SB3 comparison uses them."""
    return load_benchmark("defaults_vs_sb3").ZOO_PPO


# (our keyword, RL Zoo's key) for the settings both have
ZOO_KEYS = [
    ("lr", "learning_rate"),
    ("k_epochs", "n_epochs"),
    ("mini_batch_size", "batch_size"),
    ("gamma", "gamma"),
    ("GAE_lambda", "gae_lambda"),
    ("entropy_coef", "ent_coef"),
    ("policy_clip", "clip_range"),
    ("value_coef", "vf_coef"),
    ("max_grad_norm", "max_grad_norm"),
]


def assert_zoo_numbers(env_id: str, ppo: PPO, num_envs: int, num_steps: int) -> None:
    """The learner and runner hold RL Zoo's numbers for env_id, as the SB3 comparison trains
    them (SB3's defaults where the zoo's entry has none)."""
    sb3_defaults = dict(
        learning_rate=3e-4,
        n_epochs=10,
        batch_size=64,
        gamma=0.99,
        gae_lambda=0.95,
        ent_coef=0.0,
        clip_range=0.2,
        vf_coef=0.5,
        max_grad_norm=0.5,
    )
    zoo = {**sb3_defaults, **zoo_table()[env_id]}
    for ours, theirs in ZOO_KEYS:
        held = ppo.config[ours] if ours in ppo.config else getattr(ppo, ours)
        assert held == pytest.approx(zoo[theirs]), (ours, theirs)
    assert (num_envs, num_steps) == (zoo["n_envs"], zoo["n_steps"])
    assert ppo.batch_size == zoo["n_envs"] * zoo["n_steps"]
    normalized = zoo.get("normalize", False)
    assert (ppo.config["normalize_obs"], ppo.normalize_reward) == (normalized, normalized)
    assert not ppo.anneal_lr  # the zoo's learning rates here are constants
    assert ppo.value_clip is None  # SB3's clip_range_vf default
    net = zoo.get("policy_kwargs", {})
    arch = net.get("net_arch", dict(pi=[64, 64], vf=[64, 64]))
    assert ppo.config["hidden_sizes"] == arch["pi"]
    assert (ppo.config["critic_hidden_sizes"] or ppo.config["hidden_sizes"]) == arch["vf"]
    assert ppo.config["activation"] == net.get("activation_fn", "Tanh").lower()
    assert ppo.config["orthogonal_init"] == net.get("ortho_init", True)
    if ppo.is_continuous:
        assert ppo.config["log_std_init"] == net.get("log_std_init", 0.0)


@pytest.mark.parametrize(
    "env_id", [env_id for env_id, entry in presets().items() if entry["source"].startswith("RL Zoo")]
)
def test_a_preset_citing_rl_zoo_has_rl_zoos_numbers(env_id):
    runner = presets()[env_id]["runner"]
    assert_zoo_numbers(env_id, ppo_for_env(env_id, device="cpu"), runner["num_envs"], runner["num_steps"])


def built_from_flags(tmp_path, *flags: str) -> tuple[argparse.Namespace, PPO, AsyncPPO]:
    """The arguments, the learner and the (closed) runner that train.py builds from flags."""
    args = train_cli.checked(
        train_cli.parse_args(["--log-dir", str(tmp_path / "runs"), "--device", "cpu", *flags])
    )
    ppo, runner = train_cli.build(args)
    runner.close()
    return args, ppo, runner


def test_lunarlanders_old_preset_file_still_holds_rl_zoos_numbers(tmp_path):
    """The benchmarks' "preset (RL Zoo's settings)" rows are reproduced with this file."""
    old = REPO_ROOT / "benchmarks" / "results" / "rl_zoo_lunarlander_presets.json"
    _, ppo, runner = built_from_flags(
        tmp_path, "--env", "LunarLander-v3", "--preset", "none", "--presets", str(old)
    )
    assert_zoo_numbers("LunarLander-v3", ppo, runner.num_envs, runner.num_steps)


def test_lunarlanders_preset_is_the_set_that_was_measured(tmp_path):
    """The shipped LunarLander-v3 preset builds what the check in docs/benchmarks/tuning.md ran
    (`--preset none --presets tuned_30s_presets.json`), with PPO's own reward normalisation:
    on, and off with RND."""
    measured = REPO_ROOT / "benchmarks" / "results" / "lunarlander_30s_set" / "tuned_30s_presets.json"
    _, ppo, runner = built_from_flags(tmp_path, "--env", "LunarLander-v3")
    _, same, same_runner = built_from_flags(
        tmp_path, "--env", "LunarLander-v3", "--preset", "none", "--presets", str(measured)
    )
    assert ppo.config == same.config
    assert (runner.num_envs, runner.num_steps) == (same_runner.num_envs, same_runner.num_steps) == (8, 64)
    assert (ppo.k_epochs, ppo.batch_size, ppo.mini_batch_size, ppo.normalize_reward) == (20, 512, 256, True)
    _, with_rnd, _ = built_from_flags(tmp_path, "--env", "LunarLander-v3", "--use-rnd")
    assert not with_rnd.normalize_reward


def test_the_cli_builds_the_presets_network_unless_told_otherwise(tmp_path):
    """train.py's network flags default to the preset's (HalfCheetah: RL Zoo's 256x256 ReLU)."""

    def built(*flags):
        args, ppo, runner = built_from_flags(tmp_path, "--env", "HalfCheetah-v5", *flags)
        return ppo.config, train_cli.resolved(args, ppo, runner)

    config, used = built()
    assert (config["hidden_sizes"], config["activation"], config["log_std_init"]) == (
        [256, 256],
        "relu",
        -2.0,
    )
    assert (used["hidden_sizes"], used["activation"], used["orthogonal_init"]) == ([256, 256], "relu", False)
    config, used = built("--hidden-sizes", "32", "--activation", "tanh", "--orthogonal-init")
    assert (config["hidden_sizes"], config["activation"], config["orthogonal_init"]) == ([32], "tanh", True)
    assert used["hidden_sizes"] == [32]
    config, _ = built("--preset", "none")
    assert (config["hidden_sizes"], config["activation"]) == ([64, 64], "tanh")


def test_ppo_for_env_applies_the_preset_under_the_users_options():
    env = gym.make("Pendulum-v1")
    ppo = ppo_for_env(env, device="cpu")
    assert (ppo.gamma, ppo.lr, ppo.k_epochs, ppo.mini_batch_size) == (0.9, 1e-3, 10, 256)
    assert ppo.normalize_reward and ppo.config["normalize_obs"]
    mine = ppo_for_env(env, device="cpu", gamma=0.95, normalize_reward=False)
    assert (mine.gamma, mine.normalize_reward, mine.k_epochs) == (0.95, False, 10)


def test_without_a_preset_the_family_defaults_apply():
    continuous = ppo_for_env(gym.make("Pendulum-v1"), device="cpu", preset=False)
    assert (
        continuous.gamma,
        continuous.lr,
        continuous.k_epochs,
        continuous.mini_batch_size,
        continuous.value_clip,
        continuous.anneal_lr,
    ) == (0.99, 3e-4, 10, 64, 0.2, True)
    discrete = ppo_for_env(gym.make("Acrobot-v1"), device="cpu")
    assert (discrete.lr, discrete.k_epochs, discrete.mini_batch_size) == (3e-3, 4, 512)
    assert settings_for("NoSuchEnv-v0", "image", "ppo")["policy_clip"] == 0.1


def test_the_runner_takes_envs_and_steps_from_the_preset_unless_given():
    env = gym.make("Pendulum-v1")
    ppo = ppo_for_env(env, device="cpu")
    runner = AsyncPPO(env, ppo, steps=1000, progress_bar=False, backend="loop")
    assert (runner.num_envs, runner.num_steps) == (16, 128)
    given = AsyncPPO(env, ppo, num_envs=4, steps=1000, num_steps=32, progress_bar=False, backend="loop")
    assert (given.num_envs, given.num_steps) == (4, 32)
    # a function making the env has no id: the continuous family's defaults
    made = AsyncPPO(lambda: gym.make("Pendulum-v1"), ppo, steps=1000, progress_bar=False, backend="loop")
    assert (made.num_envs, made.num_steps) == (8, 256)
    cartpole = gym.make("CartPole-v1")
    assert (
        AsyncPPO(cartpole, ppo_for_env(cartpole, device="cpu"), progress_bar=False, backend="loop").num_envs
        == 32
    )


def train_args(tmp_path, *flags: str) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(tmp_path / "w"),
            "--steps",
            "200",
            "--quiet",
            "--backend",
            "loop",
            *flags,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    return json.loads((run_dir / "train_args.json").read_text())


@pytest.mark.slow
def test_train_args_records_the_values_used(tmp_path):
    used = train_args(tmp_path, "--env", "Pendulum-v1", "--no-normalize-obs")
    assert (used["num_envs"], used["num_steps"], used["gamma"], used["lr"]) == (16, 128, 0.9, 1e-3)
    assert used["normalize_obs"] is False and used["normalize_reward"] is True
    assert used["entropy_coef"] == 0.0 and used["eval_every"] == 10
    assert used["eval_deterministic"] is True
    assert all(used[k] is not None for k in ("k_epochs", "batch_size", "gae_lambda", "policy_clip"))


@pytest.mark.slow
def test_preset_none_leaves_the_family_defaults(tmp_path):
    used = train_args(tmp_path, "--env", "Pendulum-v1", "--preset", "none")
    assert (used["num_envs"], used["num_steps"], used["gamma"], used["lr"]) == (8, 256, 0.99, 3e-4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, steps, threshold",
    [("CartPole-v1", 100_000, 400), ("Acrobot-v1", 100_000, -120), ("Pendulum-v1", 100_000, -300)],
)
def test_the_cli_with_no_flags_learns(tmp_path, env_id, steps, threshold):
    """`python train.py --env ID --steps N`, nothing else: the final policy, played
    deterministically, clearly beats random play (CartPole about 22, Acrobot -500, Pendulum
    about -1200)."""
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--env",
            env_id,
            "--steps",
            str(steps),
            "--quiet",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(tmp_path / "w"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    played = subprocess.run(
        [sys.executable, "play.py", "--weights", str(tmp_path / "w"), "--env", env_id, "--episodes", "10"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    mean = float(played.stdout.strip().splitlines()[-1].split()[-1])
    assert mean > threshold, f"{env_id}: mean return {mean:.0f} after {steps} steps"
