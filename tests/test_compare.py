"""ppo-compare (AsyncTools/compare_cli.py) and its statistics (AsyncTools/compare.py), on run
folders made here with known numbers: the table against numbers computed by hand, the grouping,
the two statistics backends, the figure, and the one-line errors. The last test (slow) trains
two tiny real runs with train.py and compares them."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from conftest import REPO_ROOT, load_benchmark

from AsyncTools import compare, compare_cli, tuning
from AsyncTools.run_log import PROGRESS_FIELDS

EVAL_STEPS = (1000, 2000, 3000)
# (env, preset, lr, seed) -> the eval_return at EVAL_STEPS; the last one is the run's final value
RUNS = {
    ("CartPole-v1", "auto", 0.003, 0): (10.0, 50.0, 100.0),
    ("CartPole-v1", "auto", 0.003, 1): (20.0, 150.0, 200.0),
    ("CartPole-v1", "auto", 0.001, 2): (30.0, 250.0, 300.0),
    ("CartPole-v1", "auto", 0.001, 3): (40.0, 350.0, 400.0),
    ("CartPole-v1", "auto", 0.001, 4): (50.0, 450.0, 1000.0),
    ("CartPole-v1", "none", 0.003, 0): (5.0, 20.0, 50.0),
    ("CartPole-v1", "none", 0.003, 1): (6.0, 30.0, 60.0),
    ("CartPole-v1", "none", 0.003, 2): (7.0, 40.0, 70.0),
    ("Pendulum-v1", "auto", 0.001, 0): (-900.0, -500.0, -200.0),
    ("Pendulum-v1", "auto", 0.001, 1): (-1000.0, -600.0, -300.0),
}
AUTO = "env=CartPole-v1, preset=auto"


def write_run(folder: Path, settings: dict, rows: list[dict]) -> Path:
    """A run folder as train.py leaves it, as far as ppo-compare reads it."""
    folder.mkdir(parents=True)
    (folder / "train_args.json").write_text(json.dumps(settings, indent=1))
    with open(folder / "progress.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=PROGRESS_FIELDS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def rows_with_evaluations(evaluations: tuple[float, ...]) -> list[dict]:
    """A round every 500 steps, with mean_return, and eval_return at EVAL_STEPS only."""
    rows = []
    for steps in range(500, EVAL_STEPS[-1] + 1, 500):
        row = {"steps": steps, "seconds": steps / 1000, "mean_return": steps / 100}
        if steps in EVAL_STEPS:
            row["eval_return"] = evaluations[EVAL_STEPS.index(steps)]
        rows.append(row)
    return rows


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """RUNS in nested folders (as train.py leaves them under --log-dir), with stray files."""
    parent = tmp_path / "runs"
    for (env, preset, lr, seed), evaluations in RUNS.items():
        settings = {"env": env, "preset": preset, "lr": lr, "seed": seed, "steps": 3000}
        write_run(
            parent / env / f"{env}_{preset}_{lr}_seed{seed}", settings, rows_with_evaluations(evaluations)
        )
    (parent / "notes.txt").write_text("not a run")
    (parent / "half").mkdir()
    (parent / "half" / "train_args.json").write_text("{}")  # no progress.csv: not a run folder
    return parent


def finals(env: str, preset: str) -> np.ndarray:
    return np.array([values[-1] for (e, p, *_), values in RUNS.items() if (e, p) == (env, preset)])


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = compare_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table(out: str) -> dict[str, list[str]]:
    """The printed table: {group: [runs, seeds, mean, mean CI, IQM, IQM CI]}."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("group "))
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith("statistics:") or line.startswith("figure:"):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[1:]
    return rows


def by_hand(scores: np.ndarray, reps: int, seed: int) -> tuple[float, list[float], float, list[float]]:
    """Mean and IQM with 95% percentile-bootstrap intervals, written out: `reps` draws of as many
    runs with replacement by RandomState(seed), the 2.5th and 97.5th percentiles of the draws."""
    draws = scores[np.random.RandomState(seed).choice(len(scores), (reps, len(scores)), replace=True)]
    mean_ci = np.percentile(draws.mean(axis=1), [2.5, 97.5])
    iqm_ci = np.percentile(scipy.stats.trim_mean(draws, 0.25, axis=1), [2.5, 97.5])
    return float(np.mean(scores)), list(mean_ci), float(scipy.stats.trim_mean(scores, 0.25)), list(iqm_ci)


def interval(text: str) -> list[float]:
    return [float(x) for x in text.strip("[]").split(",")]


# ----------------------------------------------------------------------------- the numbers
def test_the_table_matches_the_numbers_computed_by_hand(runs_dir, capsys):
    code, out, _ = run_main(capsys, str(runs_dir), "--bootstrap", "500", "--seed", "3")
    assert code == 0
    rows = table(out)
    assert set(rows) == {AUTO, "env=CartPole-v1, preset=none", "env=Pendulum-v1, preset=auto"}
    for label, row in rows.items():
        env, preset = (part.split("=")[1] for part in label.split(", "))
        scores = finals(env, preset)
        mean, mean_ci, iqm, iqm_ci = by_hand(scores, 500, 3)
        assert row[0] == str(len(scores))
        assert row[2] == f"{mean:.2f}" and row[4] == f"{iqm:.2f}"
        assert interval(row[3]) == [round(x, 2) for x in mean_ci]
        assert interval(row[5]) == [round(x, 2) for x in iqm_ci]
    # five runs: the IQM drops the best and the worst (100 and 1000), unlike the mean
    assert rows[AUTO][2:] == ["400.00", rows[AUTO][3], "300.00", rows[AUTO][5]]
    assert "final eval_return" in out and "500 resamples, seed 3" in out


def test_the_estimates_are_the_hand_computed_ones():
    scores = finals("CartPole-v1", "auto")
    mean, mean_ci, iqm, iqm_ci = by_hand(scores, 2000, 0)
    estimates = compare.plain_estimates(scores, 2000, 0)
    assert estimates.mean == mean and estimates.iqm == iqm  # exactly
    assert estimates.mean_ci == pytest.approx(mean_ci, rel=1e-12)
    assert estimates.iqm_ci == pytest.approx(iqm_ci, rel=1e-12)
    for value, (low, high) in ((estimates.mean, estimates.mean_ci), (estimates.iqm, estimates.iqm_ci)):
        assert scores.min() <= low <= value <= high <= scores.max() and low < high
    assert compare.plain_estimates(scores, 2000, 0) == estimates  # reproducible
    assert compare.plain_estimates(scores, 2000, 1) != estimates


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8, 11, 40])
def test_the_iqm_is_scipys_trimmed_mean(count):
    scores = np.random.RandomState(count).normal(size=(7, count)) * 100
    assert compare.interquartile_mean(scores[0]) == scipy.stats.trim_mean(scores[0], 0.25)
    np.testing.assert_allclose(
        compare.interquartile_mean(scores, axis=1), scipy.stats.trim_mean(scores, 0.25, axis=1), rtol=1e-14
    )


def test_the_curves_mean_and_band(runs_dir):
    runs = [compare.read_run(folder, "eval_return") for folder in compare.find_runs([runs_dir])]
    group = compare.group_runs(runs, ["env", "preset"])[AUTO]
    grid = compare.common_grid(group)
    assert list(grid) == list(EVAL_STEPS)  # the evaluation steps, empty rows skipped
    mean, low, high = compare.mean_band(compare.curves_on_grid(group, grid), 300, 0)
    expected = np.mean([values for key, values in RUNS.items() if key[:2] == ("CartPole-v1", "auto")], axis=0)
    np.testing.assert_allclose(mean, expected)
    assert np.all(low <= mean) and np.all(mean <= high) and np.all(low < high)
    again = compare.mean_band(compare.curves_on_grid(group, grid), 300, 0)
    assert all(np.array_equal(a, b) for a, b in zip((mean, low, high), again, strict=True))


def test_runs_at_other_steps_are_interpolated_onto_the_common_span(tmp_path):
    first = write_run(tmp_path / "a", {"env": "E"}, [{"steps": s, "eval_return": s} for s in (100, 300, 500)])
    second = write_run(tmp_path / "b", {"env": "E"}, [{"steps": s, "eval_return": 2 * s} for s in (200, 400)])
    runs = [compare.read_run(folder, "eval_return") for folder in (first, second)]
    grid = compare.common_grid(runs)
    assert list(grid) == [200, 300, 400]  # the union, within the span both runs cover
    np.testing.assert_allclose(compare.curves_on_grid(runs, grid), [[200, 300, 400], [400, 600, 800]])
    assert [run.final for run in runs] == [500, 800]  # the final value: each run's own last one


# ---------------------------------------------------------------------------- the grouping
def test_grouping_by_env_and_preset(runs_dir, capsys):
    code, out, _ = run_main(capsys, str(runs_dir), "--bootstrap", "50")
    rows = table(out)
    assert code == 0 and list(rows) == sorted(rows)
    assert [rows[label][:2] for label in rows] == [["5", "0,1,2,3,4"], ["3", "0,1,2"], ["2", "0,1"]]


def test_a_custom_group_by(runs_dir, capsys):
    code, out, _ = run_main(capsys, str(runs_dir / "CartPole-v1"), "--group-by", "lr", "--bootstrap", "50")
    rows = table(out)
    assert code == 0 and set(rows) == {"lr=0.001", "lr=0.003"}
    assert rows["lr=0.001"][:3] == ["3", "2,3,4", f"{np.mean([300, 400, 1000]):.2f}"]
    assert rows["lr=0.003"][:3] == ["5", "0,0,1,1,2", f"{np.mean([100, 200, 50, 60, 70]):.2f}"]
    code, out, _ = run_main(capsys, str(runs_dir), "--group-by", "env, preset ,lr", "--bootstrap", "50")
    assert code == 0 and len(table(out)) == 4


def test_run_folders_given_directly_count_once(runs_dir, capsys):
    folders = sorted((runs_dir / "CartPole-v1").glob("*_none_*"))
    code, out, _ = run_main(capsys, *map(str, folders), str(folders[0]), str(runs_dir / "CartPole-v1"))
    assert code == 0 and table(out)["env=CartPole-v1, preset=none"][0] == "3"


def test_runs_without_the_metric_are_skipped_with_a_note(runs_dir, capsys):
    write_run(runs_dir / "no-eval", {"env": "CartPole-v1", "preset": "auto", "seed": 9}, [{"steps": 500}])
    code, out, err = run_main(capsys, str(runs_dir), "--bootstrap", "50")
    assert code == 0 and table(out)[AUTO][0] == "5"
    assert "skipping" in err and "no-eval" in err


def test_mean_return_is_read_on_every_round(runs_dir, capsys):
    code, out, _ = run_main(capsys, str(runs_dir), "--metric", "mean_return", "--bootstrap", "50")
    assert code == 0 and table(out)[AUTO][2:5] == ["30.00", "[30.00, 30.00]", "30.00"]


# ------------------------------------------------------------------------ the two backends
def rliable_backend() -> compare.Backend:
    backend = compare.choose_backend()
    if backend.estimate is not compare.rliable_estimates:
        pytest.skip(f"rliable does not work here: {backend.name}")
    return backend


def test_the_plain_path_equals_the_rliable_path(runs_dir, capsys, monkeypatch):
    rliable = rliable_backend()
    outputs = {}
    for name, backend in (("plain", compare.PLAIN), ("rliable", rliable)):
        monkeypatch.setattr(compare_cli, "choose_backend", lambda backend=backend: backend)
        code, outputs[name], _ = run_main(capsys, str(runs_dir), "--bootstrap", "300", "--seed", "5")
        assert code == 0
    assert table(outputs["plain"]) == table(outputs["rliable"])
    assert "statistics: rliable" in outputs["rliable"] and "statistics: numpy" in outputs["plain"]
    for env, preset in {key[:2] for key in RUNS}:
        plain = compare.plain_estimates(finals(env, preset), 300, 5)
        other = compare.rliable_estimates(finals(env, preset), 300, 5)
        assert (plain.mean, plain.iqm) == (other.mean, other.iqm)  # exactly
        assert plain.mean_ci + plain.iqm_ci == pytest.approx(other.mean_ci + other.iqm_ci, rel=1e-12)


def test_rliable_leaves_numpys_global_generator_as_it_was():
    rliable_backend()
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    compare.rliable_estimates(np.array([1.0, 2.0, 5.0]), 100, 0)
    assert np.array_equal(np.random.random(3), expected)


def test_without_rliable_the_plain_path_is_used_and_said(runs_dir, capsys, monkeypatch):
    for module in ("rliable", "rliable.library", "rliable.metrics"):
        monkeypatch.setitem(sys.modules, module, None)  # `import rliable` raises ImportError
    backend = compare.choose_backend()
    assert backend.estimate is compare.plain_estimates and "rliable not importable" in backend.name
    code, out, _ = run_main(capsys, str(runs_dir), "--bootstrap", "300", "--seed", "3")
    assert code == 0 and "statistics: numpy (rliable's definitions); rliable not importable" in out
    mean, mean_ci, iqm, iqm_ci = by_hand(finals("CartPole-v1", "auto"), 300, 3)
    row = table(out)[AUTO]
    assert row[2:5] == [f"{mean:.2f}", "[{:.2f}, {:.2f}]".format(*mean_ci), f"{iqm:.2f}"]
    assert interval(row[5]) == [round(x, 2) for x in iqm_ci]


# ------------------------------------------------------------------------- figure and help
def test_output_writes_a_png(runs_dir, capsys, tmp_path):
    figure = tmp_path / "plot.png"
    code, out, _ = run_main(capsys, str(runs_dir), "--bootstrap", "50", "--output", str(figure))
    assert code == 0 and f"figure: {figure}" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 10_000


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as stop:
        compare_cli.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "ppo-compare" in text and "--group-by" in text and "bootstrap" in text


# ----------------------------------------------------------------------------- bad input
def one_error_line(err: str, parameter: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ppo-compare: error: ") and parameter in lines[0], err


def test_no_run_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(capsys, str(tmp_path / "empty"))
    assert code == 2
    one_error_line(err, "RUNS")
    code, _, err = run_main(capsys, str(tmp_path / "missing"))
    assert code == 2
    one_error_line(err, "RUNS")


def test_a_metric_empty_in_every_run(tmp_path, capsys):
    write_run(tmp_path / "a", {"env": "E", "preset": "auto"}, [{"steps": 100, "mean_return": 1.0}])
    code, _, err = run_main(capsys, str(tmp_path))
    assert code == 2
    one_error_line(err, "--metric eval_return")


def test_a_metric_column_absent_in_every_run(tmp_path, capsys):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "train_args.json").write_text(json.dumps({"env": "E", "preset": "auto"}))
    (folder / "progress.csv").write_text("steps,mean_return\n100,1.0\n")  # before eval_return existed
    code, _, err = run_main(capsys, str(tmp_path))
    assert code == 2
    one_error_line(err, "--metric eval_return")
    code, out, _ = run_main(capsys, str(tmp_path), "--metric", "mean_return", "--bootstrap", "10")
    assert code == 0 and table(out)["env=E, preset=auto"][0] == "1"


def test_a_cell_that_is_not_a_number(tmp_path, capsys):
    write_run(tmp_path / "a", {"env": "E", "preset": "auto"}, [{"steps": 100, "eval_return": "lots"}])
    code, _, err = run_main(capsys, str(tmp_path))
    assert code == 2
    one_error_line(err, "RUNS")
    assert "progress.csv line 2" in err


@pytest.mark.parametrize("bootstrap", ["0", "-5"])
def test_bootstrap_below_1(runs_dir, capsys, bootstrap):
    code, _, err = run_main(capsys, str(runs_dir), "--bootstrap", bootstrap)
    assert code == 2
    one_error_line(err, "--bootstrap")


@pytest.mark.parametrize("keys", ["nokey", "env,nokey", " , "])
def test_a_group_by_key_that_no_run_has(runs_dir, capsys, keys):
    code, _, err = run_main(capsys, str(runs_dir), "--group-by", keys)
    assert code == 2
    one_error_line(err, "--group-by")


def test_output_without_matplotlib(runs_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    code, _, err = run_main(capsys, str(runs_dir), "--output", str(tmp_path / "plot.png"))
    assert code == 2
    one_error_line(err, "--output")
    assert "pip install -e .[compare]" in err and not (tmp_path / "plot.png").exists()


@pytest.mark.parametrize(
    "argv, parameter",
    [(["--metric", "episodes"], "--metric"), (["--bootstrap", "many"], "--bootstrap"), ([], "RUNS")],
)
def test_argparse_errors_exit_2(runs_dir, capsys, argv, parameter):
    with pytest.raises(SystemExit) as stop:
        compare_cli.main([str(runs_dir), *argv] if argv else [])
    assert stop.value.code == 2
    assert parameter in capsys.readouterr().err.splitlines()[-1]


# ------------------------------------------------------------------------- two real runs
@pytest.mark.slow
def test_two_tiny_real_runs_compared(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    for seed in (0, 1):
        train = [
            *("--steps", "2000", "--eval-every", "1000", "--eval-episodes", "2", "--quiet"),
            *("--seed", str(seed), "--log-dir", str(tmp_path), "--save-dir", str(tmp_path / "w")),
        ]
        done = subprocess.run(
            [sys.executable, "train.py", *train],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    figure = tmp_path / "compare.png"
    done = subprocess.run(
        [sys.executable, "compare.py", str(tmp_path), "--output", str(figure), "--bootstrap", "200"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = table(done.stdout)["env=CartPole-v1, preset=auto"]
    assert row[:2] == ["2", "0,1"]
    low, high = interval(row[3])
    assert low <= float(row[2]) <= high
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_y_label_says_when_evaluations_sampled(runs_dir):
    runs = [compare.read_run(folder, "eval_return") for folder in compare.find_runs([runs_dir])]
    results = compare.compare_groups(compare.group_runs(runs, ["env"]), 10, 0, compare.PLAIN)
    assert compare_cli.y_label(results, "eval_return") == "evaluation return (deterministic)"
    assert compare_cli.y_label(results, "mean_return") == "mean training episode return"
    for run in runs:
        run.settings["eval_deterministic"] = False  # train.py --no-eval-deterministic
    assert compare_cli.y_label(results, "eval_return") == "evaluation return (sampled actions)"


def test_the_command_is_installed_and_at_the_root():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["ppo-compare"] == "AsyncTools.compare_cli:main"
    extra = {re.split("[<>=]", requirement)[0] for requirement in project["optional-dependencies"]["compare"]}
    assert {"rliable", "matplotlib"} <= extra
    assert "from AsyncTools.compare_cli import main" in (REPO_ROOT / "compare.py").read_text()


@pytest.mark.slow
def test_compare_py_help_is_the_commands():
    done = subprocess.run(
        [sys.executable, "compare.py", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: ppo-compare")


TRAINERS = ("ours (CLI defaults)", "SB3 defaults", "SB3 + RL Zoo settings")  # the tables' columns
CELL = re.compile(r"\**(-?\d+)\** (?:\[(-?\d+), (-?\d+)\]|\(seed (\d+),)")


def groups_by_label(folder: Path, keys: list[str]) -> dict[str, compare.GroupResult]:
    """The final eval_return of the runs under `folder`, grouped by `keys`, as ppo-compare
    computes it (2000 resamples, seed 0), by each group's label."""
    runs = [compare.read_run(run, "eval_return") for run in compare.find_runs([folder])]
    groups = compare.compare_groups(compare.group_runs(runs, keys), 2000, 0, compare.PLAIN)
    return {group.label: group for group in groups}


def table_rows(path: Path, heading: str) -> list[list[str]]:
    """The cells of the table under the header line starting with `heading`."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize(
    "document, heading, results",
    [
        ("README.md", "| env, 1,000,000 steps", "defaults_vs_sb3_1M"),
        ("docs/benchmarks/defaults-vs-sb3.md", "| env, 1,000,000 steps", "defaults_vs_sb3_1M"),
        ("docs/benchmarks/defaults-vs-sb3.md", "| env, 100,000 steps", "defaults_vs_sb3"),
    ],
)
def test_the_published_tables_are_what_ppo_compare_prints_from_the_benchmarks_runs(
    document, heading, results
):
    folder = REPO_ROOT / "benchmarks" / "results" / results / "runs"
    by_label = groups_by_label(folder, ["env", "trainer"])
    checked = 0
    for row in table_rows(REPO_ROOT / document, heading):
        for trainer, cell in zip(TRAINERS, row[1:4], strict=True):
            group = by_label.get(f"env={row[0]}, trainer={trainer}")
            if group is None:  # a row from another benchmark (Atari)
                assert "Atari" in row[0]
                continue
            check_cell(cell, group, (row[0], trainer))
            checked += 1
    assert checked >= 15


def check_cell(cell: str, group: compare.GroupResult, where: tuple[str, str]) -> None:
    """A table's cell, "mean [low, high]" or "mean (seed S, ...)", is the group's."""
    mean, low, high, seed = CELL.match(cell).groups()
    assert int(mean) == round(group.final.mean), where
    if seed is None:  # several seeds: their bootstrap interval
        assert len(group.runs) > 1 and (int(low), int(high)) == tuple(map(round, group.final.mean_ci)), where
    else:  # one seed, named
        assert [run.settings["seed"] for run in group.runs] == [int(seed)], where


# The family-defaults tables' columns: today's defaults, the studies' best, SB3's defaults
TODAY, SB3 = "presets=null, trainer=(unset)", "presets=(unset), trainer=SB3 defaults"
DISCRETE = "presets=benchmarks/results/family_discrete_200k/{}, trainer=(unset)"


@pytest.mark.parametrize(
    "results, heading, columns, envs",
    [
        (
            "family_discrete_200k",
            "| env, 200,000 steps |",
            (TODAY, DISCRETE.format("tuned_presets.json"), DISCRETE.format("tuned_30s_presets.json"), SB3),
            ["CartPole-v1", "Acrobot-v1", "LunarLander-v3"],
        ),
        (
            "family_continuous_200k",
            "| env, 200,000 steps, continuous |",
            (TODAY, SB3),
            ["Pendulum-v1", "BipedalWalker-v3", "HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"],
        ),
    ],
)
def test_the_family_defaults_tables_are_what_ppo_compare_prints_from_their_runs(
    results, heading, columns, envs
):
    folder = REPO_ROOT / "benchmarks" / "results" / results / "runs"
    by_label = groups_by_label(folder, ["env", "presets", "trainer"])
    rows = table_rows(REPO_ROOT / "docs/benchmarks/tuning.md", heading)
    for row in rows:
        for column, cell in zip(columns, row[1:], strict=True):
            check_cell(cell, by_label[f"env={row[0]}, {column}"], (row[0], column))
    assert [row[0] for row in rows] == envs


def test_the_benchmark_writes_run_folders_and_reference_returns(tmp_path, capsys):
    benchmark = load_benchmark("defaults_vs_sb3")
    runs = [
        {
            "env": "CartPole-v1",
            "variant": "sb3",
            "seed": 0,
            "steps": 1000,
            "mean_return": 100.0,
            "steps_trained": 2048,
        },
        {
            "env": "CartPole-v1",
            "variant": "sb3",
            "seed": 1,
            "steps": 1000,
            "mean_return": 300.0,
            "steps_trained": 2048,
        },
        {"env": "CartPole-v1", "variant": "ours", "seed": 0, "steps": 1000, "error": "timed out"},
    ]
    results = {"runs": runs, "config": {"envs": ["CartPole-v1"], "steps": 1000, "seeds": [0, 1]}}
    benchmark.write_run_folders(results, tmp_path / "runs")
    assert compare_cli.main([str(tmp_path / "runs"), "--group-by", "env,trainer", "--bootstrap", "10"]) == 0
    table = capsys.readouterr().out
    assert re.search(r"env=CartPole-v1, trainer=SB3 defaults\s+2\s+0,1\s+200.00", table)
    assert "ours" not in table  # a failed run has no folder
    assert (
        tmp_path / "runs/CartPole-v1/sb3/seed1/progress.csv"
    ).read_text() == "steps,eval_return\n2048,300.0\n"
    (tmp_path / "runs/CartPole-v1/sb3/seed1/notes.txt").write_text("a user's file")
    (tmp_path / "runs/CartPole-v1/sb3/seed7").mkdir()
    (tmp_path / "runs/CartPole-v1/sb3/seed7/train_args.json").write_text("{}")
    (tmp_path / "runs/CartPole-v1/sb3/seed7/progress.csv").write_text("steps,eval_return\n")
    benchmark.write_run_folders({"runs": runs[:1]}, tmp_path / "runs")  # seeds 1 and 7 gone
    assert not (tmp_path / "runs/CartPole-v1/sb3/seed7").exists()  # the format's: removed
    assert (tmp_path / "runs/CartPole-v1/sb3/seed1/notes.txt").exists()  # another file: kept
    benchmark.write_references(results, tmp_path / "refs.json")
    entry = json.loads((tmp_path / "refs.json").read_text())["CartPole-v1"]
    assert entry["reference"] == 200.0 and 10 < entry["random"] < 40  # random actions: ~22 steps
    assert tuning.read_references(tmp_path / "refs.json", ["CartPole-v1"])["CartPole-v1"].score(200.0) == 1.0


PRESET_CHECKS = {"today's continuous defaults": "null", "tuned (`tuned_presets.json`)": "tuned_presets.json"}


@pytest.mark.parametrize(
    "results, heading, budgets",
    [
        ("walker2d_200k_set", "| Walker2d-v5, seeds 1-3 |", (200_000, 1_000_000)),
        ("bipedal_200k_set", "| BipedalWalker-v3, seeds 1-3 |", (200_000,)),
        (
            "bipedal_200k_seeds_set",
            "| BipedalWalker-v3, seeds 1-3, tuned on seeds 4-6 |",
            (200_000, 1_000_000),
        ),
    ],
)
def test_a_preset_checks_table_is_what_ppo_compare_prints_from_its_runs(results, heading, budgets):
    """docs/benchmarks/tuning.md's checks of a study's best: rows are the settings, columns the
    budgets."""
    folder = REPO_ROOT / "benchmarks" / "results" / results / "runs"
    by_label = groups_by_label(folder, ["steps", "presets"])
    rows = table_rows(REPO_ROOT / "docs/benchmarks/tuning.md", heading)
    for row in rows:
        for steps, cell in zip(budgets, row[1:], strict=True):
            check_cell(cell, by_label[f"steps={steps}, presets={PRESET_CHECKS[row[0]]}"], (row[0], steps))
    assert [row[0] for row in rows] == list(PRESET_CHECKS)
