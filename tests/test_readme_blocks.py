"""Every Python block of the README and of the docs site (docs/**/*.md), run as written, in
order (the README first, then the docs pages by path), each in a fresh process, all in one
working folder (as a reader following them would: later blocks load what earlier ones saved);
then every command of their bash blocks, in the same order, in the same folder. A block (Python
or bash) preceded by `<!-- readme-test: not run (why) -->` is skipped; the only change made to
the others is the training budget (BUDGETS, TINY_STEPS), so CI stays short."""

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
BUDGETS = {"steps=10_000_000": "steps=1_024"}  # the Atari and EnvPool blocks: one round instead of 10M steps

# A piece of every Python block that ran when all of them were in the README: each must still
# be in a block that runs, wherever it now lives (README or docs).
MUST_RUN_PYTHON = [
    "async_ppo = AsyncPPO(env=env, ppo=ppo, num_envs=32, steps=100000)",  # the one-liner
    "utils.buffer_to_target_buffer_transfer(buffer, ppo.memory)\n\t\t\t\tppo.learn()",  # the custom loop
    "vec_env.step_autoreset(actions)",  # the fixed-horizon loop
    "ppo.load_weights('data/cartpole')",  # load and play
    "PPO.load('data/cartpole').export('cartpole.pt2')",  # export
    'AsyncPPO("ALE/Breakout-v5", ppo, steps=10_000_000).run()',  # Atari
    "record_video(ppo, gym.make('CartPole-v1', render_mode='rgb_array'), 'videos/')",  # evaluation
    'AsyncPPO("Pong-v5", ppo_for_env("Pong-v5"), num_envs=8, steps=10_000_000, backend="envpool")',
]
# The same for the commands of the bash blocks (their beginnings).
MUST_RUN_SHELL = [
    "pip install -r requirements.txt",
    "python train.py",
    "pip install -r requirements-test.txt",
    "python train.py --env tests.user_envs:Corridor-v0",
    "python play.py --weights data/tests.user_envs-Corridor-v0",
    "python train.py --help",
    "python train.py --env HalfCheetah-v5",
    "python train.py --resume runs/",
    "python train.py --timeout 600",
    "python play.py --weights data/HalfCheetah-v5",
    "python train.py --env Pong-v5 --backend envpool",
]


def pages() -> list[Path]:
    """The README, then every page of the docs site, by path."""
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]


def page_name(page: Path) -> str:
    return page.relative_to(REPO_ROOT).as_posix()


def fenced_blocks(page: Path, language: str) -> list[tuple[int, str, bool]]:
    """(line of the opening fence, code, run) for each ```language block of a page."""
    text = page.read_text()
    blocks = []
    for match in re.finditer(rf"```{language}\n(.*?)```", text, re.S):
        before = text[: match.start()].rstrip().splitlines()
        line = text[: match.start()].count("\n") + 1
        blocks.append((line, match.group(1), not (before and before[-1].startswith(NOT_RUN))))
    return blocks


def readme_blocks() -> list[tuple[str, int, str, bool]]:
    """(page, line, code, run) for each ```python block of the README and the docs, in order."""
    return [(page_name(page), *block) for page in pages() for block in fenced_blocks(page, "python")]


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reader")


def test_the_readme_has_its_blocks():
    """The README keeps the original project's three uses (the one-liner, the custom loop,
    load-and-play), all run; every block that ran before the docs site still runs somewhere."""
    blocks = readme_blocks()
    readme = [block for block in blocks if block[0] == "README.md"]
    assert len(readme) >= 3 and all(run for *_, run in readme)
    running = [code for *_, code, run in blocks if run]
    for piece in MUST_RUN_PYTHON:
        assert any(piece in code for code in running), f"no block that runs has {piece!r}"
    assert len(running) >= len(MUST_RUN_PYTHON)


@pytest.mark.slow
@pytest.mark.parametrize(
    "page, line, code, run",
    [pytest.param(*block, id=f"{block[0]}:line{block[1]}") for block in readme_blocks()],
)
def test_readme_block_runs_as_written(reader_folder, page, line, code, run):
    if not run:
        pytest.skip(f"{page} line {line}: marked not run")
    for written, budget in BUDGETS.items():
        code = code.replace(written, budget)
    stem = "readme" if page == "README.md" else re.sub(r"\W", "_", page.removesuffix(".md"))
    script = reader_folder / f"{stem}_line{line}.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))  # what `pip install -e .` gives
    done = subprocess.run(
        [sys.executable, script.name], cwd=reader_folder, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{page} block at line {line} failed:\n{done.stderr[-3000:]}"


# ---------------------------------------------------------------------------- shell blocks
TINY_STEPS = 2048  # a train.py command's budget: a round or two
EPISODES = {"--episodes 5": "--episodes 1"}
RUN_FOLDER = re.compile(r"runs/(\S+?)_\d{8}-\d{6}_seed\d+")  # as the README names a run folder


def readme_shell_commands() -> list[tuple[str, int, str, bool]]:
    """(page, line, command, run) for each command of the ```bash blocks of the README and the
    docs, in order: continuation lines joined, `&&` chains split, comments dropped."""
    commands = []
    for page in pages():
        for fence_line, block, run in fenced_blocks(page, "bash"):
            joined = re.sub(r"\\\n\s*", " ", block)
            for offset, line in enumerate(joined.splitlines()):
                line = re.sub(r"\s+#.*$", "", line).strip()
                commands += [
                    (page_name(page), fence_line + 1 + offset, part.strip(), run)
                    for part in line.split("&&")
                    if part.strip()
                ]
    return commands


def runnable(command: str, folder: Path) -> list[str] | None:
    """The command as this test runs it (tiny budgets, the script from the checkout, the run
    folder an earlier command made), or None for `python -m pytest` (this suite itself)."""
    words = shlex.split(command)
    if words[:3] == ["python", "-m", "pytest"]:
        return None
    if words[:2] == ["pip", "install"]:  # offline: every requirement must already be installed
        return [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-index",
            *[str(REPO_ROOT / word) if word.startswith("requirements") else word for word in words[2:]],
        ]
    if words[:2] == ["python", "compare.py"]:  # a benchmark's committed run folders, in the checkout
        folders = [str(REPO_ROOT / word) if word.startswith("benchmarks/") else word for word in words[2:]]
        return [sys.executable, str(REPO_ROOT / "compare.py"), *folders]
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
    """The README keeps the set-up commands and the command line (with a resume); every command
    that ran before the docs site still runs somewhere."""
    commands = readme_shell_commands()
    readme = [command for page, _, command, run in commands if page == "README.md" and run]
    assert len(readme) >= 7
    assert any(command.startswith("python train.py --resume") for command in readme)
    running = [command for *_, command, run in commands if run]
    for start in MUST_RUN_SHELL:
        assert any(command.startswith(start) for command in running), f"no command that runs starts {start!r}"


@pytest.mark.slow
def test_readme_shell_commands_run_as_written(reader_folder):
    """In order, in one folder (the resume line continues the run an earlier line made)."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    commands = [(page, line, command) for page, line, command, run in readme_shell_commands() if run]
    ran = 0
    for page, line, command in commands:
        words = runnable(command, reader_folder)
        if words is None:
            continue
        done = subprocess.run(words, cwd=reader_folder, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{page} line {line}: {command}\n{done.stderr[-3000:]}"
        ran += 1
    pytest_runs = sum(command.startswith("python -m pytest") for *_, command in commands)
    assert ran == len(commands) - pytest_runs  # this suite is not run from itself
    assert (reader_folder / "cheetah.gif").stat().st_size > 10_000
