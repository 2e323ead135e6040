"""Tests for PPO.normalization.RunningMeanStd."""

import numpy as np
import pytest
import torch

from PPO.normalization import RunningMeanStd


@pytest.mark.parametrize("shape", [(3,), (2, 4), ()])
def test_stream_of_batches_matches_numpy_on_concatenation(shape):
    rng = np.random.default_rng(0)
    rms = RunningMeanStd(shape)
    batches = []
    for size in [1, 7, 100, 1, 0, 33, 250, 2]:
        # batches with different means and scales, so merging actually matters
        batch = rng.normal(loc=rng.uniform(-5, 5), scale=rng.uniform(0.1, 4.0), size=(size, *shape))
        batches.append(batch)
        rms.update(torch.from_numpy(batch))
    data = np.concatenate(batches, axis=0)
    assert rms.mean.dtype == torch.float64 and rms.var.dtype == torch.float64
    assert tuple(rms.mean.shape) == shape
    assert float(rms.count) == data.shape[0]
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(rms.var.numpy(), data.var(axis=0), rtol=0, atol=1e-9)


def test_float32_batches_are_accumulated_in_float64():
    rng = np.random.default_rng(1)
    rms = RunningMeanStd(2)
    chunks = [rng.normal(3.0, 2.0, size=(64, 2)).astype(np.float32) for _ in range(20)]
    for c in chunks:
        rms.update(torch.from_numpy(c))
    data = np.concatenate(chunks).astype(np.float64)
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=0, atol=1e-9)


def test_empty_batch_is_a_no_op():
    rms = RunningMeanStd(3)
    rms.update(torch.zeros(0, 3))
    assert float(rms.count) == 0
    torch.testing.assert_close(rms.mean, torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(rms.var, torch.ones(3, dtype=torch.float64))


def test_normalize_values_and_clip():
    rms = RunningMeanStd(2, clip=3.0, eps=1e-8)
    data = torch.tensor([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    rms.update(data)
    # mean = [2, 20], var = [8/3, 200/3]
    x = torch.tensor([[3.0, 25.0]])
    expected = torch.tensor(
        [[(3 - 2) / np.sqrt(8 / 3 + 1e-8), (25 - 20) / np.sqrt(200 / 3 + 1e-8)]], dtype=torch.float32
    )
    out = rms.normalize(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)

    far = torch.tensor([[1e6, -1e6], [-50.0, 500.0]])
    clipped = rms.normalize(far)
    assert torch.all(clipped <= 3.0) and torch.all(clipped >= -3.0)
    torch.testing.assert_close(clipped, torch.tensor([[3.0, -3.0], [-3.0, 3.0]]))


def test_default_clip_is_ten():
    rms = RunningMeanStd(1)
    out = rms.normalize(torch.tensor([[100.0], [-100.0], [0.5]]))
    torch.testing.assert_close(out, torch.tensor([[10.0], [-10.0], [0.5]]), atol=1e-6, rtol=0)


def test_state_dict_round_trips_the_stats():
    rng = np.random.default_rng(2)
    rms = RunningMeanStd(4)
    for _ in range(5):
        rms.update(torch.from_numpy(rng.normal(1.0, 3.0, size=(50, 4))))
    state = rms.state_dict()
    assert set(state) == {"mean", "var", "count"}

    fresh = RunningMeanStd(4)
    fresh.load_state_dict(state)
    for name in ("mean", "var", "count"):
        assert torch.equal(getattr(fresh, name), getattr(rms, name))
    x = torch.randn(10, 4)
    assert torch.equal(fresh.normalize(x), rms.normalize(x))
    # and merging continues from the loaded stats exactly as from the original
    more = torch.from_numpy(rng.normal(size=(30, 4)))
    rms.update(more)
    fresh.update(more)
    assert torch.equal(fresh.mean, rms.mean) and torch.equal(fresh.var, rms.var)
