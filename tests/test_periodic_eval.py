"""Evaluation during training: periodic deterministic evaluation on a separate env copy, the
best model in the run folder, stop_at_return, the per-round callback, and train_round() doing
a round's logging and checkpoints as run() does."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from AsyncTools.AsyncPPO import BEST_DIR, CHECKPOINT_FILE, AsyncPPO, ppo_for_env
from AsyncTools.evaluation import EVAL_SEED_OFFSET, evaluate
from PPO import PPO
from PPO.checkpoint import load_state


def runner(log_dir=None, steps=2048, **options) -> AsyncPPO:
    env = gym.make("CartPole-v1")
    ppo = ppo_for_env(env, seed=0, device="cpu", batch_size=256, mini_batch_size=128)
    return AsyncPPO(
        env,
        ppo,
        num_envs=4,
        num_steps=64,
        steps=steps,
        progress_bar=False,
        backend="loop",
        log_dir=log_dir,
        **options,
    )


def progress_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "progress.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_periodic_evaluation_logs_and_keeps_the_best_model(tmp_path):
    trained = runner(tmp_path, steps=3072, eval_every=600, eval_episodes=3)
    trained.run()
    rows = progress_rows(trained.run_dir)
    evaluated = [row for row in rows if row["eval_return"]]
    # one evaluation in the first round at or past 600 steps, then 600 steps after the last one
    assert len(evaluated) >= 4 and int(evaluated[0]["steps"]) >= 600
    steps = [int(row["steps"]) for row in evaluated]
    assert all(b - a >= 600 for a, b in zip(steps, steps[1:], strict=False))
    best = max(float(row["eval_return"]) for row in evaluated)
    assert trained.evaluation.best_return == best
    # best/ holds the model that scored `best`: evaluating it again on the same seeds gives it
    loaded = PPO.load(trained.run_dir / BEST_DIR, device="cpu")
    again = evaluate(loaded, gym.make("CartPole-v1"), 3, seed=trained.seed + EVAL_SEED_OFFSET)
    assert np.mean(again) == best


@pytest.mark.parametrize("deterministic", [True, False])
def test_evaluation_does_not_change_the_training_run(deterministic):
    with_eval = runner(steps=1536, eval_every=256, eval_episodes=2, eval_deterministic=deterministic)
    without = runner(steps=1536)
    with_eval.run()
    without.run()
    assert with_eval.episode_returns == without.episode_returns
    for a, b in zip(with_eval.ppo.policy.parameters(), without.ppo.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_stop_at_return_stops_at_the_first_evaluation_that_reaches_it():
    run = runner(steps=10**6, eval_every=256, eval_episodes=2, stop_at_return=1.0)
    run.run()
    assert run.stopped_by == "stop_at_return" and not run.interrupted
    # the first round that reached 256 steps evaluated, and stopped the run
    assert 256 <= run.total_steps < 256 + 4 * 64 and run.evaluation.last_return >= 1.0


def test_callback_sees_every_round_and_stops_on_false():
    seen: list[dict] = []

    def callback(runner_, stats):
        seen.append(stats)
        return False if stats["steps"] >= 700 else None  # None: go on

    run = runner(steps=10**6, callback=callback, eval_every=512, eval_episodes=1)
    run.run()
    assert run.stopped_by == "callback"
    assert [s["steps"] for s in seen] == sorted(s["steps"] for s in seen) and len(seen) == run.rounds
    assert seen[-1]["steps"] >= 700 > seen[-2]["steps"]
    assert "policy_loss" in seen[-1] and "mean_return" in seen[-1]
    assert any("eval_return" in s for s in seen) and "best_eval_return" in seen[-1]


def test_train_round_logs_and_checkpoints_like_run(tmp_path):
    run = runner(tmp_path, checkpoint_every=500)
    for _ in range(3):
        run.train_round()
    assert len(progress_rows(run.run_dir)) == 3
    state = load_state(run.run_dir / CHECKPOINT_FILE, torch.device("cpu"))
    assert state["runner"]["total_steps"] >= 500 and state["runner"]["rounds"] >= 2
    run.close()


def test_resume_keeps_the_best_evaluation_return(tmp_path):
    first = runner(tmp_path, steps=1024, eval_every=256, eval_episodes=2)
    first.run()
    resumed = runner(steps=2048, resume=first.run_dir, eval_every=256, eval_episodes=2)
    assert resumed.evaluation.best_return == first.evaluation.best_return is not None


def test_bad_evaluation_options_are_named():
    with pytest.raises(ValueError, match="stop_at_return: .*needs eval_every"):
        runner(stop_at_return=100.0)
    with pytest.raises(ValueError, match="eval_every must be a positive integer, got 0"):
        runner(eval_every=0)
    with pytest.raises(ValueError, match="eval_episodes must be a positive integer, got -1"):
        runner(eval_every=10, eval_episodes=-1)
    with pytest.raises(TypeError, match="callback must be a function"):
        runner(callback="print")


@pytest.mark.slow
def test_cli_evaluates_saves_the_best_model_and_stops_at_a_return(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--log-dir",
            str(tmp_path / "runs"),
            "--save-dir",
            str(tmp_path / "weights"),
            "--steps",
            "100000",
            "--num-envs",
            "4",
            "--num-steps",
            "64",
            "--batch-size",
            "256",
            "--backend",
            "loop",
            "--quiet",
            "--eval-every",
            "256",
            "--eval-episodes",
            "2",
            "--stop-at-return",
            "15",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "the evaluation return reached stop_at_return=15" in done.stdout
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert float([r for r in progress_rows(run_dir) if r["eval_return"]][-1]["eval_return"]) >= 15
    PPO.load(run_dir / BEST_DIR, device="cpu")


def test_sampled_evaluation_repeats_with_its_seed_and_leaves_the_learners_stream():
    ppo = ppo_for_env(gym.make("CartPole-v1"), seed=0, device="cpu")
    stream = ppo.sample_generator.get_state()
    env = gym.make("CartPole-v1")
    first = evaluate(ppo, env, 4, deterministic=False, seed=3)
    assert evaluate(ppo, env, 4, deterministic=False, seed=3) == first
    assert evaluate(ppo, env, 4, deterministic=False, seed=4) != first
    assert torch.equal(ppo.sample_generator.get_state(), stream)


def test_atari_is_evaluated_with_sampled_actions_unless_told():
    from test_game_scores import small_runner

    assert small_runner().eval_deterministic is False  # image env: sampled, as RL Zoo does
    assert small_runner(eval_deterministic=True).eval_deterministic is True
    assert runner().eval_deterministic is True  # vector observations: most likely actions
    sampled = runner(eval_every=256, eval_episodes=1, eval_deterministic=False)
    assert sampled.evaluation.deterministic is False
    with pytest.raises(TypeError, match="eval_deterministic must be True or False, got .no."):
        runner(eval_deterministic="no")


def test_the_runners_evaluate_plays_as_its_periodic_evaluation_unless_told():
    sampled = runner(eval_deterministic=False)
    env = gym.make("CartPole-v1")
    assert sampled.evaluate(env, 4, seed=1) == evaluate(sampled.ppo, env, 4, False, seed=1)
    assert sampled.evaluate(env, 4, True, seed=1) == evaluate(sampled.ppo, env, 4, True, seed=1)
    assert sampled.evaluate(env, 4, seed=1) != sampled.evaluate(env, 4, True, seed=1)
