"""Every Python block of the README, run as written, in README order, each in a fresh process,
all in one working folder (as a reader following the README would: later blocks load what
earlier ones saved). A block preceded by `<!-- readme-test: not run (why) -->` is skipped; the
only change made to the others is the training budget of BUDGETS, so CI stays short."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT

NOT_RUN = "<!-- readme-test: not run"
BUDGETS = {"steps=10_000_000": "steps=1_024"}  # the Atari block: one round instead of 10M steps


def readme_blocks() -> list[tuple[int, str, bool]]:
    """(line, code, run) for each ```python block of the README."""
    text = (REPO_ROOT / "README.md").read_text()
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        before = text[:match.start()].rstrip().splitlines()
        line = text[:match.start()].count("\n") + 1
        blocks.append((line, match.group(1), not (before and before[-1].startswith(NOT_RUN))))
    return blocks


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reader")


def test_the_readme_has_its_blocks():
    """Only two fragments are not run: Ray's (it needs a cluster for "auto") and a Dict env of
    the reader's own (tests/test_dict_images.py runs one)."""
    blocks = readme_blocks()
    assert len(blocks) >= 7 and sum(run for *_, run in blocks) >= len(blocks) - 2


@pytest.mark.slow
@pytest.mark.parametrize("line, code, run", [pytest.param(*block, id=f"line{block[0]}")
                                             for block in readme_blocks()])
def test_readme_block_runs_as_written(reader_folder, line, code, run):
    if not run:
        pytest.skip(f"README line {line}: marked not run")
    for written, budget in BUDGETS.items():
        code = code.replace(written, budget)
    script = reader_folder / f"readme_line{line}.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))  # what `pip install -e .` gives
    done = subprocess.run([sys.executable, script.name], cwd=reader_folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README block at line {line} failed:\n{done.stderr[-3000:]}"


# ---------------------------------------------------------------------------- shell blocks
TINY_STEPS = 2048          # a train.py command's budget: a round or two
EPISODES = {"--episodes 5": "--episodes 1"}
RUN_FOLDER = re.compile(r"runs/(\S+?)_\d{8}-\d{6}_seed\d+")  # as the README names a run folder


def readme_shell_commands() -> list[tuple[int, str]]:
    """(line, command) for each command of the README's ```bash blocks: continuation lines
    joined, `&&` chains split, comments dropped."""
    text = (REPO_ROOT / "README.md").read_text()
    commands = []
    for match in re.finditer(r"```bash\n(.*?)```", text, re.S):
        first_line = text[:match.start()].count("\n") + 2
        joined = re.sub(r"\\\n\s*", " ", match.group(1))
        for offset, line in enumerate(joined.splitlines()):
            line = re.sub(r"\s+#.*$", "", line).strip()
            commands += [(first_line + offset, part.strip()) for part in line.split("&&") if part.strip()]
    return commands


def runnable(command: str, folder: Path) -> list[str] | None:
    """The command as this test runs it (tiny budgets, the script from the checkout, the run
    folder an earlier command made), or None for `python -m pytest` (this suite itself)."""
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "pytest"]:
        return None
    if words[:2] == ["pip", "install"]:  # offline: every requirement must already be installed
        return [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                *[str(REPO_ROOT / word) if word.startswith("requirements") else word for word in words[2:]]]
    assert words[0] == "python" and words[1] in ("train.py", "play.py"), command
    words = [sys.executable, str(REPO_ROOT / words[1]), *words[2:]]
    if words[2:] == ["--help"]:
        return words
    if words[1].endswith("train.py"):
        if "--steps" in words:
            words[words.index("--steps") + 1] = str(TINY_STEPS * (2 if "--resume" in words else 1))
        else:
            words += ["--steps", str(TINY_STEPS)]
    command = " ".join(words)
    for written, budget in EPISODES.items():
        command = command.replace(written, budget)
    for match in RUN_FOLDER.finditer(command):
        made = sorted((folder / "runs").glob(f"{match.group(1)}_*"))
        assert made, f"no run folder {match.group(0)} made by an earlier command"
        command = command.replace(match.group(0), str(made[-1].relative_to(folder)))
    return command.split(" ")


def test_the_readme_has_its_shell_commands():
    commands = [command for _, command in readme_shell_commands()]
    assert len(commands) >= 7
    assert any(command.startswith("python train.py --resume") for command in commands)


@pytest.mark.slow
def test_readme_shell_commands_run_as_written(reader_folder):
    """In order, in one folder (the resume line continues the run an earlier line made)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    ran = 0
    for line, command in readme_shell_commands():
        words = runnable(command, reader_folder)
        if words is None:
            continue
        done = subprocess.run(words, cwd=reader_folder, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"README line {line}: {command}\n{done.stderr[-3000:]}"
        ran += 1
    pytest_runs = sum(command.startswith("python -m pytest") for _, command in readme_shell_commands())
    assert ran == len(readme_shell_commands()) - pytest_runs  # this suite is not run from itself
    assert (reader_folder / "cheetah.gif").stat().st_size > 10_000
