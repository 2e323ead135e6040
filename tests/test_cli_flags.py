"""Every train.py flag reaches the PPO or AsyncPPO keyword it names (built in-process, nothing
trained), and a resumed run keeps its saved settings over new flags."""

from __future__ import annotations

import argparse
import json

import pytest
from conftest import REPO_ROOT

from AsyncTools import train_cli
from AsyncTools.AsyncPPO import ppo_for_env

# (flags, env id and other context flags, PPO keyword, the value it must get), each value
# different from what the same context gives without the flag
LEARNER_FLAGS = [
    (["--lr", "0.00123"], "CartPole-v1", "lr", 0.00123),
    (["--k-epochs", "7"], "CartPole-v1", "k_epochs", 7),
    (["--batch-size", "640"], "CartPole-v1", "batch_size", 640),
    (["--mini-batch-size", "160"], "CartPole-v1", "mini_batch_size", 160),
    (["--gamma", "0.977"], "CartPole-v1", "gamma", 0.977),
    (["--gae-lambda", "0.91"], "CartPole-v1", "GAE_lambda", 0.91),
    (["--policy-clip", "0.17"], "CartPole-v1", "policy_clip", 0.17),
    (["--entropy-coef", "0.0033"], "CartPole-v1", "entropy_coef", 0.0033),
    (["--value-clip", "0.3"], "CartPole-v1", "value_clip", 0.3),
    (["--value-coef", "0.8"], "CartPole-v1", "value_coef", 0.8),
    (["--max-grad-norm", "1.5"], "CartPole-v1", "max_grad_norm", 1.5),
    (["--no-orthogonal-init"], "CartPole-v1", "orthogonal_init", False),
    (["--target-kl", "0.05"], "CartPole-v1", "target_kl", 0.05),
    (["--log-std-init", "-0.7"], "Pendulum-v1", "log_std_init", -0.7),
    (["--beta", "0.4"], "CartPole-v1", "beta", 0.4),
    (["--normalize-obs"], "CartPole-v1", "normalize_obs", True),
    (["--no-normalize-obs"], "Pendulum-v1", "normalize_obs", False),
    (["--no-normalize-reward"], "CartPole-v1", "normalize_reward", False),
    (["--anneal-lr"], "CartPole-v1", "anneal_lr", True),
    (["--no-anneal-lr"], "Pendulum-v1 --preset none", "anneal_lr", False),
    (["--squash-actions"], "Pendulum-v1", "squash_actions", True),
    (["--use-rnd"], "CartPole-v1", "use_RND", True),
    (["--compile-update"], "CartPole-v1", "compile_update", True),
    (["--max-lag-weight", "2.0"], "CartPole-v1", "max_lag_weight", 2.0),
    (
        ["--compile-mode", "reduce-overhead", "--compile-update"],
        "CartPole-v1",
        "compile_mode",
        "reduce-overhead",
    ),
    (["--hidden-sizes", "32", "16"], "CartPole-v1", "hidden_sizes", [32, 16]),
    (["--critic-hidden-sizes", "48"], "CartPole-v1", "critic_hidden_sizes", [48]),
    (["--activation", "relu"], "CartPole-v1", "activation", "relu"),
    (["--seed", "5"], "CartPole-v1", "seed", 5),
]

# (flags, where on the runner, the value there)
RUNNER_FLAGS = [
    (["--num-envs", "3"], lambda r: r.num_envs, 3),
    (["--num-steps", "17"], lambda r: r.num_steps, 17),
    (["--steps", "4321"], lambda r: r.steps, 4321),
    (["--rollout", "episodes"], lambda r: r.rollout, "episodes"),
    (["--backend", "subprocess"], lambda r: r.env.backend_name, "SubprocessBackend"),
    (["--non-finite-rewards", "zero"], lambda r: r.env.non_finite_rewards, "zero"),
    (["--eval-every", "500"], lambda r: r.evaluation.every, 500),
    (["--eval-every", "0"], lambda r: r.evaluation, None),
    (["--eval-episodes", "3"], lambda r: r.evaluation.episodes, 3),
    (["--stop-at-return", "99"], lambda r: r.stop_at_return, 99.0),
    (["--checkpoint-every", "1234"], lambda r: r.checkpoint_every, 1234),
    (["--seed", "5"], lambda r: r.seed, 5),
    (["--quiet"], lambda r: r.progress_bar, False),
    (["--overlap"], lambda r: r.overlap is not None, True),
    (["--env", "Acrobot-v1"], lambda r: r.env_id, "Acrobot-v1"),
]

# train.py's experiment flags (add_experiment_flags) act around the run, in main(): each with the
# test of tests/test_experiments.py that checks what it does
EXPERIMENT_FLAGS = {
    "--presets": "test_train_with_presets_uses_the_files_settings_unless_a_flag_is_given",
    "--seeds": "test_seeds_train_one_run_per_seed_in_processes",
    "--jobs": "test_seeds_train_one_run_per_seed_in_processes",
    "--track": "test_track_offline_logs_every_rounds_scalars_at_its_step",
    "--wandb-project": "test_track_offline_logs_every_rounds_scalars_at_its_step",
    "--wandb-entity": "test_track_offline_logs_every_rounds_scalars_at_its_step",
}
SHIPPED_PRESETS = str(REPO_ROOT / "AsyncTools" / "presets.json")
# (flags, where on the runner, the value there) for those that reach the runner of a single run,
# through train_cli.checked: --preset none leaves Pendulum-v1's 16 envs and gamma 0.9 to the file
CHECKED_FLAGS = [
    (["--presets", SHIPPED_PRESETS, "--env", "Pendulum-v1", "--preset", "none"], lambda r: r.num_envs, 16),
    (["--presets", SHIPPED_PRESETS, "--env", "Pendulum-v1", "--preset", "none"], lambda r: r.ppo.gamma, 0.9),
    (["--seeds", "7"], lambda r: r.seed, 7),
]


def build(tmp_path, *flags: str):
    args = train_cli.parse_args([*flags, "--log-dir", str(tmp_path / "runs"), "--device", "cpu"])
    return train_cli.build(args)


def test_every_learner_flag_is_in_the_table():
    tested = {flags[0].removeprefix("--no-").removeprefix("--") for flags, *_ in LEARNER_FLAGS}
    named = {flag.removeprefix("--") for flag, *_ in train_cli.PPO_OPTIONS + train_cli.PPO_SWITCHES}
    assert named <= tested


def test_every_experiment_flag_is_tested_and_documented():
    parser = argparse.ArgumentParser()
    train_cli.add_experiment_flags(parser)
    named = {flag for action in parser._actions for flag in action.option_strings} - {"-h", "--help"}
    assert named == set(EXPERIMENT_FLAGS)
    tests = (REPO_ROOT / "tests" / "test_experiments.py").read_text()
    guides = "".join(page.read_text() for page in (REPO_ROOT / "docs" / "guides").glob("*.md"))
    for flag, test in EXPERIMENT_FLAGS.items():
        assert f"def {test}(" in tests and f'"{flag}"' in tests, flag
        assert f"`{flag}" in guides or f"{flag} " in guides, f"{flag} is in no guide of docs/guides"


@pytest.mark.parametrize(
    "flags, where, value", CHECKED_FLAGS, ids=["--presets num_envs", "--presets gamma", "--seeds 7"]
)
def test_an_experiment_flag_reaches_the_runner_through_checked(tmp_path, flags, where, value):
    args = train_cli.parse_args([*flags, "--log-dir", str(tmp_path / "runs"), "--device", "cpu"])
    _, runner = train_cli.build(train_cli.checked(args))
    try:
        assert where(runner) == value
    finally:
        runner.close()
    _, default_runner = build(tmp_path, *flags[flags.index("--env") :] if "--env" in flags else [])
    try:
        assert where(default_runner) != value, "the value must not be the default"
    finally:
        default_runner.close()


@pytest.mark.parametrize(
    "flags, env_id, keyword, value", LEARNER_FLAGS, ids=[" ".join(flags) for flags, *_ in LEARNER_FLAGS]
)
def test_a_learner_flag_reaches_its_ppo_keyword(tmp_path, flags, env_id, keyword, value):
    context = ["--env", *env_id.split()]
    ppo, runner = build(tmp_path, *context, *flags)
    default_ppo, default_runner = build(tmp_path, *context)
    runner.close(), default_runner.close()
    assert setting(ppo, keyword) == (pytest.approx(value) if isinstance(value, float) else value)
    assert setting(default_ppo, keyword) != setting(ppo, keyword), "the value must not be the default"


def setting(ppo, keyword: str):
    """A constructor option as the learner holds it (seed is an attribute, not in config)."""
    return ppo.config[keyword] if keyword in ppo.config else getattr(ppo, keyword)


@pytest.mark.parametrize(
    "flags, where, value", RUNNER_FLAGS, ids=[" ".join(flags) for flags, *_ in RUNNER_FLAGS]
)
def test_a_runner_flag_reaches_its_asyncppo_keyword(tmp_path, flags, where, value):
    _, runner = build(tmp_path, *flags)
    try:
        assert where(runner) == value
    finally:
        runner.close()


def test_resuming_a_run_older_than_a_flag_keeps_what_it_trained_with(tmp_path):
    """HalfCheetah's preset now sets value_coef, max_grad_norm and orthogonal_init; a run whose
    train_args.json predates those flags trained with PPO's defaults and resumes with them."""
    run = tmp_path / "run"
    run.mkdir()
    saved = dict(
        vars(train_cli.parse_args(["--env", "HalfCheetah-v5"])), hidden_sizes=[64, 64], activation="tanh"
    )
    for name in train_cli.UNRECORDED_IN_OLD_RUNS:
        del saved[name]
    (run / train_cli.ARGS_FILE).write_text(json.dumps(saved))
    args = train_cli.with_saved_settings(train_cli.parse_args(["--resume", str(run)]))
    assert (args.value_coef, args.max_grad_norm, args.orthogonal_init) == (0.5, 0.5, True)
    new_run = train_cli.parse_args(["--env", "HalfCheetah-v5", "--device", "cpu"])
    assert ppo_for_env("HalfCheetah-v5", **train_cli.ppo_options(new_run)).value_coef != 0.5


def test_resume_keeps_the_saved_settings_over_new_flags_and_names_them(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    saved = dict(vars(train_cli.parse_args([])), lr=0.0077, num_envs=3, steps=1000)
    (run / train_cli.ARGS_FILE).write_text(json.dumps(saved))
    args = train_cli.with_saved_settings(
        train_cli.parse_args(
            ["--resume", str(run), "--lr", "0.5", "--num-envs", "9", "--steps", "2000", "--quiet"]
        )
    )
    assert (args.lr, args.num_envs) == (0.0077, 3)  # the run's own settings
    assert (args.steps, args.quiet) == (2000, True)  # RESUME_KEEPS from the new command
    warning = capsys.readouterr().err
    ignored = warning.split("--resume: ignoring ")[1].split(": a resumed run")[0]
    assert sorted(ignored.split(", ")) == ["--lr 0.5", "--num-envs 9"]
