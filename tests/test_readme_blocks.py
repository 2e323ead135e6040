"""Every Python block of the README, run as written, in README order, each in a fresh process,
all in one working folder (as a reader following the README would: later blocks load what
earlier ones saved). A block preceded by `<!-- readme-test: not run (why) -->` is skipped; the
only change made to the others is the training budget of BUDGETS, so CI stays short."""
from __future__ import annotations

import os
import re
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
    blocks = readme_blocks()
    assert len(blocks) >= 7 and sum(run for *_, run in blocks) >= len(blocks) - 1


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
