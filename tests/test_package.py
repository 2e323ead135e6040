"""The package as pip builds it: both packages with their data files, the licence, the
`ppo-train`/`ppo-play` commands (the same code as train.py/play.py), one version, and package
namespaces that do not shadow their modules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO_ROOT

import AsyncTools
import AsyncTools.AsyncPPO
import PPO


def test_the_wheel_holds_the_code_data_licence_and_commands(tmp_path):
    source = tmp_path / "source"  # a copy: building leaves build/ and *.egg-info beside the code
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", "tests", "benchmarks", "runs", "data", "__pycache__", "build", "*.egg-info"
        ),
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("parallel_ppo-*.whl")
    assert wheel.name.startswith(f"parallel_ppo-{PPO.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "AsyncTools/presets.json",
        "AsyncTools/py.typed",
        "PPO/py.typed",
        "AsyncTools/train_cli.py",
        "AsyncTools/play_cli.py",
        "PPO/PPO.py",
    ):
        assert needed in names, needed
    assert any(name.endswith("licenses/LICENSE") for name in names)
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "ppo-train = AsyncTools.train_cli:main" in entry_points
    assert "ppo-play = AsyncTools.play_cli:main" in entry_points


@pytest.mark.slow
def test_train_py_is_the_installed_command(tmp_path):
    for script, module in (("train.py", "AsyncTools.train_cli"), ("play.py", "AsyncTools.play_cli")):
        direct = subprocess.run(
            [sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
        installed = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.argv[0] = {script!r}; from {module} import main; main(['--help'])",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert direct.returncode == installed.returncode == 0
        assert direct.stdout == installed.stdout and "--help" in direct.stdout


def test_package_namespaces_keep_their_modules():
    assert callable(AsyncTools.AsyncPPO.ppo_for_env)  # the module, not the class
    assert AsyncTools.__version__ == PPO.__version__
    from AsyncTools.AsyncPPO import AsyncPPO, EnvVectorizer, VecMemory  # the original's paths
    from PPO import PPO as PPOClass

    assert isinstance(AsyncPPO, type) and isinstance(PPOClass, type)
    assert EnvVectorizer.__name__ == "EnvVectorizer" and VecMemory.__name__ == "VecMemory"


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_a_cpu(tmp_path):
    """benchmarks/gpu_check.py --device cpu --quick: what a CUDA machine runs, at tiny sizes,
    so that it works the first time it meets a GPU."""
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["update_matches_cpu"]["max_weight_difference"] == 0.0  # CPU against itself
    assert report["learns"]["mean_return"] > 100
    cartpole = report["speed"][0]
    assert cartpole["env"] == "CartPole-v1" and cartpole["num_envs"] == 1024
    assert cartpole["steps_per_s"] > 1000
    assert "correctness: ok" in done.stdout
