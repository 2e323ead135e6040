"""A policy exported for deployment acts as the trained one, for any batch size, and loads in a
process that has torch and nothing of this project."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from PPO import PPO
from PPO.export import EXPORT_FORMATS


def learners() -> dict[str, PPO]:
    return {
        "discrete": PPO(False, 4, 3, device="cpu", seed=0, normalize_obs=True),
        "multi_discrete": PPO(False, 4, 5, action_nvec=(2, 3), device="cpu", seed=0),
        "continuous": PPO(
            True, 4, 2, device="cpu", seed=0, action_low=[-2, -1], action_high=[2, 1], log_std_init=1.0
        ),
        "unbounded": PPO(True, 4, 2, device="cpu", seed=0, log_std_init=1.0),
        "squashed": PPO(
            True,
            4,
            2,
            device="cpu",
            seed=0,
            squash_actions=True,
            action_low=[0, -1],
            action_high=[3, 1],
            activation="relu",
        ),
        "image": PPO(False, 4 * 36 * 36, 3, observation_shape=(4, 36, 36), device="cpu", seed=0),
    }


def observations(ppo: PPO, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(n)
    if ppo.is_image:
        return torch.randint(0, 256, (n, *ppo.observation_shape), dtype=torch.uint8, generator=generator)
    return torch.randn(n, ppo.observ_dim, generator=generator) * 3


def load(file, format: str):
    """The exported file as a function of an observation batch (tensor in, NumPy out)."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(file))
        return lambda obs: session.run(None, {"obs": obs.numpy()})[0]
    module = torch.export.load(file).module() if format == "export" else torch.jit.load(file)
    return lambda obs: module(obs).numpy()


@pytest.mark.parametrize("format", EXPORT_FORMATS)
@pytest.mark.parametrize("kind", list(learners()))
def test_the_exported_policy_acts_as_get_action_deterministic(tmp_path, kind, format):
    ppo = learners()[kind]
    if ppo.policy.obs_normalizer is not None:
        ppo.policy.obs_normalizer.update(torch.randn(50, 4) * 2 + 1)
    if ppo.is_continuous:
        with torch.no_grad():
            ppo.policy.actor[-1].bias.fill_(3.0)  # means outside the bounds: clipped like get_action
    deployed = load(ppo.export(tmp_path / "policy", format=format), format)
    for n in (1, 2, 17):
        obs = observations(ppo, n)
        expected = ppo.get_action(obs, deterministic=True)
        # get_action runs the actor in NumPy on the CPU: equal to float32 rounding
        np.testing.assert_allclose(deployed(obs), expected, rtol=1e-6, atol=1e-6)
        assert deployed(obs).dtype == expected.dtype
        assert deployed(obs).shape == expected.shape


LOADERS = {
    "export": "policy = torch.export.load(sys.argv[1]).module()\n"
    "print(policy(torch.from_numpy(obs)).numpy().tolist())\n",
    "torchscript": "policy = torch.jit.load(sys.argv[1])\n"
    "print(policy(torch.from_numpy(obs)).numpy().tolist())\n",
    "onnx": "import onnxruntime\n"
    "session = onnxruntime.InferenceSession(sys.argv[1])\n"
    "print(session.run(None, {'obs': obs})[0].tolist())\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("format", EXPORT_FORMATS)
def test_the_exported_file_runs_without_this_project(tmp_path, format):
    ppo = learners()["continuous"]
    file = ppo.export(tmp_path / "policy", format=format)
    obs = observations(ppo, 5)
    np.save(tmp_path / "obs.npy", obs.numpy())
    script = (
        "import sys, numpy, torch\n"
        "obs = numpy.load(sys.argv[2])\n"
        + LOADERS[format]
        + "assert 'PPO' not in sys.modules and 'AsyncTools' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(file), str(tmp_path / "obs.npy")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(
        np.array(json.loads(done.stdout)), ppo.get_action(obs, deterministic=True), rtol=1e-6
    )


def test_clip_actions_false_keeps_the_raw_mean_in_get_action_and_the_export(tmp_path):
    ppo = learners()["continuous"]
    with torch.no_grad():
        ppo.policy.actor[-1].bias.fill_(3.0)
    obs = observations(ppo, 9)
    raw = ppo.get_action(obs, deterministic=True, clip_actions=False)
    clipped = ppo.get_action(obs, deterministic=True)
    assert (raw > np.array([2, 1])).any()
    np.testing.assert_array_equal(clipped, np.clip(raw, [-2, -1], [2, 1]))
    deployed = load(ppo.export(tmp_path / "raw.pt2", clip_actions=False), "export")
    np.testing.assert_allclose(deployed(obs), raw, rtol=1e-6, atol=1e-6)


def test_an_unknown_format_is_named():
    with pytest.raises(
        ValueError, match=r"format must be one of \('export', 'torchscript', 'onnx'\), got 'tflite'"
    ):
        learners()["discrete"].export("policy.tflite", format="tflite")
