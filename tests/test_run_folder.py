"""The trainer's run folder: CSV logs, learning-curve PNG, checkpoints, resume, time budget and
Ctrl-C. Checkpoints load with weights_only=True and restore the learner exactly."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, wait_for_rows

from AsyncTools.AsyncPPO import CHECKPOINT_FILE, AsyncPPO, ppo_for_env
from PPO import PPO


def cartpole_runner(log_dir=None, steps=2048, resume=None, **options) -> AsyncPPO:
    env = gym.make("CartPole-v1")
    ppo = ppo_for_env(
        env,
        seed=0,
        device="cpu",
        batch_size=256,
        mini_batch_size=128,
        normalize_obs=True,
        normalize_reward=True,
        anneal_lr=True,
    )
    return AsyncPPO(
        env,
        ppo,
        num_envs=4,
        num_steps=64,
        steps=steps,
        progress_bar=False,
        backend="loop",
        log_dir=log_dir,
        resume=resume,
        **options,
    )


def read_csv(file: Path) -> list[dict]:
    with open(file, newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_folder_holds_logs_checkpoint_weights_and_plot(tmp_path, capsys):
    runner = cartpole_runner(tmp_path, steps=2048, checkpoint_every=1000)
    runner.run()
    run_dir = runner.run_dir
    assert run_dir.parent == tmp_path and run_dir.name.startswith("CartPole-v1_")
    assert f"run folder: {run_dir}" in capsys.readouterr().out
    progress = read_csv(run_dir / "progress.csv")
    assert len(progress) == runner.rounds
    assert [int(row["steps"]) for row in progress][-1] == runner.total_steps
    learned = [row for row in progress if row["policy_loss"]]  # blank where learn() waited
    assert learned and all(np.isfinite(float(row["policy_loss"])) for row in learned)
    assert float(learned[-1]["learning_rate"]) < float(learned[0]["learning_rate"])
    episodes = read_csv(run_dir / "episodes.csv")
    assert [float(row["return"]) for row in episodes] == runner.episode_returns
    assert [int(row["length"]) for row in episodes] == runner.episode_lengths
    assert (run_dir / "learning_curve.png").stat().st_size > 1000
    assert (run_dir / CHECKPOINT_FILE).is_file()
    loaded = PPO.load(run_dir / "weights", device="cpu")
    states = torch.randn(8, 4)
    np.testing.assert_array_equal(
        loaded.get_action(states, deterministic=True), runner.ppo.get_action(states, deterministic=True)
    )


def test_no_run_folder_without_log_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = cartpole_runner(None, steps=512)
    runner.run()
    assert runner.run_dir is None and list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="file: this AsyncPPO has no run folder"):
        runner.save_checkpoint()


def test_checkpoint_loads_weights_only_and_restores_the_learner_exactly(tmp_path):
    runner = cartpole_runner(tmp_path, steps=1024)
    runner.run()
    state = torch.load(runner.run_dir / CHECKPOINT_FILE, weights_only=True)
    assert state["runner"]["total_steps"] == runner.total_steps
    fresh = ppo_for_env(
        gym.make("CartPole-v1"),
        seed=99,
        device="cpu",
        batch_size=256,
        mini_batch_size=128,
        normalize_obs=True,
        normalize_reward=True,
        anneal_lr=True,
    )
    fresh.load_training_state(state["learner"])
    # same weights, statistics, optimiser moments, generators, counters and waiting steps: the
    # next update is the same update
    for ppo in (runner.ppo, fresh):
        ppo.total_steps = runner.ppo.total_steps
        rng = np.random.default_rng(3)
        states = rng.normal(size=(256, 4)).astype(np.float32)
        truncated = np.zeros(256, bool)
        truncated[63::64] = True
        ppo.memory.add_trajectories(
            states,
            rng.integers(0, 2, 256),
            rng.normal(size=256).astype(np.float32),
            np.zeros(256, bool),
            truncated,
            states[truncated],
        )
        ppo.learn()
    for (name, a), b in zip(
        runner.ppo.policy.state_dict().items(), fresh.policy.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert fresh.samples_learned == runner.ppo.samples_learned
    assert fresh.stats["learning_rate"] == runner.ppo.stats["learning_rate"]


def test_resume_continues_the_same_curve(tmp_path):
    first = cartpole_runner(tmp_path, steps=1024)
    first.run()
    steps_before, episodes_before = first.total_steps, list(first.episode_returns)
    first.close()

    resumed = cartpole_runner(steps=2048, resume=first.run_dir)
    assert resumed.total_steps == steps_before and resumed.episode_returns == episodes_before
    assert resumed.ppo.samples_learned == first.ppo.samples_learned
    resumed.run()
    assert resumed.total_steps >= 2048 and resumed.run_dir == first.run_dir
    steps = [int(row["steps"]) for row in read_csv(first.run_dir / "progress.csv")]
    assert steps == sorted(steps) and steps[-1] == resumed.total_steps
    assert len(read_csv(first.run_dir / "episodes.csv")) == len(resumed.episode_returns)


def test_resume_refuses_a_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="resume: no run folder"):
        cartpole_runner(resume=tmp_path / "nothing")
    (tmp_path / "run").mkdir()
    torch.save({"format": "something else"}, tmp_path / "run" / CHECKPOINT_FILE)
    with pytest.raises(ValueError, match="resume: .* was not written by AsyncPPO.save_checkpoint"):
        cartpole_runner(resume=tmp_path / "run")


def test_resume_into_a_different_model_names_the_difference(tmp_path):
    runner = cartpole_runner(tmp_path, steps=512)
    runner.run()
    env = gym.make("CartPole-v1")
    other = ppo_for_env(env, seed=0, device="cpu", hidden_sizes=(32,))
    with pytest.raises(ValueError, match="hidden_sizes"):
        AsyncPPO(env, other, num_envs=4, steps=1024, progress_bar=False, resume=runner.run_dir)


def test_timeout_stops_after_the_round_under_way():
    runner = cartpole_runner(steps=10_000_000)
    start = time.perf_counter()
    runner.run(timeout=1.0)
    assert 1.0 <= time.perf_counter() - start < 10.0
    assert 0 < runner.total_steps < 10_000_000
    with pytest.raises(ValueError, match="timeout"):
        runner.run(timeout=-1)


@pytest.mark.slow
def test_ctrl_c_saves_a_loadable_checkpoint(tmp_path):
    """SIGINT mid-run: the process saves a checkpoint and its weights, and exits cleanly."""
    script = (
        "import sys, gymnasium as gym\n"
        "from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env\n"
        "env = gym.make('CartPole-v1')\n"
        "ppo = ppo_for_env(env, seed=0, device='cpu')\n"
        "runner = AsyncPPO(env, ppo, num_envs=4, steps=10**9, progress_bar=False, backend='loop',\n"
        "                  log_dir=sys.argv[1], checkpoint_every=0)\n"
        "runner.run()\n"
        "print('interrupted' if runner.interrupted else 'finished', runner.total_steps, flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    wait_for_rows(tmp_path)  # a few rounds trained
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip().splitlines()[-1].startswith("interrupted")
    steps = int(out.strip().split()[-1])
    run_dir = next(tmp_path.iterdir())
    state = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert state["runner"]["total_steps"] == steps > 0
    PPO.load(run_dir / "weights", device="cpu")  # the weights are whole


def test_evaluate_plays_a_fresh_copy_of_the_training_env():
    runner = cartpole_runner(steps=512)
    runner.run()
    copy_zero = runner.env.envs[0]
    state_before = np.array(copy_zero.unwrapped.state)
    returns = runner.evaluate(episodes=3, seed=5)
    assert len(returns) == 3 and all(r >= 1 for r in returns)
    assert returns == runner.evaluate(episodes=3, seed=5)  # deterministic, seeded
    np.testing.assert_array_equal(copy_zero.unwrapped.state, state_before)  # training copies untouched
    assert runner.evaluate(gym.make("CartPole-v1"), episodes=1, seed=5) == returns[:1]


def test_tensorboard_events_mirror_the_progress_rows(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runner = cartpole_runner(tmp_path, steps=1024)
    runner.run()
    (events,) = runner.run_dir.glob("events.out.tfevents*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    progress = read_csv(runner.run_dir / "progress.csv")
    logged = accumulator.Scalars("steps_per_second")
    assert [event.step for event in logged] == [int(row["steps"]) for row in progress]
    assert "policy_loss" in accumulator.Tags()["scalars"]


def test_checkpoints_are_written_during_the_run_every_checkpoint_every_steps(tmp_path):
    """With checkpoint_every=512 (rounds of about 250 steps), the checkpoint on disk, read after
    every round, is rewritten mid-run at the first round that reaches 512 steps past the last."""
    seen = []

    def read_checkpoint(runner, stats):
        file = runner.run_dir / CHECKPOINT_FILE
        state = torch.load(file, weights_only=True) if file.is_file() else None
        seen.append((stats["steps"], state and int(state["runner"]["total_steps"])))

    cartpole_runner(tmp_path, steps=2048, checkpoint_every=512, callback=read_checkpoint).run()
    expected, written, due = [], None, 512
    for steps, _ in seen:
        if steps >= due:
            written, due = steps, steps + 512
        expected.append((steps, written))
    assert seen == expected
    assert len({written for _, written in seen if written is not None}) >= 3


def rnd_runner(log_dir=None, steps=512, resume=None) -> AsyncPPO:
    ppo = ppo_for_env(
        gym.make("CartPole-v1"), seed=0, device="cpu", batch_size=256, mini_batch_size=128, use_RND=True
    )
    return AsyncPPO(
        gym.make("CartPole-v1"),
        ppo,
        num_envs=4,
        num_steps=64,
        steps=steps,
        progress_bar=False,
        backend="loop",
        log_dir=log_dir,
        resume=resume,
        rnd_warmup_steps=1000,
    )


def rnd_state(ppo: PPO) -> dict[str, torch.Tensor]:
    moments = ppo.rnd.optimizer.state_dict()["state"]
    return {
        **{f"rnd.{k}": v for k, v in ppo.rnd.state_dict().items()},
        **{f"intrinsic_scaler.{k}": v for k, v in ppo.intrinsic_scaler.state_dict().items()},
        **{f"rnd_adam.{i}.{k}": v for i, entry in moments.items() for k, v in entry.items()},
    }


def test_resume_with_rnd_restores_rnd_and_skips_its_warm_up(tmp_path):
    first = rnd_runner(tmp_path, steps=512)
    first.run()
    first.close()
    # RND's input statistics: the warm-up's random steps, then each learned batch's next states
    warm_up = int(first.ppo.rnd.obs_normalizer.count) - first.ppo.samples_learned
    assert warm_up > 3000 and first.ppo.samples_learned > 0
    resumed = rnd_runner(steps=1024, resume=first.run_dir)
    saved, restored = rnd_state(first.ppo), rnd_state(resumed.ppo)
    assert saved.keys() == restored.keys() and any(k.startswith("rnd_adam.") for k in saved)
    for name, value in saved.items():
        torch.testing.assert_close(restored[name], value, rtol=0, atol=0, msg=name)
    resumed.run()  # only the learned batches join the statistics: no second warm-up
    assert resumed.ppo.samples_learned > first.ppo.samples_learned
    assert int(resumed.ppo.rnd.obs_normalizer.count) - resumed.ppo.samples_learned == warm_up
