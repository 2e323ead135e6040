"""train.py's experiment options: --presets FILE (settings from a presets file), --seeds/--jobs
(one process per seed, their exit statuses combined) and --track (a Weights & Biases run, here
offline, read back from its .wandb file). Nothing here reaches the network."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from AsyncTools import tracking, train_cli
from AsyncTools.jobs import check_jobs, combined_exit_code, exit_status, run_processes
from AsyncTools.presets import RUNNER_OPTIONS, read_presets_file

OPTIONS = train_cli.OPTION_ATTRS  # the PPO keywords a presets file's "ppo" part may name
TINY = ["--steps", "600", "--eval-every", "0", "--quiet", "--device", "cpu"]


def write_presets(tmp_path: Path, table, name: str = "presets.json") -> Path:
    file = tmp_path / name
    file.write_text(table if isinstance(table, str) else json.dumps(table))
    return file


def run_folders(log_dir: Path) -> list[Path]:
    return sorted(log_dir.iterdir()) if log_dir.exists() else []


def settings_of(run_dir: Path) -> dict:
    return json.loads((run_dir / train_cli.ARGS_FILE).read_text())


def progress_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> dict[str, str]:
    """W&B kept off the network and out of the home folder, for this process and its children."""
    folder = tmp_path / "wandb-home"
    variables = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(folder),
        "WANDB_CACHE_DIR": str(folder / "cache"),
        "WANDB_CONFIG_DIR": str(folder / "config"),
        "WANDB_DATA_DIR": str(folder / "data"),
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return variables


# ----------------------------------------------------------------------- read_presets_file
def test_read_presets_file_returns_the_entry_for_the_env(tmp_path):
    file = write_presets(
        tmp_path,
        {
            "_about": "a comment, skipped",
            "CartPole-v1": {
                "source": "a test",
                "ppo": {"lr": 0.004, "hidden_sizes": [16, 8], "GAE_lambda": 0.9, "normalize_obs": True},
                "runner": {"num_envs": 3, "num_steps": 16, "eval_deterministic": False},
            },
            "Pendulum-v1": {"ppo": {"gamma": 0.9}},
        },
    )
    assert read_presets_file(file, "CartPole-v1", OPTIONS) == {
        "ppo": {"lr": 0.004, "hidden_sizes": [16, 8], "GAE_lambda": 0.9, "normalize_obs": True},
        "runner": {"num_envs": 3, "num_steps": 16, "eval_deterministic": False},
    }
    assert read_presets_file(str(file), "Pendulum-v1", OPTIONS) == {"ppo": {"gamma": 0.9}, "runner": {}}


def test_the_shipped_presets_file_reads_as_a_presets_file():
    file = REPO_ROOT / "AsyncTools" / "presets.json"
    assert read_presets_file(file, "Pendulum-v1", OPTIONS) == {
        "ppo": {
            "gamma": 0.9,
            "lr": 0.001,
            "k_epochs": 10,
            "batch_size": 2048,
            "mini_batch_size": 256,
            "normalize_obs": True,
            "normalize_reward": True,
            "anneal_lr": False,
        },
        "runner": {"num_envs": 16, "num_steps": 128},
    }


CARTPOLE = {"CartPole-v1": {"ppo": {"lr": 0.01}, "runner": {}}, "Acrobot-v1": {"ppo": {}}}
# (what the file holds, a piece of the error's message after the file's name)
BAD_FILES = {
    "not JSON": ("{'CartPole-v1': ", "not valid JSON"),
    "not UTF-8": (None, "cannot be read"),
    "no entry": (CARTPOLE, "no entry for 'MountainCar-v0' (the file has: CartPole-v1, Acrobot-v1)"),
    "empty table": ({"_about": "nothing else"}, "no entry for 'MountainCar-v0' (the file has: none)"),
    "a list": ([1, 2], "no entry for 'MountainCar-v0' (the file has: none)"),
    "unknown ppo option": (
        {"MountainCar-v0": {"ppo": {"lr": 0.1, "learning_rate": 0.1, "zzz": 1}}},
        "'MountainCar-v0'.ppo names unknown option(s) learning_rate, zzz (known: ",
    ),
    "unknown runner option": (
        {"MountainCar-v0": {"runner": {"steps": 5}}},
        "'MountainCar-v0'.runner names unknown option(s) steps "
        "(known: eval_deterministic, num_envs, num_steps)",
    ),
    "null value": (
        {"MountainCar-v0": {"ppo": {"value_clip": None, "lr": 0.1}}},
        "'MountainCar-v0'.ppo: value_clip is null; give a value",
    ),
    "part not an object": (
        {"MountainCar-v0": {"ppo": [["lr", 0.1]]}},
        "'MountainCar-v0'.ppo must be an object, got [['lr', 0.1]]",
    ),
    "entry not an object": (
        {"MountainCar-v0": [1]},
        "the 'MountainCar-v0' entry must be an object of source, ppo and runner",
    ),
    "unknown part": (
        {"MountainCar-v0": {"ppo": {}, "network": {}}},
        "the 'MountainCar-v0' entry must be an object of source, ppo and runner",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_presets_file_is_a_value_error_naming_the_file_and_the_problem(tmp_path, case):
    table, problem = BAD_FILES[case]
    file = tmp_path / "presets.json"
    if table is None:
        file.write_bytes(b'{"MountainCar-v0": {"ppo": {"lr": "\xff"}}}')
    else:
        write_presets(tmp_path, table)
    with pytest.raises(ValueError) as error:
        read_presets_file(file, "MountainCar-v0", OPTIONS)
    message = str(error.value)
    assert message.startswith(f"--presets {file}: ")
    assert problem in message and "\n" not in message


@pytest.mark.parametrize("what", ["missing", "a folder"])
def test_an_unreadable_presets_file_is_a_value_error_naming_it(tmp_path, what):
    path = tmp_path / ("absent.json" if what == "missing" else "folder")
    if what == "a folder":
        path.mkdir()
    with pytest.raises(ValueError, match=r"cannot be read") as error:
        read_presets_file(path, "CartPole-v1", OPTIONS)
    assert str(error.value).startswith(f"--presets {path}: cannot be read (")


def test_the_runner_part_takes_only_runner_options():
    assert set(RUNNER_OPTIONS) == {"num_envs", "num_steps", "eval_deterministic"}
    assert all(hasattr(train_cli.parse_args([]), name) for name in RUNNER_OPTIONS)


# ---------------------------------------------------------------------- with_presets_entry
ENTRY = {
    "ppo": {
        "lr": 0.5,
        "k_epochs": 9,
        "GAE_lambda": 0.9,
        "normalize_obs": True,
        "use_RND": True,
        "hidden_sizes": [8],
    },
    "runner": {"num_envs": 5, "num_steps": 7, "eval_deterministic": True},
}


def test_with_presets_entry_fills_only_the_options_not_given():
    args = train_cli.parse_args(["--lr", "0.01", "--no-normalize-obs", "--num-steps", "3"])
    filled = train_cli.with_presets_entry(args, ENTRY)
    assert (filled.lr, filled.normalize_obs, filled.num_steps) == (0.01, False, 3)  # given: kept
    assert (filled.k_epochs, filled.gae_lambda, filled.use_rnd, filled.hidden_sizes) == (9, 0.9, True, [8])
    assert (filled.num_envs, filled.eval_deterministic) == (5, True)
    assert (filled.batch_size, filled.activation, filled.anneal_lr) == (None, None, None)  # in neither
    assert (args.k_epochs, args.num_envs) == (None, None)  # the arguments given are left as they were


def test_with_presets_entry_keeps_a_switch_turned_off_on_the_command_line():
    args = train_cli.parse_args(["--no-eval-deterministic", "--no-use-rnd", "--hidden-sizes", "4", "4"])
    filled = train_cli.with_presets_entry(args, ENTRY)
    assert (filled.eval_deterministic, filled.use_rnd, filled.hidden_sizes) == (False, False, [4, 4])
    assert train_cli.with_presets_entry(args, {}) == args


def test_checked_fills_from_the_presets_file_and_takes_a_single_seed(tmp_path):
    file = write_presets(tmp_path, {"CartPole-v1": ENTRY})
    args = train_cli.checked(
        train_cli.parse_args(["--presets", str(file), "--k-epochs", "2", "--seeds", "7"])
    )
    assert (args.lr, args.k_epochs, args.num_envs, args.seed) == (0.5, 2, 5, 7)
    assert args.save_dir == str(Path("data/CartPole-v1/seed7"))  # as each run of --seeds saves
    given = train_cli.checked(train_cli.parse_args(["--seeds", "3", "--save-dir", "w"]))
    assert given.save_dir == str(Path("w/seed3"))


# ------------------------------------------------------------------------------ the CLI
def test_train_with_presets_uses_the_files_settings_unless_a_flag_is_given(tmp_path, capsys):
    file = write_presets(
        tmp_path,
        {
            "CartPole-v1": {
                "ppo": {
                    "lr": 0.0042,
                    "hidden_sizes": [16, 8],
                    "k_epochs": 2,
                    "batch_size": 48,
                    "mini_batch_size": 16,
                },
                "runner": {"num_envs": 3, "num_steps": 16},
            }
        },
    )
    flags = ["--presets", str(file), "--k-epochs", "3", "--num-envs", "2"]  # these two win
    log_dir, save_dir = tmp_path / "runs", tmp_path / "w"
    code = train_cli.main([*TINY, *flags, "--log-dir", str(log_dir), "--save-dir", str(save_dir)])
    assert code == 0, capsys.readouterr().err
    (run_dir,) = run_folders(log_dir)
    settings = settings_of(run_dir)
    assert (settings["lr"], settings["hidden_sizes"], settings["num_steps"]) == (0.0042, [16, 8], 16)
    assert (settings["batch_size"], settings["mini_batch_size"]) == (48, 16)
    assert (settings["k_epochs"], settings["num_envs"]) == (3, 2)
    assert settings["presets"] == str(file)
    rows = progress_rows(run_dir)
    assert int(rows[1]["steps"]) - int(rows[0]["steps"]) <= 2 * 16  # 2 copies x 16 steps a round
    learned = [float(row["learning_rate"]) for row in rows if row["learning_rate"]]
    assert learned and set(learned) == {0.0042}  # the updates ran with the file's lr
    assert (save_dir / "Policy_weights.pth").is_file()


def test_without_presets_the_files_settings_are_not_used(tmp_path, capsys):
    """The control of the test above: the same command without --presets trains otherwise."""
    log_dir = tmp_path / "runs"
    code = train_cli.main(
        [*TINY, "--num-steps", "16", "--log-dir", str(log_dir), "--save-dir", str(tmp_path)]
    )
    assert code == 0, capsys.readouterr().err
    settings = settings_of(run_folders(log_dir)[0])
    assert (settings["lr"], settings["hidden_sizes"], settings["num_envs"]) == (0.003, [64, 64], 32)
    assert settings["presets"] is None


# (arguments, a piece of the one line on stderr); every one exits 2 before any run folder
BAD_COMMANDS = {
    "no entry": (
        ["--env", "Acrobot-v1"],
        "--presets {file}: no entry for 'Acrobot-v1' (the file has: CartPole-v1)",
    ),
    "unknown option": (["--lr", "0.1"], "--presets {file}: 'CartPole-v1'.ppo names unknown option(s) lr_x"),
    "seeds and resume": (["--seeds", "0", "1", "--resume", "runs/x"], "--seeds starts new runs; --resume"),
    "no jobs": (["--jobs", "0"], "--jobs: expected a positive number of processes, got 0"),
    "negative jobs": (
        ["--seeds", "0", "1", "--jobs", "-2"],
        "--jobs: expected a positive number of processes, got -2",
    ),
    "a seed twice": (["--seeds", "0", "0"], "--seeds: each seed once (their runs would share a save folder)"),
}


@pytest.mark.parametrize("case", BAD_COMMANDS)
def test_a_bad_command_exits_2_with_one_line_naming_the_parameter(tmp_path, capsys, case):
    flags, problem = BAD_COMMANDS[case]
    file = write_presets(tmp_path, {"CartPole-v1": {"ppo": {"lr_x": 1} if case == "unknown option" else {}}})
    presets = ["--presets", str(file)] if case in ("no entry", "unknown option") else []
    log_dir = tmp_path / "runs"
    code = train_cli.main(
        [*TINY, *presets, *flags, "--log-dir", str(log_dir), "--save-dir", str(tmp_path / "w")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("train.py: error: ")
    assert problem.format(file=file) in err
    assert run_folders(log_dir) == []


def test_a_presets_file_that_is_not_json_exits_2_with_one_line(tmp_path, capsys):
    file = write_presets(tmp_path, "not json at all")
    code = train_cli.main([*TINY, "--presets", str(file), "--log-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"train.py: error: --presets {file}: not valid JSON (")


def test_a_missing_presets_file_exits_2_with_one_line(tmp_path, capsys):
    code = train_cli.main([*TINY, "--presets", str(tmp_path / "nope.json"), "--log-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"train.py: error: --presets {tmp_path / 'nope.json'}: ")


# ------------------------------------------------------------------------------- --seeds
@pytest.mark.slow
def test_seeds_train_one_run_per_seed_in_processes(tmp_path, capfd):
    log_dir, save_dir = tmp_path / "runs", tmp_path / "w"
    argv = [
        *TINY,
        "--num-envs",
        "2",
        "--num-steps",
        "32",
        "--log-dir",
        str(log_dir),
        "--save-dir",
        str(save_dir),
    ]
    code = train_cli.main([*argv, "--seeds", "3", "4", "--jobs", "2"])
    out = capfd.readouterr().out
    assert code == 0, out
    # the two processes may name their folders in different seconds: order them by seed
    folders = sorted(run_folders(log_dir), key=lambda folder: folder.name.rsplit("_", 1)[1])
    assert [folder.name.rsplit("_", 1)[1] for folder in folders] == ["seed3", "seed4"]
    assert [(settings_of(f)["seed"], settings_of(f)["seeds"]) for f in folders] == [(3, [3]), (4, [4])]
    assert [settings_of(f)["save_dir"] for f in folders] == [str(save_dir / "seed3"), str(save_dir / "seed4")]
    for seed in (3, 4):
        assert (save_dir / f"seed{seed}" / "Policy_weights.pth").is_file()
    assert not (save_dir / "Policy_weights.pth").exists()
    assert f"2 seeds: exit statuses [0, 0]; run folders under {log_dir}/" in out


@pytest.mark.slow
def test_seeds_combine_the_exit_statuses_of_failed_runs(tmp_path, capfd):
    log_dir = tmp_path / "runs"
    argv = [*TINY, "--env", "NoSuchEnv-v0", "--log-dir", str(log_dir), "--save-dir", str(tmp_path / "w")]
    code = train_cli.main([*argv, "--seeds", "0", "1", "--jobs", "2"])
    captured = capfd.readouterr()
    assert code == 2
    assert "2 seeds: exit statuses [2, 2]" in captured.out
    assert captured.err.count("train.py: error: ") == 2  # each run's own line
    assert run_folders(log_dir) == []


# ------------------------------------------------------------------------------- --track
BLOCK, HEADER = 32768, 7  # the LevelDB log format of .wandb files: 32 KiB blocks, 7-byte headers


def wandb_records(path: Path) -> list:
    """The Record protobufs of a .wandb file: a 7-byte W&B header, then LevelDB log blocks whose
    records (crc32c, length, type: 1 full, 2 first, 3 middle, 4 last) carry the protobufs."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, payload, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if left < HEADER or kind == 0:  # the zero padding at a block's end
            pos += left
            continue
        payload += data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            records.append(wandb_internal_pb2.Record.FromString(payload))
            payload = b""
    return records


def history(records: list) -> list[dict]:
    """The logged rows: {key: value} (nested keys joined with '/')."""
    return [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.WhichOneof("record_type") == "history"
    ]


@pytest.mark.slow
def test_track_offline_logs_every_rounds_scalars_at_its_step(tmp_path, offline_wandb):
    log_dir = tmp_path / "runs"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **offline_wandb)
    flags = ["--num-envs", "2", "--num-steps", "32", "--batch-size", "64", "--mini-batch-size", "32"]
    tracking_flags = ["--track", "--wandb-project", "ppo-tests", "--wandb-entity", "me"]
    folders = ["--log-dir", str(log_dir), "--save-dir", str(tmp_path / "w")]
    done = subprocess.run(
        [sys.executable, "train.py", *TINY, *flags, *tracking_flags, *folders],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = run_folders(log_dir)
    (wandb_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(wandb_file)
    (run,) = [record.run for record in records if record.WhichOneof("record_type") == "run"]
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert (run.project, run.entity, run.display_name) == ("ppo-tests", "me", run_dir.name)
    assert config["env"] == "CartPole-v1" and config == {"_wandb": config["_wandb"], **settings_of(run_dir)}
    rows = history(records)
    progress = progress_rows(run_dir)
    assert [row["_step"] for row in rows] == [int(row["steps"]) for row in progress]
    assert [row["steps"] for row in rows] == [row["_step"] for row in rows]
    assert [row["mean_return"] for row in rows] == pytest.approx([float(r["mean_return"]) for r in progress])
    assert "policy_loss" in rows[-1] and rows[-1]["learning_curve/_type"] == "image-file"
    assert list((tmp_path / "wandb-home").glob("**/*.wandb")) == []  # the run folder holds it


def test_track_without_wandb_exits_2_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb fails
    log_dir = tmp_path / "runs"
    code = train_cli.main([*TINY, "--track", "--log-dir", str(log_dir), "--save-dir", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "train.py: error: --track needs Weights & Biases (wandb), which is not installed: "
        "pip install -e .[track]\n"
    )
    assert run_folders(log_dir) == []


class FakeRun:
    def __init__(self):
        self.logged: list[tuple[dict, int | None]] = []
        self.finished = False

    def log(self, data: dict, step: int | None = None) -> None:
        self.logged.append((data, step))

    def finish(self) -> None:
        self.finished = True


def test_the_tracker_logs_finite_numbers_at_the_env_step_and_the_curve_at_the_end(tmp_path, monkeypatch):
    run, inits = FakeRun(), []
    fake = types.SimpleNamespace(
        init=lambda **kwargs: inits.append(kwargs) or run, Image=lambda path: ("image", path), Video=None
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracker = tracking.WandbTracker(tmp_path, {"env": "CartPole-v1"}, None, "team")
    assert inits == [
        dict(
            project="parallel-ppo",
            entity="team",
            name=tmp_path.name,
            config={"env": "CartPole-v1"},
            dir=str(tmp_path),
            reinit="finish_previous",
        )
    ]
    stats = {
        "steps": 640.0,
        "mean_return": 21.5,
        "eval_return": float("nan"),
        "flag": True,
        "name": "x",
        "rounds": 3,
    }
    tracker.log_round(None, stats)
    assert run.logged == [({"steps": 640.0, "mean_return": 21.5, "rounds": 3}, 640)]
    (tmp_path / "learning_curve.png").write_bytes(b"png")
    tracker.finish()
    assert run.logged[1:] == [({"learning_curve": ("image", str(tmp_path / "learning_curve.png"))}, None)]
    assert run.finished


def fake_wandb(monkeypatch, run: FakeRun, inits: list) -> None:
    """A stand-in for the wandb module: init records its keywords and returns `run`."""
    fake = types.SimpleNamespace(
        init=lambda **kwargs: inits.append(kwargs) or run, Image=lambda path: ("image", path), Video=None
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)


def test_train_with_track_logs_every_round_to_the_wandb_run(tmp_path, capsys, monkeypatch):
    """train()'s wiring of --track, in-process with a stand-in for wandb (the offline test above
    reads what the real one writes)."""
    run, inits = FakeRun(), []
    fake_wandb(monkeypatch, run, inits)
    log_dir = tmp_path / "runs"
    flags = ["--num-envs", "2", "--num-steps", "32", "--track", "--wandb-entity", "team"]
    code = train_cli.main([*TINY, *flags, "--log-dir", str(log_dir), "--save-dir", str(tmp_path / "w")])
    assert code == 0, capsys.readouterr().err
    (run_dir,) = run_folders(log_dir)
    (init,) = inits
    assert (init["name"], init["dir"], init["project"], init["entity"]) == (
        run_dir.name,
        str(run_dir),
        "parallel-ppo",
        "team",
    )
    assert json.loads(json.dumps(init["config"])) == settings_of(run_dir)
    rounds = [(data, step) for data, step in run.logged if step is not None]
    assert [step for _, step in rounds] == [int(row["steps"]) for row in progress_rows(run_dir)]
    assert all(data["steps"] == step and "mean_return" in data for data, step in rounds)
    assert run.logged[-1] == ({"learning_curve": ("image", str(run_dir / "learning_curve.png"))}, None)
    assert run.finished


def test_a_wandb_run_that_cannot_start_closes_the_runner_and_says_so_in_one_line(
    tmp_path, monkeypatch, capsys
):
    def refuse(**kwargs):
        raise RuntimeError("No API key configured")

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=refuse))
    closed, close = [], train_cli.AsyncPPO.close
    monkeypatch.setattr(
        train_cli.AsyncPPO, "close", lambda runner: closed.append(runner.run_dir) or close(runner)
    )
    log_dir = tmp_path / "runs"
    assert (
        train_cli.main([*TINY, "--track", "--log-dir", str(log_dir), "--save-dir", str(tmp_path / "w")]) == 2
    )
    assert closed == run_folders(log_dir) and len(closed) == 1
    err = capsys.readouterr().err
    assert err == (
        "train.py: error: --track: W&B could not start the run (RuntimeError: No API key configured); "
        "log in with `wandb login`, or set WANDB_MODE=offline to keep it in the run folder\n"
    )


# -------------------------------------------------------------------------- the jobs module
@pytest.mark.parametrize(
    "codes, combined",
    [
        ([], 0),
        ([0, 0, 0], 0),
        ([0, 1, 2], 1),  # the first error's status
        ([2, 0, 1], 2),
        ([1, 143, 0], 143),  # a signal wins over an error
        ([143, 130], 130),  # SIGINT over SIGTERM
        ([0, None], 130),  # one never started: the group was interrupted
        ([1, None], 130),
        ([143, None], 143),
    ],
)
def test_combined_exit_code(codes, combined):
    assert combined_exit_code(codes) == combined


def test_check_jobs_takes_positive_whole_numbers():
    assert [check_jobs(jobs) for jobs in (1, 2, 16)] == [1, 2, 16]
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(
            ValueError, match=rf"^--jobs: expected a positive number of processes, got {bad!r}$"
        ):
            check_jobs(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^--workers: "):
        check_jobs(0, "--workers")


@pytest.mark.slow
def test_run_processes_returns_each_exit_status_in_the_order_given(capfd):
    # python -m calendar YEAR exits 0; a year that is not a number is a usage error (2)
    codes = run_processes("calendar", [["2026"], ["x"], ["1999"], ["y"]], jobs=2)
    assert codes == [0, 2, 0, 2]
    assert "2026" in capfd.readouterr().out


@pytest.mark.parametrize("returncode, status", [(0, 0), (2, 2), (-15, 143), (-2, 130), (-9, 137)])
def test_a_child_killed_by_a_signal_reports_128_plus_its_number(returncode, status):
    assert exit_status(returncode) == status
