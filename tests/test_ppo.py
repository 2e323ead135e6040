"""Tests for the PPO learner: ratios before an update, the entropy bonus, batching, argument
checks, save/load (including safety against corrupt and malicious files) and seeding."""

import math
import os

import numpy as np
import pytest
import torch
from torch.distributions import (
    AffineTransform,
    Categorical,
    Independent,
    Normal,
    TanhTransform,
    TransformedDistribution,
)

import PPO.checkpoint as checkpoint
from PPO import PPO, persistence
from PPO.advantages import compute_gae
from PPO.Memory import Rollout

OBS_DIM = 5
LOW, HIGH = [-1.0, 0.0], [3.0, 10.0]
CENTER = torch.tensor([1.0, 5.0])
HALF = torch.tensor([2.0, 5.0])

STAT_KEYS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance")


def make_ppo(kind="discrete", **kwargs):
    # Raw rewards: these tests check the update's arithmetic against hand-computed returns.
    base = dict(device="cpu", seed=0, batch_size=64, mini_batch_size=32, k_epochs=2, normalize_reward=False)
    if kind == "discrete":
        args = (False, OBS_DIM, 3)
    else:
        args = (True, OBS_DIM, 2)
        base.update(action_low=LOW, action_high=HIGH)
        if kind == "squashed":
            base.update(squash_actions=True)
    base.update(kwargs)
    return PPO(*args, **base)


def fill_memory(ppo, num_steps, rng, rewards=None, episode_len=10):
    """Adds trajectories of at most `episode_len` steps; the actions are the policy's own samples.
    Returns the states and actions added."""
    states = rng.normal(size=(num_steps, OBS_DIM)).astype(np.float32)
    actions = ppo.get_action(states)
    if rewards is None:
        rewards = rng.normal(size=num_steps).astype(np.float32)
    terminated = np.zeros(num_steps, dtype=bool)
    truncated = np.zeros(num_steps, dtype=bool)
    ends = np.arange(episode_len - 1, num_steps, episode_len)
    terminated[ends[::2]] = True
    truncated[ends[1::2]] = True
    if not (terminated[-1] or truncated[-1]):
        truncated[-1] = True
    num_ends = int((terminated | truncated).sum())
    final_states = rng.normal(size=(num_ends, OBS_DIM)).astype(np.float32)
    ppo.memory.add_trajectories(states, actions, rewards, terminated, truncated, final_states)
    return states, actions


def reference_log_probs(ppo, kind, states, actions):
    """The log-prob of each action computed with torch.distributions, independently of evaluate."""
    policy = ppo.policy
    with torch.no_grad():
        out = policy.actor(torch.as_tensor(states))
        if kind == "discrete":
            return Categorical(logits=out).log_prob(torch.as_tensor(actions))
        std = policy.log_std.clamp(-20, 2).exp().expand_as(out)
        if kind == "continuous":
            return Normal(CENTER + HALF * out, HALF * std).log_prob(torch.as_tensor(actions)).sum(-1)
        dist = Independent(
            TransformedDistribution(Normal(out, std), [TanhTransform(), AffineTransform(CENTER, HALF)]), 1
        )
        return dist.log_prob(torch.as_tensor(actions))


# ------------------------------------------------------------ ratio before any update
@pytest.mark.parametrize("kind", ["discrete", "continuous", "squashed"])
def test_ratio_is_one_before_any_update(kind):
    ppo = make_ppo(kind)
    with torch.no_grad():  # give the policy head real outputs
        gen = torch.Generator().manual_seed(1)
        head = ppo.policy.actor[-1]
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * 0.5)
    rng = np.random.default_rng(0)
    states = rng.normal(size=(512, OBS_DIM)).astype(np.float32)
    actions = ppo.get_action(states)
    s, a = torch.from_numpy(states), torch.from_numpy(actions)
    with torch.no_grad():
        lp1, _, _ = ppo.policy.evaluate(s, a)
        lp2, _, _ = ppo.policy.evaluate(s, a)
    assert torch.isfinite(lp1).all()
    assert torch.equal(torch.exp(lp1 - lp2), torch.ones(512))

    ref = reference_log_probs(ppo, kind, states, actions)
    if kind == "squashed":
        unit = (a - CENTER) / HALF
        ok = (unit.abs() < 0.99).all(-1)
        assert ok.sum() > 300
        lp1, ref = lp1[ok], ref[ok]
    torch.testing.assert_close(lp1, ref, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(torch.exp(lp1 - ref), torch.ones_like(ref), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["discrete", "continuous", "squashed"])
def test_first_minibatch_of_learn_sees_ratio_one(kind):
    """End to end through memory and learn(): one epoch, one mini-batch, so the stats are those
    of the ratio before the only gradient step: approx_kl 0, clip_fraction 0."""
    ppo = make_ppo(kind, batch_size=256, mini_batch_size=256, k_epochs=1, policy_clip=1e-3)
    fill_memory(ppo, 256, np.random.default_rng(1))
    stats = ppo.learn()
    assert stats is not None
    assert abs(stats["approx_kl"]) < 1e-6
    assert stats["clip_fraction"] == 0.0
    assert stats["gradient_steps"] == 1.0


def test_saturated_squashed_samples_have_finite_log_probs_and_unit_ratio():
    ppo = make_ppo("squashed", batch_size=400, mini_batch_size=400, k_epochs=1)
    with torch.no_grad():
        ppo.policy.log_std.fill_(8.0)  # clamped to 2: std e^2 in pre-tanh units
    rng = np.random.default_rng(2)
    states = rng.normal(size=(400, OBS_DIM)).astype(np.float32)
    actions = ppo.get_action(states)
    a = torch.from_numpy(actions)
    saturated = ((a == CENTER - HALF) | (a == CENTER + HALF)).any(-1)
    assert saturated.sum() > 20, "the test must exercise actions exactly on the bounds"
    assert torch.all(a >= torch.tensor(LOW)) and torch.all(a <= torch.tensor(HIGH))
    with torch.no_grad():
        lp1, ent, values = ppo.policy.evaluate(torch.from_numpy(states), a)
        lp2, _, _ = ppo.policy.evaluate(torch.from_numpy(states), a)
    assert torch.isfinite(lp1).all() and torch.isfinite(ent).all() and torch.isfinite(values).all()
    assert torch.equal(torch.exp(lp1 - lp2), torch.ones(400))

    # and through learn(): the stored samples all have ratio 1, and nothing is NaN
    ppo.memory.add_trajectories(
        states,
        actions,
        np.zeros(400, np.float32),
        np.zeros(400, bool),
        np.r_[np.zeros(399, bool), True],
        rng.normal(size=(1, OBS_DIM)).astype(np.float32),
    )
    stats = ppo.learn()
    assert all(math.isfinite(stats[k]) for k in STAT_KEYS)
    assert abs(stats["approx_kl"]) < 1e-6 and stats["clip_fraction"] == 0.0
    assert all(torch.isfinite(p).all() for p in ppo.policy.parameters())


# ------------------------------------------------------------ entropy bonus
def test_entropy_loss_has_gradient_continuous():
    ppo = make_ppo("continuous")
    states = torch.randn(32, OBS_DIM)
    actions = torch.from_numpy(ppo.get_action(states))
    _, entropy, _ = ppo.policy.evaluate(states, actions)
    (-entropy.mean()).backward()
    # entropy = sum_j (0.5 + 0.5 log 2pi + log_std_j) + const: d(-entropy)/d log_std_j = -1
    torch.testing.assert_close(ppo.policy.log_std.grad, -torch.ones(2))


def test_entropy_loss_has_gradient_discrete():
    ppo = make_ppo("discrete")
    with torch.no_grad():
        ppo.policy.actor[-1].bias.copy_(torch.tensor([3.0, 0.0, 0.0]))  # far from uniform
    states = torch.randn(32, OBS_DIM)
    _, entropy, _ = ppo.policy.evaluate(states, torch.zeros(32, dtype=torch.long))
    (-entropy.mean()).backward()
    grad = ppo.policy.actor[-1].bias.grad
    # raising entropy means lowering the dominant logit: its gradient of -entropy is positive
    assert grad[0] > 0.05 and grad[1] < 0 and grad[2] < 0
    assert ppo.policy.actor[0].weight.grad.abs().sum() > 0


def _entropy_after_one_learn(kind, entropy_coef):
    ppo = make_ppo(
        kind,
        entropy_coef=entropy_coef,
        value_coef=0.0,
        batch_size=256,
        mini_batch_size=64,
        k_epochs=8,
        lr=1e-2,
    )
    if kind == "discrete":
        with torch.no_grad():
            ppo.policy.actor[-1].bias.copy_(torch.tensor([3.0, 0.0, 0.0]))  # low entropy start
    rng = np.random.default_rng(3)
    probe = torch.from_numpy(rng.normal(size=(200, OBS_DIM)).astype(np.float32))
    probe_actions = torch.from_numpy(ppo.get_action(probe))
    with torch.no_grad():
        before = ppo.policy.evaluate(probe, probe_actions)[1].mean().item()
    fill_memory(ppo, 256, rng, rewards=np.zeros(256, np.float32))
    stats = ppo.learn()
    with torch.no_grad():
        after = ppo.policy.evaluate(probe, probe_actions)[1].mean().item()
    return ppo, stats, before, after


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_learn_with_entropy_bonus_raises_entropy(kind):
    """All rewards zero, value loss off: the entropy bonus is what moves the entropy up, well
    beyond what the same update without the bonus does."""
    ppo, stats, before, after = _entropy_after_one_learn(kind, entropy_coef=10.0)
    _, _, control_before, control_after = _entropy_after_one_learn(kind, entropy_coef=0.0)
    assert control_before == before
    assert after > before + 0.3
    assert after > control_after + 0.3
    if kind == "continuous":
        assert torch.all(ppo.policy.log_std > 0.2)  # from 0
    assert math.isfinite(stats["entropy"])


# ------------------------------------------------------------ batching
@pytest.mark.parametrize("kind", ["discrete", "continuous", "squashed"])
def test_learn_waits_for_batch_size_then_learns(kind):
    ppo = make_ppo(kind, batch_size=100, mini_batch_size=32, k_epochs=3)
    rng = np.random.default_rng(4)
    before = {k: v.clone() for k, v in ppo.policy.state_dict().items()}
    fill_memory(ppo, 60, rng)
    assert ppo.learn() is None
    assert len(ppo.memory) == 60
    assert all(torch.equal(v, ppo.policy.state_dict()[k]) for k, v in before.items())

    fill_memory(ppo, 50, rng)
    assert len(ppo.memory) == 110
    stats = ppo.learn()
    assert isinstance(stats, dict)
    for key in STAT_KEYS:
        assert key in stats and math.isfinite(stats[key]), key
    assert stats["num_samples"] == 110.0
    assert stats["gradient_steps"] == 3 * math.ceil(110 / 32)
    assert 0.0 <= stats["clip_fraction"] <= 1.0
    assert stats["value_loss"] >= 0.0
    assert len(ppo.memory) == 0
    assert any(not torch.equal(v, ppo.policy.state_dict()[k]) for k, v in before.items())
    assert ppo.stats["policy_loss"] == stats["policy_loss"]
    assert ppo.learn() is None  # memory emptied


def test_advantages_bootstrap_truncation_and_cut_termination():
    """The learner's GAE: terminated steps bootstrap 0, truncated ones V(final state). One
    column: an episode terminated at step 2, then an autoreset row, then one truncated at 5."""
    ppo = make_ppo("discrete", gamma=0.9, GAE_lambda=0.8)
    g = torch.Generator().manual_seed(0)
    states = torch.randn(6, 1, OBS_DIM, generator=g)
    finals = torch.randn(2, OBS_DIM, generator=g) * 3
    column = lambda *xs: torch.tensor(xs, dtype=torch.bool)[:, None]  # noqa: E731
    batch = Rollout(
        states=states,
        actions=torch.zeros(6, 1, dtype=torch.long),
        rewards=torch.arange(6, dtype=torch.float32)[:, None],
        terminated=column(0, 0, 1, 0, 0, 0),
        truncated=column(0, 0, 0, 0, 0, 1),
        valid=column(1, 1, 1, 0, 1, 1),
        final_states=finals,
        episode_starts=column(1, 0, 0, 0, 1, 0),
        log_probs=torch.full((6, 1), float("nan")),
    )
    with torch.no_grad():
        values = ppo.policy.value(states[:, 0])
        v_final = ppo.policy.value(finals)
    assert abs(float(v_final[1])) > 1e-3  # the bootstrap is a real nonzero number
    adv, ret = ppo._advantages(batch, values[:, None] * batch.valid)
    next_values = torch.stack(
        [values[1], values[2], torch.tensor(0.0), torch.tensor(0.0), values[5], v_final[1]]
    )[:, None]
    ref_adv, ref_ret = compute_gae(
        batch.rewards, values[:, None] * batch.valid, next_values, batch.ends, batch.valid, 0.9, 0.8
    )
    torch.testing.assert_close(adv, ref_adv)
    torch.testing.assert_close(ret, ref_ret)
    assert adv[3, 0] == 0 and adv[2, 0] == batch.rewards[2, 0] - values[2]  # nothing flows across


# ------------------------------------------------------------ argument checks
@pytest.mark.parametrize(
    "kwargs,error,name",
    [
        (dict(observ_dim=0), ValueError, "observ_dim"),
        (dict(action_dim=-1), ValueError, "action_dim"),
        (dict(observ_dim=2.5), ValueError, "observ_dim"),
        (dict(lr=0), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(lr=float("inf")), ValueError, "lr"),
        (dict(gamma=1.5), ValueError, "gamma"),
        (dict(gamma=float("nan")), ValueError, "gamma"),
        (dict(GAE_lambda=-0.1), ValueError, "GAE_lambda"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(mini_batch_size=0), ValueError, "mini_batch_size"),
        (dict(k_epochs=0), ValueError, "k_epochs"),
        (dict(policy_clip=-0.2), ValueError, "policy_clip"),
        (dict(beta=-1.0), ValueError, "beta"),
        (dict(entropy_coef=-0.01), ValueError, "entropy_coef"),
        (dict(is_continuous="yes"), TypeError, "is_continuous"),
        (dict(use_RND=1), TypeError, "use_RND"),
        (dict(compile_update=True, compile_mode="fast"), ValueError, "compile_mode"),
        (dict(compile_mode="reduce-overhead"), ValueError, "compile_mode"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, name):
    """Each bad value raises, naming the parameter (compile_mode: an unknown mode, or a mode
    other than "default" without compile_update=True)."""
    args = dict(is_continuous=False, observ_dim=4, action_dim=2, device="cpu", seed=0)
    args.update(kwargs)
    with pytest.raises(error, match=rf"\b{name}\b"):
        PPO(**args)


def test_bad_action_bounds():
    with pytest.raises(ValueError, match="action_scaling"):
        PPO(True, 4, 2, action_scaling=-1.0, device="cpu", seed=0)
    with pytest.raises(ValueError, match="action_scaling"):
        PPO(True, 4, 2, action_scaling=[1.0, 0.0], device="cpu", seed=0)
    with pytest.raises(ValueError, match="action_scaling"):
        PPO(True, 4, 2, action_scaling=[1.0, 2.0, 3.0], device="cpu", seed=0)
    with pytest.raises(ValueError, match="action_high"):
        PPO(True, 4, 2, action_low=[0.0, 1.0], action_high=[1.0, 1.0], device="cpu", seed=0)
    with pytest.raises(ValueError, match="action_high"):
        PPO(True, 4, 2, action_low=[2.0, 0.0], action_high=[1.0, 1.0], device="cpu", seed=0)
    with pytest.raises(ValueError, match="action_low"):
        PPO(True, 4, 2, action_low=[0.0, float("nan")], action_high=[1.0, 1.0], device="cpu", seed=0)
    with pytest.raises(ValueError, match="action_low and action_high must be given together"):
        PPO(True, 4, 2, action_low=[0.0, 0.0], device="cpu", seed=0)


def test_action_scaling_sets_symmetric_bounds():
    ppo = PPO(True, 4, 2, action_scaling=[2.0, 0.5], device="cpu", seed=0)
    torch.testing.assert_close(ppo.policy.action_center, torch.zeros(2))
    torch.testing.assert_close(ppo.policy.action_half_range, torch.tensor([2.0, 0.5]))


def test_get_action_bad_states():
    ppo = make_ppo("discrete")
    with pytest.raises(ValueError, match=r"state.*\[batch, 5\]"):
        ppo.get_action(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="state"):
        ppo.get_action(torch.zeros(4))
    with pytest.raises(ValueError, match="state"):
        ppo.get_action(torch.zeros(2, 3, 4))
    bad = np.zeros((4, OBS_DIM), np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite") as info:
        ppo.get_action(bad)
    assert "[2]" in str(info.value)  # names the offending row
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        ppo.get_action(bad)
    with pytest.raises(TypeError, match="state"):
        ppo.get_action([[0.0] * OBS_DIM])


def test_get_action_shapes_and_dtypes():
    ppo = make_ppo("discrete")
    out = ppo.get_action(np.zeros((7, OBS_DIM), np.float32))
    assert out.shape == (7,) and out.dtype == np.int64 and ((0 <= out) & (out < 3)).all()
    single = ppo.get_action(np.zeros(OBS_DIM, np.float32))
    assert single.shape == ()
    cont = make_ppo("continuous")
    out = cont.get_action(torch.zeros(7, OBS_DIM))
    assert out.shape == (7, 2) and out.dtype == np.float32
    assert cont.get_action(torch.zeros(OBS_DIM)).shape == (2,)


def test_get_action_empty_batch():
    ppo = make_ppo("discrete")
    with pytest.raises(ValueError, match=r"state: expected shape \[batch, 5\] \(batch >= 1\)"):
        ppo.get_action(np.zeros((0, OBS_DIM), np.float32))


# ------------------------------------------------------------ save / load
@pytest.mark.parametrize("kind", ["discrete", "continuous", "squashed"])
def test_save_load_round_trip(kind, tmp_path):
    ppo = make_ppo(kind, normalize_obs=True, seed=1)
    rng = np.random.default_rng(5)
    fill_memory(ppo, 64, rng)
    ppo.learn()  # trained weights and observation statistics, not the initial ones
    ppo.save_weights(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "Policy_weights.pth").is_file()

    # a fresh PPO with another seed and, for continuous, other bounds
    extra = {} if kind == "discrete" else dict(action_low=[-5.0, -5.0], action_high=[5.0, 5.0])
    fresh = make_ppo(kind, normalize_obs=True, seed=99, **extra)
    returned = fresh.load_weights(tmp_path / "ckpt")
    assert returned is fresh
    for key, value in ppo.policy.state_dict().items():
        assert torch.equal(fresh.policy.state_dict()[key], value), key
    states = torch.from_numpy(rng.normal(size=(50, OBS_DIM)).astype(np.float32))
    np.testing.assert_array_equal(
        fresh.get_action(states, deterministic=True), ppo.get_action(states, deterministic=True)
    )
    with torch.no_grad():
        assert torch.equal(fresh.policy.value(states), ppo.policy.value(states))


def test_load_missing_directory(tmp_path):
    ppo = make_ppo("discrete")
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ppo.load_weights(missing)


def test_load_corrupt_file(tmp_path):
    ppo = make_ppo("discrete")
    ppo.save_weights(tmp_path)
    (tmp_path / "Policy_weights.pth").write_bytes(b"\x00garbage\xff" * 100)
    before = {k: v.clone() for k, v in ppo.policy.state_dict().items()}
    with pytest.raises(ValueError, match="Policy_weights.pth"):
        ppo.load_weights(tmp_path)
    assert all(torch.equal(v, ppo.policy.state_dict()[k]) for k, v in before.items())


def test_load_truncated_file(tmp_path):
    ppo = make_ppo("discrete")
    ppo.save_weights(tmp_path)
    data = (tmp_path / "Policy_weights.pth").read_bytes()
    (tmp_path / "Policy_weights.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"Policy_weights.pth is not a readable weights file"):
        ppo.load_weights(tmp_path)


def test_load_other_observ_dim(tmp_path):
    PPO(False, 7, 3, device="cpu", seed=0).save_weights(tmp_path)
    with pytest.raises(ValueError, match="observ_dim"):
        make_ppo("discrete").load_weights(tmp_path)


def test_load_other_is_continuous(tmp_path):
    PPO(True, OBS_DIM, 3, device="cpu", seed=0).save_weights(tmp_path)
    with pytest.raises(ValueError, match="is_continuous"):
        make_ppo("discrete").load_weights(tmp_path)


def test_load_other_action_dim(tmp_path):
    PPO(False, OBS_DIM, 4, device="cpu", seed=0).save_weights(tmp_path)
    with pytest.raises(ValueError, match="action_dim"):
        make_ppo("discrete").load_weights(tmp_path)


def test_load_other_architecture(tmp_path):
    make_ppo("discrete", hidden_sizes=(16,)).save_weights(tmp_path)
    with pytest.raises(ValueError, match=r"hidden_sizes=\[16\], but this PPO has hidden_sizes=\[64, 64\]"):
        make_ppo("discrete").load_weights(tmp_path)


def test_load_file_not_written_by_save_weights(tmp_path):
    ppo = make_ppo("discrete")
    torch.save(ppo.policy.state_dict(), tmp_path / "Policy_weights.pth")  # no config entries
    with pytest.raises(ValueError, match="save_weights"):
        ppo.load_weights(tmp_path)


class _Payload:
    """Unpickling this runs code that writes a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_load_refuses_pickled_objects_and_runs_no_code(tmp_path):
    ppo = make_ppo("discrete")
    marker = tmp_path / "marker.txt"
    state = {**ppo.policy.state_dict(), **persistence.config_tensors(ppo.config), "evil": _Payload(marker)}
    torch.save(state, tmp_path / "Policy_weights.pth")
    with pytest.raises(
        ValueError,
        match=r"Policy_weights.pth is not a readable weights file: .*"
        r"(?i:weights.only)",
    ):
        ppo.load_weights(tmp_path)
    assert not marker.exists()

    # the trap is real: a plain (unsafe) load would have run the code
    other = tmp_path / "other_marker.txt"
    torch.save({"evil": _Payload(other)}, tmp_path / "unsafe.pth")
    torch.load(tmp_path / "unsafe.pth", weights_only=False)
    assert other.read_text() == "pwned"


def test_load_refuses_dict_with_non_tensor_values(tmp_path):
    ppo = make_ppo("discrete")
    state = {**ppo.policy.state_dict(), **persistence.config_tensors(ppo.config), "note": 3}
    torch.save(state, tmp_path / "Policy_weights.pth")
    with pytest.raises(ValueError, match="dict of tensors"):
        ppo.load_weights(tmp_path)


def test_save_is_atomic(tmp_path, monkeypatch):
    first = make_ppo("continuous", seed=1)
    second = make_ppo("continuous", seed=2)
    real_save = torch.save
    calls = []

    def failing_save(obj, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real_save(obj, handle, *args, **kwargs)
        handle.write(b"PK\x03\x04 half a zip file")  # part of the file, then a crash
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    first.save_weights(tmp_path)
    with pytest.raises(OSError, match="simulated"):
        second.save_weights(tmp_path)
    monkeypatch.undo()
    assert len(calls) == 2

    assert sorted(os.listdir(tmp_path)) == ["Policy_weights.pth"]  # no temp files left
    loaded = make_ppo("continuous", seed=3).load_weights(tmp_path)
    states = torch.randn(20, OBS_DIM)
    np.testing.assert_array_equal(
        loaded.get_action(states, deterministic=True), first.get_action(states, deterministic=True)
    )
    assert not np.array_equal(
        loaded.get_action(states, deterministic=True), second.get_action(states, deterministic=True)
    )


# ------------------------------------------------------------ seeding
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_same_seed_same_weights_and_actions(kind):
    a, b = make_ppo(kind, seed=42), make_ppo(kind, seed=42)
    for key, value in a.policy.state_dict().items():
        assert torch.equal(value, b.policy.state_dict()[key]), key
    states = torch.randn(100, OBS_DIM)
    for _ in range(3):  # the sample streams stay in step
        np.testing.assert_array_equal(a.get_action(states), b.get_action(states))


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_different_seeds_differ(kind):
    a, b = make_ppo(kind, seed=1), make_ppo(kind, seed=2)
    assert not torch.equal(a.policy.actor[0].weight, b.policy.actor[0].weight)
    assert not torch.equal(a.policy.critic[0].weight, b.policy.critic[0].weight)
    states = torch.randn(100, OBS_DIM)
    assert not np.array_equal(a.get_action(states), b.get_action(states))


def test_seeded_learning_is_reproducible():
    results = []
    for _ in range(2):
        ppo = make_ppo("continuous", seed=7)
        fill_memory(ppo, 64, np.random.default_rng(0))
        stats = ppo.learn()
        results.append((stats, {k: v.clone() for k, v in ppo.policy.state_dict().items()}))
    assert results[0][0] == results[1][0]
    for key, value in results[0][1].items():
        assert torch.equal(value, results[1][1][key]), key


def test_construction_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_ppo("continuous", seed=5)
    assert torch.equal(torch.rand(3), expected)


# ------------------------------------------------------------ update options
def test_target_kl_stops_the_epochs_early():
    rng = np.random.default_rng(0)
    eager = make_ppo("discrete", k_epochs=8, lr=0.05, target_kl=1e-6)
    fill_memory(eager, 128, rng)
    stats = eager.learn()
    assert stats["epochs"] == 1.0 and stats["gradient_steps"] == 4.0

    patient = make_ppo("discrete", k_epochs=8, lr=0.05)
    fill_memory(patient, 128, np.random.default_rng(0))
    stats = patient.learn()
    assert stats["epochs"] == 8.0 and stats["gradient_steps"] == 32.0


def test_value_clip_limits_the_value_update():
    rng = np.random.default_rng(1)
    clipped, free = make_ppo("discrete", value_clip=1e-4, lr=0.05), make_ppo("discrete", lr=0.05)
    for ppo in (clipped, free):
        # Large rewards so that the unclipped critic moves a lot in one update.
        fill_memory(ppo, 128, np.random.default_rng(1), rewards=np.full(128, 50.0, np.float32))
    states = torch.from_numpy(rng.normal(size=(64, OBS_DIM)).astype(np.float32))
    before = clipped.policy.value(states).detach().clone()
    clipped.learn(), free.learn()
    moved_clipped = (clipped.policy.value(states).detach() - before).abs().mean()
    moved_free = (free.policy.value(states).detach() - before).abs().mean()
    assert moved_free > 5 * moved_clipped


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="device: 'cuda' was asked for"):
        PPO(False, 4, 2, device="cuda")


def test_a_drawn_seed_leaves_room_for_derived_seeds_in_int32():
    seeds = [PPO(False, 4, 2, device="cpu").seed for _ in range(50)]
    assert all(0 <= seed < 2**30 for seed in seeds) and len(set(seeds)) > 45
