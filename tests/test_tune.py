"""ppo-tune: the search space, the study (storage, budget, resume, several processes), pruning,
interrupts, the presets it writes and their round trip through train.py --presets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from AsyncTools import search_space, train_cli, tune_cli, tuning
from AsyncTools.AsyncPPO import ppo_for_env
from AsyncTools.presets import read_presets_file
from AsyncTools.search_space import FAMILIES, largest_rollout_log2, sample, settings_from_params

REPO = Path(__file__).resolve().parents[1]
TINY = ["--env", "CartPole-v1", "--steps", "2048", "--eval-episodes", "2", "--eval-every", "512"]


def journal(folder: Path) -> optuna.storages.JournalStorage:
    return tuning.open_storage(None, folder)


def drawn_settings(family: str, steps: int, count: int = 150) -> list[dict]:
    """`count` settings drawn at random from the family's space."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    settings = []
    for _ in range(count):
        trial = study.ask()
        settings.append(sample(trial, family, steps))
        study.tell(trial, 0.0)
    return settings


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("steps", [2_000, 100_000, 10_000_000])
def test_every_draw_is_valid_by_construction(family, steps):
    for drawn in drawn_settings(family, steps):
        ppo, runner = drawn["ppo"], drawn["runner"]
        rollout = runner["num_envs"] * runner["num_steps"]
        assert ppo["batch_size"] == rollout  # one update per round
        assert 1 <= ppo["mini_batch_size"] <= rollout and rollout % ppo["mini_batch_size"] == 0
        assert runner["num_steps"] >= 8 and runner["num_envs"] >= 1
        assert rollout <= max(2 ** search_space.ROLLOUT_LOG2[family][0], steps // search_space.MIN_UPDATES)
        assert search_space.LR_RANGE[family][0] <= ppo["lr"] <= search_space.LR_RANGE[family][1]
        assert ("hidden_sizes" in ppo) == (family != "image")  # the CNN is not searched


def test_the_rollout_cap_follows_the_budget():
    assert largest_rollout_log2("discrete", 2_000) == 8  # the family's smallest: 256 steps
    assert largest_rollout_log2("discrete", 100_000) == 13  # 8192 * 8 <= 100k < 16384 * 8
    assert largest_rollout_log2("continuous", 10**9) == 14  # the family's largest


def test_settings_are_rebuilt_from_a_trials_params():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    drawn = sample(trial, "continuous", 200_000)
    assert settings_from_params(trial.params) == drawn
    assert sample(optuna.trial.FixedTrial(trial.params), "continuous", 200_000) == drawn


def continuous_defaults() -> dict:
    """The continuous family's defaults in the presets format, all of PPO's settings given."""
    ppo = ppo_for_env("Pendulum-v1", preset=False, device="cpu")
    return {"ppo": dict(ppo.config), "runner": {"num_envs": 8, "num_steps": 256}}


def test_known_settings_go_back_to_the_params_that_draw_them():
    params = search_space.params_of(continuous_defaults(), "continuous", 200_000)
    assert params["rollout_log2"] == 11 and params["num_envs_log2"] == 3 and params["minibatches_log2"] == 5
    assert params["entropy_coef"] == 1e-8  # no entropy bonus: the range's low end
    rebuilt = sample(optuna.trial.FixedTrial(params), "continuous", 200_000)
    assert rebuilt["runner"] == {"num_envs": 8, "num_steps": 256}
    expected = {**continuous_defaults()["ppo"], "entropy_coef": 1e-8}
    assert rebuilt["ppo"] == {name: expected[name] for name in rebuilt["ppo"]}
    assert rebuilt["ppo"]["normalize_obs"] is True and rebuilt["ppo"]["lr"] == 3e-4


@pytest.mark.parametrize(
    "change, message",
    [
        ({"ppo": {"k_epochs": 4}}, r"k_epochs=4: outside the search space \(3, 5, 10, 20\)"),
        ({"ppo": {"batch_size": 1024}}, r"batch_size=1024: .*num_envs x num_steps = 2048"),
        ({"ppo": {"mini_batch_size": 96}}, r"mini_batch_size=96: does not divide the batch of 2048"),
        ({"ppo": {"lr": 0.1}}, r"lr=0.1: outside the search space \(1e-05 to 0.003\)"),
        ({"ppo": {"hidden_sizes": [32]}}, r"hidden_sizes=\(32,\): outside"),
        ({"ppo": {"normalize_obs": 1}}, r"normalize_obs=1: outside the search space \(False, True\)"),
        (
            {"runner": {"num_envs": 6, "num_steps": 512}, "ppo": {"batch_size": 3072}},
            r"num_steps=3072: .*power",
        ),
        ({"runner": {"num_envs": 256, "num_steps": 8}}, r"num_envs=256: outside .*from 1 to 16"),
    ],
)
def test_settings_outside_the_search_space_are_named(change, message):
    settings = continuous_defaults()
    for part, values in change.items():
        settings[part].update(values)
    with pytest.raises(ValueError, match=message):
        search_space.params_of(settings, "continuous", 200_000)
    with pytest.raises(ValueError, match=r"num_envs x num_steps=2048: .*from 512 to 512"):
        search_space.params_of(continuous_defaults(), "continuous", 4096)  # a budget too short for it


def test_the_current_settings_are_queued_once_as_the_next_trial(tmp_path, capsys):
    user_env = "tests.user_envs:SlopeCorridor-v0"  # the user's own continuous env: no preset
    spec = tuning.TuneSpec((user_env,), 200_000, 20_000, 2, (0,), tmp_path, [])
    spec = replace(spec, family=tuning.checked_family(spec))
    study = tuning.open_study(journal(tmp_path), "q", spec, None, None)
    assert tuning.enqueue_current(study, spec) is True
    assert tuning.enqueue_current(study, spec) is False  # the same command again: not twice
    (queued,) = study.get_trials(deepcopy=False)
    assert queued.state == optuna.trial.TrialState.WAITING
    trial = study.ask()  # the queued trial comes first, with today's continuous defaults
    drawn = sample(trial, "continuous", 200_000)
    assert drawn["runner"] == {"num_envs": 8, "num_steps": 256}
    assert drawn["ppo"]["mini_batch_size"] == 64 and drawn["ppo"]["anneal_lr"] is True
    fixed = tuning.TuneSpec(
        ("Pendulum-v1",), 200_000, 20_000, 2, (0,), tmp_path, ["--lr", "1e-3"], "continuous"
    )
    assert tuning.current_settings(fixed)["ppo"]["lr"] == 1e-3  # a flag given to the study wins


def test_defaults_outside_the_search_space_cannot_be_queued(tmp_path, capsys):
    argv = [*TINY, "--steps", "200000", "--enqueue-defaults", "--log-dir", str(tmp_path)]
    assert tune_cli.main(argv) == 2  # the discrete defaults' 4 epochs are not among the draws
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "ppo-tune: error: --enqueue-defaults: the settings train.py uses on CartPole-v1 are not in "
        "the discrete search space at 200000 steps: k_epochs=4: outside the search space (3, 5, 10, 20)"
    )


def test_an_unknown_family_is_refused():
    with pytest.raises(ValueError, match="family: expected one of"):
        sample(optuna.trial.FixedTrial({}), "board-game", 1000)


def spec_for(folder: Path, env: str = "CartPole-v1", steps: int = 2048, **more) -> tuning.TuneSpec:
    return tuning.TuneSpec(
        **{
            "envs": (env,),
            "steps": steps,
            "eval_every": 512,
            "eval_episodes": 2,
            "seeds": (0,),
            "folder": folder,
            "train_argv": [],
            "family": "discrete",
            **more,
        }
    )


def test_a_study_name_cannot_be_reused_for_another_env_or_budget(tmp_path):
    storage = journal(tmp_path)
    tuning.open_study(storage, "s", spec_for(tmp_path), None, None)
    tuning.open_study(storage, "s", spec_for(tmp_path), None, None)  # the same: reopened
    with pytest.raises(ValueError, match=r"--study s: this study exists for .*CartPole-v1.*not .*Acrobot-v1"):
        tuning.open_study(storage, "s", spec_for(tmp_path, env="Acrobot-v1"), None, None)
    with pytest.raises(ValueError, match=r"--study s: .*'steps': 2048.*'steps': 4096"):
        tuning.open_study(storage, "s", spec_for(tmp_path, steps=4096), None, None)


def test_a_study_keeps_its_time_limit_and_aggregate(tmp_path):
    storage = journal(tmp_path)
    tuning.open_study(storage, "t", spec_for(tmp_path, trial_timeout=30.0), None, None)
    with pytest.raises(ValueError, match=r"--study t: .*'trial_timeout': 30.0.*not \{"):
        tuning.open_study(storage, "t", spec_for(tmp_path), None, None)  # reopened without it
    tuning.open_study(storage, "m", spec_for(tmp_path, aggregate="min"), None, None)
    tuning.open_study(storage, "m", spec_for(tmp_path, aggregate="min"), None, None)
    with pytest.raises(ValueError, match=r"--study m: .*'aggregate': 'min'"):
        tuning.open_study(storage, "m", spec_for(tmp_path), None, None)
    assert "aggregate" not in tuning.open_study(storage, "n", spec_for(tmp_path), None, None).user_attrs


def test_the_aggregate_flag_reaches_the_study(tmp_path, capsys):
    tuning.open_study(journal(tmp_path / "s"), "s", spec_for(tmp_path), None, None)  # mean
    assert tune_cli.main([*TINY, "--aggregate", "min", "--study", "s", "--log-dir", str(tmp_path)]) == 2
    assert "not {" in (err := capsys.readouterr().err) and "'aggregate': 'min'}" in err


@pytest.mark.parametrize("lower, pruned", [(-100.0, False), (10.0, True)])
def test_each_envs_final_return_is_reported_at_its_budget_and_can_prune_the_rest(
    tmp_path, monkeypatch, lower, pruned
):
    """A run stopped short of its budget by the time limit still reports its final return at the
    budget's step, where finished trials are compared; a trial below the pruner's mark there
    trains no further env."""
    references = {"CartPole-v1": tuning.Reference(0.0, 100.0), "Acrobot-v1": tuning.Reference(-500.0, -100.0)}
    spec = replace(spec_for(tmp_path, references=references), envs=("CartPole-v1", "Acrobot-v1"))
    trained = []

    def stopped_by_the_time_limit(trial, spec, index, drawn):
        trained.append(spec.envs[index])
        return SimpleNamespace(stopped_by="timeout"), [50.0, -300.0][index]

    monkeypatch.setattr(tuning, "train_trial", stopped_by_the_time_limit)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=lower))
    trial = study.ask()
    if pruned:
        with pytest.raises(optuna.TrialPruned):
            tuning.run_trial(trial, spec)
        assert trained == ["CartPole-v1"]
    else:
        assert tuning.run_trial(trial, spec) == pytest.approx(0.5)  # (0.5 + 0.5) / 2
        assert trained == ["CartPole-v1", "Acrobot-v1"]
    steps = study.trials[0].intermediate_values
    assert steps[2048] == pytest.approx(0.5) and (pruned or steps[4096 + 2048] == pytest.approx(0.5))


def test_a_trials_value_is_the_mean_or_the_lowest_of_its_envs_scores(tmp_path):
    references = {"A-v0": tuning.Reference(0.0, 100.0), "B-v0": tuning.Reference(-10.0, 10.0)}
    returns = {"A-v0": 250.0, "B-v0": -5.0}  # 2.5 and 0.25 on their scales
    spec = spec_for(tmp_path, references=references)
    assert spec.value(returns) == pytest.approx(1.375)
    assert replace(spec, aggregate="min").value(returns) == pytest.approx(0.25)


@pytest.mark.parametrize("lower", [10.0, -1.0], ids=["pruner says stop", "pruner says go on"])
def test_a_min_study_prunes_only_below_the_median_trials_value(tmp_path, lower):
    """By its lowest env's score, a trial far ahead on an env where every trial does well is not
    stopped there by the median rule's noise; below the median complete value it is."""
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=lower))
    for value in (0.2, 0.3, 0.4):  # the complete trials' lowest scores: median 0.3
        study.add_trial(optuna.trial.create_trial(value=value))
    trial = study.ask()
    trial.report(1.2, 100)  # below the threshold when lower=10: the pruner says stop
    mean, lowest = spec_for(tmp_path), spec_for(tmp_path, aggregate="min")
    says = lower > 1.2
    assert mean.should_prune(trial, 0, 1.2) is says
    assert lowest.should_prune(trial, 0, 1.2) is False  # an env above the median value
    assert lowest.should_prune(trial, 0, 0.25) is says  # the trial's value can only be lower
    callback = tuning.pruning_callback(
        trial, 500, should_prune=lambda score: lowest.should_prune(trial, 0, score)
    )
    assert callback(None, {"steps": 1000, "eval_return": 1.2}) is None
    assert callback(None, {"steps": 1500, "eval_return": 0.1}) is (False if says else None)


def test_a_later_env_is_judged_on_its_own_evaluations(tmp_path):
    """Optuna's median rule compares a trial's best value at any step: in a study across envs,
    a trial far ahead on the first env would never be stopped on a later one."""
    spec = replace(spec_for(tmp_path), envs=("CartPole-v1", "Acrobot-v1"))  # env 1 from step 4096
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    study.add_trial(optuna.trial.create_trial(value=0.6, intermediate_values={512: 1.0, 4608: 0.6}))
    trial = study.ask()
    trial.report(2.0, 512)  # far ahead on the first env
    assert spec.should_prune(trial, 0, 2.0) is False
    trial.report(0.1, 4608)  # far behind on the second
    assert not trial.should_prune()  # Optuna's own verdict: its best, 2.0, is above 0.6
    assert spec.should_prune(trial, 1, 0.1) is True
    assert spec.should_prune(trial, 0, 0.1) is False  # judged from the first env on: its 2.0 counts


def test_a_trial_trains_each_env_on_each_seed_and_scores_their_mean(tmp_path, monkeypatch):
    references = {"CartPole-v1": tuning.Reference(0.0, 100.0), "Acrobot-v1": tuning.Reference(-500.0, -100.0)}
    spec = replace(
        spec_for(tmp_path, references=references), envs=("CartPole-v1", "Acrobot-v1"), seeds=(3, 7)
    )
    finals = {
        ("CartPole-v1", 3): 40.0,
        ("CartPole-v1", 7): 80.0,
        ("Acrobot-v1", 3): -200.0,
        ("Acrobot-v1", 7): -400.0,
    }
    trained = []

    def run(trial, spec, index, drawn):
        env, seed = spec.runs[index]
        assert tuning.trial_args(spec, trial.number, drawn, env, seed).seed == seed
        trained.append(spec.run_key(index))
        return SimpleNamespace(stopped_by=None), finals[env, seed]

    monkeypatch.setattr(tuning, "train_trial", run)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    # CartPole: mean 60, 0.6 on its scale; Acrobot: mean -300, 0.5
    assert tuning.run_trial(trial, spec) == pytest.approx(0.55)
    assert trained == ["CartPole-v1 seed3", "CartPole-v1 seed7", "Acrobot-v1 seed3", "Acrobot-v1 seed7"]
    assert trial.user_attrs["returns"] == {"CartPole-v1": 60.0, "Acrobot-v1": -300.0}
    assert trial.user_attrs["seed_returns"] == {"CartPole-v1": [40.0, 80.0], "Acrobot-v1": [-200.0, -400.0]}
    # each run's final score at its own budget step: run k from step 2 x k x 2048 on
    assert study.trials[0].intermediate_values == pytest.approx(
        {2048: 0.4, 6144: 0.8, 10240: 0.75, 14336: 0.25}
    )
    assert tuning.fixed_args(spec).seed == 3  # the study's first seed: its family check and settings


def test_a_trial_below_the_mark_after_its_first_seed_trains_no_other(tmp_path, monkeypatch):
    spec = spec_for(tmp_path, seeds=(0, 1, 2))
    trained = []

    def run(trial, spec, index, drawn):
        trained.append(spec.runs[index])
        return SimpleNamespace(stopped_by=None), 10.0

    monkeypatch.setattr(tuning, "train_trial", run)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=50.0))
    with pytest.raises(optuna.TrialPruned):
        tuning.run_trial(study.ask(), spec)
    assert trained == [("CartPole-v1", 0)]


def test_a_study_keeps_its_seeds(tmp_path):
    storage = journal(tmp_path)
    study = tuning.open_study(storage, "s", spec_for(tmp_path, seeds=(0, 1)), None, None)
    assert study.user_attrs["seeds"] == [0, 1]
    tuning.open_study(storage, "s", spec_for(tmp_path, seeds=(0, 1)), None, None)
    with pytest.raises(ValueError, match=r"--study s: .*'seeds': \[0, 1\]\}, not \{.*'seeds': \[0, 2\]"):
        tuning.open_study(storage, "s", spec_for(tmp_path, seeds=(0, 2)), None, None)
    with pytest.raises(
        ValueError, match=r"--study s: .*'seeds': \[0, 1\]\}, not \{'env'[^}]*'eval_episodes': 2\};"
    ):
        tuning.open_study(storage, "s", spec_for(tmp_path), None, None)  # one seed: no mean over seeds
    assert "seeds" not in tuning.open_study(storage, "one", spec_for(tmp_path), None, None).user_attrs


def test_seed_and_seeds_are_one_or_the_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tune_cli.main([*TINY, "--seed", "1", "--seeds", "1", "2", "--log-dir", str(tmp_path)])
    assert stop.value.code == 2
    assert "argument --seeds: not allowed with argument --seed" in capsys.readouterr().err


def test_a_database_storage_fails_and_retries_the_trials_of_dead_workers(tmp_path):
    storage = tuning.open_storage(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert storage.get_heartbeat_interval() == tuning.HEARTBEAT_SECONDS
    assert isinstance(
        storage.get_heartbeat_stale_trial_callback(), optuna.storages.RetryHeartbeatStaleTrialCallback
    )
    assert isinstance(tuning.open_storage(None, tmp_path), optuna.storages.JournalStorage)
    assert (tmp_path / tuning.JOURNAL_FILE).exists()


def test_a_storage_that_cannot_be_opened_names_storage(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=r"--storage .*file/x.log: cannot be opened"):
        tuning.open_storage(str(blocker / "x.log"), tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trials", "0"], "--trials: expected a positive number, got 0"),
        (["--trial-timeout", "0"], "--trial-timeout: expected a positive number, got 0.0"),
        (["--trial-timeout", "nan"], "--trial-timeout: expected a positive number, got nan"),
        (["--steps", "-5"], "--steps: expected a positive number, got -5"),
        (["--jobs", "0"], "--jobs: expected a positive number of processes, got 0"),
        (["--storage", "nosuchdb://x"], "--storage nosuchdb://x: cannot be opened"),
        (["--lr", "abc"], "train.py flags '--lr abc': argument --lr: invalid float value: 'abc'"),
        (["--hiden-sizes", "4"], "train.py flags '--hiden-sizes 4': unrecognized arguments: --hiden-sizes 4"),
        (["--lr", "-1"], "lr must be a positive finite number, got -1.0"),
        (["--seeds", "1", "2", "1"], "--seeds: expected distinct seeds, got 1 2 1"),
        (["--track"], "--track: not an option of a trial"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert tune_cli.main([*argv, "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ppo-tune: error: {message}") and err.count("\n") == 1


def test_study_of_another_env_exits_2(tmp_path, capsys):
    storage = journal(tmp_path / "CartPole-v1_2048")
    tuning.open_study(storage, "CartPole-v1_2048", spec_for(tmp_path), None, None)
    argv = [
        "--env",
        "Acrobot-v1",
        "--steps",
        "2048",
        "--study",
        "CartPole-v1_2048",
        "--log-dir",
        str(tmp_path),
    ]
    assert tune_cli.main(argv) == 2
    assert "--study CartPole-v1_2048: this study exists for" in capsys.readouterr().err


def test_the_command_is_installed_and_at_the_root():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["ppo-tune"] == "AsyncTools.tune_cli:main"
    assert [r.split(">")[0] for r in project["optional-dependencies"]["tune"]] == ["optuna"]
    assert [r.split(">")[0] for r in project["optional-dependencies"]["track"]] == ["wandb"]
    assert "from AsyncTools.tune_cli import main" in (REPO / "tune.py").read_text()


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_:
        tune_cli.main(["--help"])
    assert exit_.value.code == 0
    assert "--trials" in capsys.readouterr().out


def test_a_failed_trial_is_recorded_and_the_study_goes_on_until_failures_pile_up(tmp_path, monkeypatch):
    outcomes = iter([FloatingPointError("diverged"), None] + [RuntimeError("env broke")] * 5)

    def train_trial(trial, spec, index, drawn):
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        return SimpleNamespace(stopped_by=None), 1.5

    monkeypatch.setattr(tuning, "train_trial", train_trial)
    spec = spec_for(tmp_path)
    study = tuning.open_study(journal(tmp_path), "f", spec, optuna.samplers.RandomSampler(seed=0), None)
    with pytest.raises(RuntimeError, match=r"the last 5 trials failed .* the study stops here"):
        tuning.work(study, spec, trials=10, deadline=None)
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "COMPLETE"] + ["FAIL"] * 5
    assert study.get_trials()[1].value == 1.5


def test_sigterm_and_failures_give_their_exit_status(tmp_path, monkeypatch, capsys):
    argv = [*TINY, "--trials", "2", "--log-dir", str(tmp_path)]
    monkeypatch.setattr(tune_cli, "work", lambda *args: (_ for _ in ()).throw(tuning.Interrupted("SIGTERM")))
    assert tune_cli.main(argv) == 143
    monkeypatch.setattr(tune_cli, "work", lambda *args: (_ for _ in ()).throw(tuning.Interrupted()))
    assert tune_cli.main(argv) == 130
    monkeypatch.setattr(tune_cli, "work", lambda *args: (_ for _ in ()).throw(RuntimeError("the last 5")))
    assert tune_cli.main(argv) == 1
    assert "ppo-tune: error: the last 5" in capsys.readouterr().err


def test_the_presets_hold_the_flags_fixed_for_the_study(tmp_path):
    spec = tuning.TuneSpec(
        ("CartPole-v1",), 2048, 512, 2, (0,), tmp_path, ["--value-clip", "0.1", "--gamma", "0.97"]
    )
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    drawn = sample(trial, "discrete", spec.steps)
    used = tuning.effective_settings(spec, tuning.trial_args(spec, 0, drawn), drawn)
    assert used["ppo"]["value_clip"] == 0.1  # fixed, not searched: kept for train.py --presets
    assert used["ppo"]["gamma"] == 0.97  # fixed: wins over the draw
    assert used["ppo"]["lr"] == drawn["ppo"]["lr"] and used["runner"] == drawn["runner"]


def test_the_report_makes_the_study_folder_when_no_trial_ran_here(tmp_path, capsys):
    folder = tmp_path / "elsewhere" / "s"
    storage = tuning.open_storage(f"sqlite:///{tmp_path / 'study.db'}", folder)
    study = tuning.open_study(storage, "s", spec_for(folder), None, None)
    args = SimpleNamespace(storage="sqlite:///x.db")
    assert tune_cli.report(study, spec_for(folder), args) == 0
    assert folder.is_dir() and "study 's'" in capsys.readouterr().out


class FakeTrial:
    def __init__(self, prune: bool):
        self.reported: list[tuple[float, int]] = []
        self.prune = prune

    def report(self, value: float, step: int) -> None:
        self.reported.append((value, step))

    def should_prune(self) -> bool:
        return self.prune


def test_the_pruning_callback_reports_evaluations_and_stops_when_told():
    keep, stop = FakeTrial(prune=False), FakeTrial(prune=True)
    assert tuning.pruning_callback(keep, 500)(None, {"steps": 100, "eval_return": None}) is None
    assert keep.reported == []  # rounds without an evaluation report nothing
    assert tuning.pruning_callback(keep, 500)(None, {"steps": 512, "eval_return": 20.5}) is None
    assert tuning.pruning_callback(keep, 500)(None, {"steps": 1536, "eval_return": 21.5}) is None
    assert keep.reported == [(20.5, 500), (21.5, 1500)]  # at the schedule's steps, where trials meet
    assert tuning.pruning_callback(stop, 500)(None, {"steps": 1024, "eval_return": 3.0}) is False
    # within the warm-up the pruner is not asked, whatever it would say; from its step on, it is
    assert tuning.pruning_callback(stop, 500, warmup=1500)(None, {"steps": 1024, "eval_return": 3.0}) is None
    assert tuning.pruning_callback(stop, 500, warmup=1500)(None, {"steps": 1600, "eval_return": 3.0}) is False


def trials_of(folder: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=journal(folder)).get_trials()


@pytest.mark.slow
def test_a_tiny_study_its_presets_and_train_presets_round_trip(tmp_path, capsys):
    log_dir = tmp_path / "tune"
    assert tune_cli.main([*TINY, "--trials", "3", "--log-dir", str(log_dir), "--sampler-seed", "0"]) == 0
    folder = log_dir / "CartPole-v1_2048"
    trials = trials_of(folder, "CartPole-v1_2048")
    assert len(trials) == 3 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    for trial in trials:  # each trial is a train.py run folder with the drawn settings
        (run_dir,) = trial.user_attrs["run_dirs"].values()
        args = json.loads((Path(run_dir) / "train_args.json").read_text())
        settings = trial.user_attrs["settings"]
        assert args["lr"] == settings["ppo"]["lr"] and args["num_envs"] == settings["runner"]["num_envs"]
        assert args["mini_batch_size"] == settings["ppo"]["mini_batch_size"]
        assert trial.intermediate_values  # the evaluations were reported
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("trial  return"))
    assert lines[header + 1].split()[:2] == [str(best.number), f"{best.value:.1f}"]  # the best first
    presets = folder / "presets.json"
    entry = json.loads(presets.read_text())["CartPole-v1"]
    assert entry["source"].startswith("tuned here: ppo-tune study 'CartPole-v1_2048', best of 3")
    assert (
        read_presets_file(presets, "CartPole-v1", train_cli.OPTION_ATTRS)["ppo"]
        == best.user_attrs["settings"]["ppo"]
    )
    # one flag away: train.py --presets trains with the best settings
    runs, weights = str(tmp_path / "runs"), str(tmp_path / "w")
    train = ["--steps", "300", "--quiet", "--eval-every", "0", "--log-dir", runs, "--save-dir", weights]
    assert train_cli.main(["--env", "CartPole-v1", "--presets", str(presets), *train]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    used = json.loads((run / "train_args.json").read_text())
    for name, value in entry["ppo"].items():
        assert used[train_cli.OPTION_ATTRS[name]] == value, name
    assert (used["num_envs"], used["num_steps"]) == (
        entry["runner"]["num_envs"],
        entry["runner"]["num_steps"],
    )


@pytest.mark.slow
def test_the_same_command_resumes_the_study_up_to_its_total(tmp_path):
    argv = [*TINY, "--log-dir", str(tmp_path), "--pruner", "none"]
    assert tune_cli.main([*argv, "--trials", "2"]) == 0
    first = trials_of(tmp_path / "CartPole-v1_2048", "CartPole-v1_2048")
    assert tune_cli.main([*argv, "--trials", "3"]) == 0
    assert tune_cli.main([*argv, "--trials", "3"]) == 0  # reached: no new trial
    trials = trials_of(tmp_path / "CartPole-v1_2048", "CartPole-v1_2048")
    assert [t.number for t in trials] == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials)
    assert [(t.params, t.value) for t in trials[:2]] == [(t.params, t.value) for t in first]


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


@pytest.mark.slow
def test_a_pruned_trial_stops_at_its_first_evaluation_past_the_warm_up(tmp_path):
    spec = spec_for(tmp_path)
    study = tuning.open_study(
        journal(tmp_path), "p", spec, optuna.samplers.RandomSampler(seed=0), AlwaysPrune()
    )
    tuning.work(study, spec, trials=1, deadline=None)
    (trial,) = study.get_trials()
    assert trial.state.name == "PRUNED"
    *before, last = sorted(trial.intermediate_values)  # long before 2048 steps
    warmup = 2048 // tuning.PRUNE_AFTER
    assert all(step < warmup for step in before) and warmup <= last < 2048


@pytest.mark.slow
@pytest.mark.parametrize("database", [False, True], ids=["journal file", "sqlite"])
def test_two_processes_share_one_study_without_losing_or_repeating_a_trial(tmp_path, database):
    storage = ["--storage", f"sqlite:///{tmp_path / 'study.db'}"] if database else []
    code = tune_cli.main(
        [*TINY, "--trials", "4", "--jobs", "2", "--log-dir", str(tmp_path), "--pruner", "none", *storage]
    )
    assert code == 0
    if database:
        trials = optuna.load_study(study_name="CartPole-v1_2048", storage=storage[1]).get_trials()
    else:
        trials = trials_of(tmp_path / "CartPole-v1_2048", "CartPole-v1_2048")
    numbers = [t.number for t in trials]
    assert len(set(numbers)) == len(numbers) and 4 <= len(trials) <= 5  # two may finish at once
    assert all(t.state.name == "COMPLETE" for t in trials)
    run_dirs = {t.user_attrs["run_dirs"]["CartPole-v1"] for t in trials}
    assert len(run_dirs) == len(trials) and all(Path(d).is_dir() for d in run_dirs)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_trials_and_the_same_command_goes_on(tmp_path):
    budget = ["--steps", "30000", "--eval-every", "3000", "--trials", "2", "--pruner", "none"]
    argv = [sys.executable, "tune.py", *TINY, *budget, "--log-dir", str(tmp_path)]
    folder = tmp_path / "CartPole-v1_30000"
    process = subprocess.Popen(argv, cwd=REPO, start_new_session=True, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not logged_a_round(folder / "trial_0000"):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 130, out
    assert "interrupted; the finished trials are kept" in out
    (interrupted, queued) = trials_of(folder, "CartPole-v1_30000")
    assert (interrupted.state.name, queued.state.name) == ("FAIL", "WAITING")
    assert queued.system_attrs["fixed_params"] == interrupted.params  # tried again first
    assert tune_cli.main([*TINY, *budget, "--log-dir", str(tmp_path)]) == 0  # the same command goes on
    trials = trials_of(folder, "CartPole-v1_30000")
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == interrupted.params


def logged_a_round(trial_folder: Path) -> bool:
    """The trial's run has written its first progress row."""
    return any(len(file.read_text().splitlines()) > 1 for file in trial_folder.glob("*/progress.csv"))


def write_references(folder: Path, table: dict) -> str:
    file = folder / "references.json"
    file.write_text(json.dumps(table))
    return str(file)


def test_a_reference_puts_a_return_on_the_envs_scale(tmp_path):
    file = write_references(
        tmp_path,
        {
            "CartPole-v1": {"random": 20, "reference": 220.0, "source": "x"},
            "Acrobot-v1": {"random": -500, "reference": -100},
        },
    )
    references = tuning.read_references(file, ["CartPole-v1", "Acrobot-v1"])
    assert references["CartPole-v1"].score(120.0) == 0.5 and references["CartPole-v1"].score(20) == 0
    assert references["Acrobot-v1"].score(-100) == 1 and references["Acrobot-v1"].score(-300) == 0.5
    spec = spec_for(tmp_path, references=references)
    assert spec.score("CartPole-v1", 220) == 1.0
    assert spec_for(tmp_path).score("CartPole-v1", 220) == 220  # no references: the return itself


@pytest.mark.parametrize(
    "table, message",
    [
        ({"Acrobot-v1": {"random": -500, "reference": -100}}, r"expected 'CartPole-v1': .*got None"),
        ({"CartPole-v1": {"random": 20, "reference": 20}}, r"expected 'CartPole-v1': .*another number"),
        ({"CartPole-v1": {"random": 20, "reference": "500"}}, r".*got \{'random': 20, 'reference': '500'\}"),
        ({"CartPole-v1": {"random": True, "reference": 500}}, r"expected 'CartPole-v1'"),
        ({"CartPole-v1": {"reference": 500}}, r"expected 'CartPole-v1'"),
    ],
)
def test_a_bad_reference_file_names_the_env_and_what_came(tmp_path, table, message):
    with pytest.raises(ValueError, match=r"--reference .*references.json: " + message):
        tuning.read_references(write_references(tmp_path, table), ["CartPole-v1"])


def test_an_unreadable_reference_file_names_reference(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"--reference .*bad.json: cannot be read"):
        tuning.read_references(tmp_path / "bad.json", ["CartPole-v1"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env", "CartPole-v1", "Acrobot-v1"], "--reference: a study across several envs needs"),
        (
            ["--env", "CartPole-v1", "CartPole-v1", "--reference", "r.json"],
            "--env: expected distinct env ids",
        ),
        (
            ["--env", "CartPole-v1", "Pendulum-v1", "--reference", "REFS"],
            "--env: the envs of one study share one family's search space; "
            "CartPole-v1 is discrete, Pendulum-v1 is continuous",
        ),
    ],
)
def test_a_study_across_envs_is_checked_before_it_starts(tmp_path, capsys, argv, message):
    refs = {"random": 0, "reference": 1}
    file = write_references(tmp_path, {"CartPole-v1": refs, "Pendulum-v1": refs})
    argv = [arg.replace("REFS", file) for arg in argv]
    assert tune_cli.main([*argv, "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ppo-tune: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "CartPole-v1+Pendulum-v1_50000").exists()


def test_a_study_cannot_be_reopened_with_other_references(tmp_path):
    storage = journal(tmp_path)
    references = {"CartPole-v1": tuning.Reference(20.0, 200.0)}
    tuning.open_study(storage, "s", spec_for(tmp_path, references=references), None, None)
    tuning.open_study(storage, "s", spec_for(tmp_path, references=references), None, None)
    other = {"CartPole-v1": tuning.Reference(20.0, 300.0)}
    with pytest.raises(ValueError, match=r"--study s: .*'references': \{'CartPole-v1': \[20.0, 300.0\]\}"):
        tuning.open_study(storage, "s", spec_for(tmp_path, references=other), None, None)


def test_the_pruning_callback_puts_later_envs_after_earlier_ones_on_their_scale():
    trial = FakeTrial(prune=False)
    callback = tuning.pruning_callback(trial, 512, offset=4096, score=lambda value: value / 100)
    assert callback(None, {"steps": 600, "eval_return": 50.0}) is None
    assert trial.reported == [(0.5, 4608)]
    # the warm-up counts in this env's own steps, not the study's offset ones
    stop = FakeTrial(prune=True)
    later_env = tuning.pruning_callback(stop, 512, offset=4096, warmup=1024)
    assert later_env(None, {"steps": 600, "eval_return": 50.0}) is None
    assert later_env(None, {"steps": 1100, "eval_return": 50.0}) is False


@pytest.mark.slow
def test_a_study_across_envs_scores_the_mean_normalised_return(tmp_path, capsys):
    envs = ["CartPole-v1", "tests.user_envs:Corridor-v0"]  # the user's own env, registered in its module
    file = write_references(
        tmp_path,
        {envs[0]: {"random": 20.0, "reference": 200.0}, envs[1]: {"random": -1.0, "reference": 1.0}},
    )
    argv = [*TINY, "--trials", "2", "--pruner", "none", "--log-dir", str(tmp_path), "--reference", file]
    argv[1:2] = envs
    assert tune_cli.main(argv) == 0
    name = "CartPole-v1+tests.user_envs-Corridor-v0_2048"
    trials = trials_of(tmp_path / name, name)
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        returns = trial.user_attrs["returns"]
        expected = ((returns[envs[0]] - 20) / 180 + (returns[envs[1]] + 1) / 2) / 2
        assert trial.value == pytest.approx(expected)
        assert set(trial.user_attrs["run_dirs"]) == set(envs)
        steps = sorted(trial.intermediate_values)
        first, second = [s for s in steps if s < 4096], [s for s in steps if s >= 4096]
        assert first[0] == 512 and first[-1] == 2048 and second == [4096 + s for s in first]
    best = max(trials, key=lambda t: t.value)
    presets = json.loads((tmp_path / name / "presets.json").read_text())
    assert set(presets) == set(envs) and presets[envs[0]] == presets[envs[1]]
    assert (
        f"mean normalised return {best.value:.3f} across CartPole-v1, tests.user_envs:Corridor-v0"
        in (presets[envs[0]]["source"])
    )
    assert (
        read_presets_file(tmp_path / name / "presets.json", envs[1], train_cli.OPTION_ATTRS)["ppo"]
        == (best.user_attrs["settings"]["ppo"])
    )
    assert "trial  score" in capsys.readouterr().out


@pytest.mark.slow
def test_a_study_over_seeds_on_the_users_env_ranks_by_the_mean_return(tmp_path, capsys):
    env = "tests.user_envs:Corridor-v0"  # the user's own env, registered in its module
    argv = ["--env", env, "--steps", "2048", "--eval-episodes", "2", "--eval-every", "1024", "--trials", "2"]
    assert tune_cli.main([*argv, "--seeds", "4", "5", "--pruner", "none", "--log-dir", str(tmp_path)]) == 0
    name = "tests.user_envs-Corridor-v0_2048"
    trials = trials_of(tmp_path / name, name)
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        seed_returns = trial.user_attrs["seed_returns"][env]
        assert len(seed_returns) == 2
        assert trial.value == pytest.approx(sum(seed_returns) / 2) == trial.user_attrs["returns"][env]
        run_dirs = trial.user_attrs["run_dirs"]
        assert list(run_dirs) == [f"{env} seed4", f"{env} seed5"]
        for seed, run_dir in zip((4, 5), run_dirs.values(), strict=True):
            assert json.loads((Path(run_dir) / "train_args.json").read_text())["seed"] == seed
        assert sorted(trial.intermediate_values) == [1024, 2048, 4096 + 1024, 4096 + 2048]
    best = max(trials, key=lambda t: t.value)
    source = json.loads((tmp_path / name / "presets.json").read_text())[env]["source"]
    value = f"deterministic evaluation return {best.value:.1f} over 2 episodes"
    assert f"(trial {best.number}, {value}, each env's the mean over seeds 4, 5)" in source


def test_a_study_cannot_be_reopened_with_another_time_limit(tmp_path):
    storage = journal(tmp_path)
    tuning.open_study(storage, "s", spec_for(tmp_path, trial_timeout=60.0), None, None)
    with pytest.raises(ValueError, match=r"--study s: .*'trial_timeout': 60.0.*not .*'trial_timeout': 30.0"):
        tuning.open_study(storage, "s", spec_for(tmp_path, trial_timeout=30.0), None, None)


@pytest.mark.slow
def test_a_trial_timeout_scores_each_run_where_its_time_ran_out(tmp_path):
    argv = [*TINY, "--steps", "10000000", "--eval-every", "1000000", "--trial-timeout", "2"]
    assert tune_cli.main([*argv, "--trials", "1", "--log-dir", str(tmp_path), "--pruner", "none"]) == 0
    name = "CartPole-v1_10000000"
    (trial,) = trials_of(tmp_path / name, name)
    assert trial.state.name == "COMPLETE" and trial.value > 0  # scored: a new evaluation where it stopped
    (run_dir,) = trial.user_attrs["run_dirs"].values()
    assert json.loads((Path(run_dir) / "train_args.json").read_text())["timeout"] == 2.0
    last = (Path(run_dir) / "progress.csv").read_text().splitlines()[-1]
    assert 0 < int(last.split(",")[0]) < 10_000_000
    source = json.loads((tmp_path / name / "presets.json").read_text())["CartPole-v1"]["source"]
    assert "trials of 10000000 env steps or 2 s each" in source
