"""Files saved by earlier code still load to the same numbers: weights and checkpoints written
on 2026-12-04, before the redesign of issue 27 (tests/fixtures/v1, made by
tests/fixtures/make_files_v1.py). A format change must keep these loading."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from AsyncTools.AsyncPPO import AsyncPPO
from PPO import PPO
from tests.fixtures.make_files_v1 import CASES, probe_observations
from tests.test_golden import weights_hash

FILES = Path(__file__).resolve().parent / "fixtures" / "v1"
EXPECTED = json.loads((FILES / "expected.json").read_text())


@pytest.mark.parametrize("name", CASES)
def test_old_weights_load_to_the_same_policy(name):
    ppo = PPO.load(FILES / name / "weights", device="cpu")
    assert weights_hash(ppo) == EXPECTED[name]["weights_hash"]
    np.testing.assert_array_equal(
        ppo.get_action(probe_observations(ppo), deterministic=True), np.asarray(EXPECTED[name]["actions"])
    )


@pytest.mark.parametrize("name", [name for name in CASES if (FILES / name / "checkpoint.pth").is_file()])
def test_an_old_checkpoint_resumes_where_it_stopped(name, tmp_path):
    run_dir = shutil.copytree(FILES / name, tmp_path / name)
    env, _, runner_options = CASES[name]
    expected = EXPECTED[name]
    ppo = PPO.load(run_dir / "weights", device="cpu")
    runner = AsyncPPO(
        env,
        ppo,
        steps=expected["total_steps"] + 256,
        progress_bar=False,
        backend="loop",
        resume=run_dir,
        **runner_options,
    )
    assert weights_hash(ppo) == expected["weights_hash"]
    assert (runner.total_steps, len(runner.episode_returns)) == (
        expected["total_steps"],
        expected["episodes"],
    )
    runner.run()
    assert runner.total_steps >= expected["total_steps"] + 256
    runner.close()
