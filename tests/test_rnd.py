"""Tests for PPO.RND.RND and its use inside PPO (use_RND=True)."""
import math

import numpy as np
import pytest
import torch

from PPO import PPO
from PPO.RND import RND

OBS_DIM = 4


def clusters():
    g = torch.Generator().manual_seed(0)
    seen = torch.randn(256, OBS_DIM, generator=g) * 0.3 + 1.0
    novel = torch.randn(256, OBS_DIM, generator=g) * 0.3 - 2.5
    return seen, novel


def test_intrinsic_reward_of_often_seen_states_falls():
    torch.manual_seed(0)
    rnd = RND(OBS_DIM)
    seen, novel = clusters()
    target_before = [p.clone() for p in rnd.target.parameters()]
    seen_before = rnd.intrinsic_reward(seen, update_stats=False).mean().item()
    novel_before = rnd.intrinsic_reward(novel, update_stats=False).mean().item()
    assert seen_before > 0 and novel_before > 0

    gen = torch.Generator().manual_seed(1)
    losses = [rnd.train_predictor(seen, gen) for _ in range(150)]
    assert losses[-1] < 0.1 * losses[0]

    seen_after = rnd.intrinsic_reward(seen, update_stats=False)
    novel_after = rnd.intrinsic_reward(novel, update_stats=False)
    assert seen_after.shape == (256,) and torch.all(seen_after >= 0)
    assert seen_after.mean() < 0.3 * novel_after.mean()
    assert seen_after.mean() < 0.3 * seen_before
    # the target network is fixed
    for before, after in zip(target_before, rnd.target.parameters()):
        assert torch.equal(before, after)
        assert not after.requires_grad


def test_update_stats_false_leaves_statistics_alone():
    rnd = RND(OBS_DIM)
    seen, _ = clusters()
    state = {k: v.clone() for k, v in rnd.state_dict().items()}
    r1 = rnd.intrinsic_reward(seen, update_stats=False)
    r2 = rnd.intrinsic_reward(seen, update_stats=False)
    assert torch.equal(r1, r2)
    for key, value in rnd.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_intrinsic_reward_is_error_over_running_std():
    rnd = RND(OBS_DIM)
    seen, novel = clusters()
    batch = torch.cat([seen[:100], novel[:100]])
    rewards = rnd.intrinsic_reward(batch)  # update_stats=True: observation and reward stats move
    assert float(rnd.obs_normalizer.count) == 200
    assert float(rnd.reward_normalizer.count) == 200
    torch.testing.assert_close(rnd.obs_normalizer.mean, batch.double().mean(0))
    with torch.no_grad():
        x = ((batch - rnd.obs_normalizer.mean.float())
             / torch.sqrt(rnd.obs_normalizer.var.float() + 1e-8)).clamp(-5, 5)
        errors = (rnd.predictor(x) - rnd.target(x)).square().mean(-1)
    torch.testing.assert_close(rnd.reward_normalizer.var.float(), errors.var(unbiased=False),
                               rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(rewards, errors / errors.std(unbiased=False), rtol=1e-4, atol=1e-6)


def test_train_predictor_uses_update_fraction():
    rnd = RND(OBS_DIM, update_fraction=0.25)
    seen, _ = clusters()
    sizes = []
    original = rnd._errors

    def spy(obs):
        sizes.append(obs.shape[0])
        return original(obs)

    rnd._errors = spy
    rnd.train_predictor(seen, torch.Generator().manual_seed(0))
    assert sizes == [64]


def fill_memory(ppo, num_steps, rng):
    states = rng.normal(size=(num_steps, OBS_DIM)).astype(np.float32)
    actions = ppo.get_action(states)
    terminated = np.zeros(num_steps, bool)
    truncated = np.zeros(num_steps, bool)
    terminated[15::32] = True
    truncated[31::32] = True
    truncated[-1] = True
    num_ends = int((terminated | truncated).sum())
    ppo.memory.add(states, actions, np.zeros(num_steps, np.float32), terminated, truncated,
                   rng.normal(size=(num_ends, OBS_DIM)).astype(np.float32))


@pytest.mark.parametrize("is_continuous", [False, True])
def test_ppo_with_rnd_learns_and_round_trips(is_continuous, tmp_path):
    ppo = PPO(is_continuous, OBS_DIM, 2, use_RND=True, beta=0.5, device="cpu", seed=0,
              batch_size=128, mini_batch_size=64, k_epochs=3)
    assert ppo.rnd is not None
    predictor_before = [p.clone() for p in ppo.rnd.predictor.parameters()]
    target_before = [p.clone() for p in ppo.rnd.target.parameters()]
    rng = np.random.default_rng(0)
    fill_memory(ppo, 128, rng)
    stats = ppo.learn()
    assert stats is not None
    assert "intrinsic_reward" in stats
    assert math.isfinite(stats["intrinsic_reward"]) and stats["intrinsic_reward"] > 0
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction",
                "explained_variance"):
        assert math.isfinite(stats[key]), key
    # the predictor trained (one step per epoch), the target did not move
    assert any(not torch.equal(a, b) for a, b in zip(predictor_before, ppo.rnd.predictor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, ppo.rnd.target.parameters()))
    assert float(ppo.rnd.obs_normalizer.count) == 128

    ppo.save_weights(tmp_path)
    assert (tmp_path / "RND_weights.pth").is_file()
    fresh = PPO(is_continuous, OBS_DIM, 2, use_RND=True, device="cpu", seed=123).load_weights(tmp_path)
    for key, value in ppo.rnd.state_dict().items():
        assert torch.equal(fresh.rnd.state_dict()[key], value), key
    probe = torch.randn(32, OBS_DIM)
    assert torch.equal(fresh.rnd.intrinsic_reward(probe, update_stats=False),
                       ppo.rnd.intrinsic_reward(probe, update_stats=False))


def test_ppo_rnd_missing_rnd_file(tmp_path):
    PPO(False, OBS_DIM, 2, device="cpu", seed=0).save_weights(tmp_path)  # no RND file
    assert not (tmp_path / "RND_weights.pth").exists()
    with pytest.raises(FileNotFoundError, match="RND_weights.pth"):
        PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0).load_weights(tmp_path)


def test_ppo_without_rnd_has_no_intrinsic_reward():
    ppo = PPO(False, OBS_DIM, 2, device="cpu", seed=0, batch_size=64, mini_batch_size=32,
              k_epochs=1)
    assert ppo.rnd is None
    fill_memory(ppo, 64, np.random.default_rng(1))
    assert "intrinsic_reward" not in ppo.learn()


def test_beta_scales_the_intrinsic_reward_in_the_returns():
    """With extrinsic rewards all zero, the returns are beta * intrinsic-driven: doubling beta
    doubles (advantage + value - value) exactly when everything else is equal."""
    from PPO.Memory import Batch

    def advantages(beta):
        ppo = PPO(False, OBS_DIM, 2, use_RND=True, beta=beta, device="cpu", seed=0,
                  gamma=0.9, GAE_lambda=1.0)
        g = torch.Generator().manual_seed(0)
        states = torch.randn(8, OBS_DIM, generator=g)
        batch = Batch(states=states, actions=torch.zeros(8, dtype=torch.long),
                      rewards=torch.zeros(8), terminated=torch.tensor([0] * 7 + [1], dtype=torch.bool),
                      truncated=torch.zeros(8, dtype=torch.bool),
                      final_states=torch.randn(1, OBS_DIM, generator=g))
        values = torch.zeros(8)  # isolate the reward part
        adv, _ = ppo._advantages(batch, values)
        return adv, ppo.stats["intrinsic_reward"]

    adv1, r1 = advantages(0.1)
    adv2, r2 = advantages(0.2)
    assert r1 == r2 > 0
    torch.testing.assert_close(adv2, 2 * adv1)
    assert torch.all(adv1 > 0)


def test_failed_rnd_load_leaves_policy_untouched(tmp_path):
    PPO(False, OBS_DIM, 2, device="cpu", seed=1).save_weights(tmp_path)  # policy file only
    ppo = PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0)
    before = {k: v.clone() for k, v in ppo.policy.state_dict().items()}
    with pytest.raises(FileNotFoundError):
        ppo.load_weights(tmp_path)
    for key, value in ppo.policy.state_dict().items():
        assert torch.equal(value, before[key]), key
