"""Tests for PPO.RND.RND and its use inside PPO (use_RND=True)."""

import math

import numpy as np
import pytest
import torch

from PPO import PPO, persistence
from PPO.advantages import compute_gae
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
    for before, after in zip(target_before, rnd.target.parameters(), strict=True):
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


def test_intrinsic_reward_is_error_on_normalised_clipped_inputs():
    rnd = RND(OBS_DIM)
    seen, novel = clusters()
    batch = torch.cat([seen[:100], novel[:100]])
    rewards = rnd.intrinsic_reward(batch)  # update_stats=True: the input statistics move first
    assert float(rnd.obs_normalizer.count) == 200
    torch.testing.assert_close(rnd.obs_normalizer.mean, batch.double().mean(0))
    with torch.no_grad():
        x = (
            (batch - rnd.obs_normalizer.mean.float()) / torch.sqrt(rnd.obs_normalizer.var.float() + 1e-8)
        ).clamp(-5, 5)
        errors = (rnd.predictor(x) - rnd.target(x)).square().mean(-1)
    torch.testing.assert_close(rewards, errors)
    far = torch.full((1, OBS_DIM), 1e6)  # clipped to 5 std: a finite, bounded reward
    assert torch.isfinite(rnd.intrinsic_reward(far, update_stats=False)).all()


def test_update_obs_stats_warms_up_the_input_statistics():
    rnd = RND(OBS_DIM)
    warmup = torch.randn(500, OBS_DIM) * 3 + 7
    rnd.update_obs_stats(warmup)
    torch.testing.assert_close(rnd.obs_normalizer.mean, warmup.double().mean(0))
    torch.testing.assert_close(rnd.obs_normalizer.var, warmup.double().var(0, unbiased=False))


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
    ppo.memory.add_trajectories(
        states,
        actions,
        np.zeros(num_steps, np.float32),
        terminated,
        truncated,
        rng.normal(size=(num_ends, OBS_DIM)).astype(np.float32),
    )


@pytest.mark.parametrize("is_continuous", [False, True])
def test_ppo_with_rnd_learns_and_round_trips(is_continuous, tmp_path):
    ppo = PPO(
        is_continuous,
        OBS_DIM,
        2,
        use_RND=True,
        beta=0.5,
        device="cpu",
        seed=0,
        batch_size=128,
        mini_batch_size=64,
        k_epochs=3,
    )
    assert ppo.rnd is not None
    predictor_before = [p.clone() for p in ppo.rnd.predictor.parameters()]
    target_before = [p.clone() for p in ppo.rnd.target.parameters()]
    rng = np.random.default_rng(0)
    fill_memory(ppo, 128, rng)
    stats = ppo.learn()
    assert stats is not None
    assert "intrinsic_reward" in stats
    assert math.isfinite(stats["intrinsic_reward"]) and stats["intrinsic_reward"] > 0
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance"):
        assert math.isfinite(stats[key]), key
    # the predictor trained (one step per epoch), the target did not move
    assert any(
        not torch.equal(a, b) for a, b in zip(predictor_before, ppo.rnd.predictor.parameters(), strict=True)
    )
    assert all(torch.equal(a, b) for a, b in zip(target_before, ppo.rnd.target.parameters(), strict=True))
    assert float(ppo.rnd.obs_normalizer.count) == 128

    ppo.save_weights(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Policy_weights.pth"]  # one atomic file
    fresh = PPO(is_continuous, OBS_DIM, 2, use_RND=True, device="cpu", seed=123).load_weights(tmp_path)
    for key, value in ppo.rnd.state_dict().items():
        assert torch.equal(fresh.rnd.state_dict()[key], value), key
    probe = torch.randn(32, OBS_DIM)
    assert torch.equal(
        fresh.rnd.intrinsic_reward(probe, update_stats=False),
        ppo.rnd.intrinsic_reward(probe, update_stats=False),
    )


def test_rnd_entries_missing_from_the_weights_file_are_named(tmp_path):
    PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0).save_weights(tmp_path)
    file = tmp_path / "Policy_weights.pth"
    state = torch.load(file, weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("rnd.predictor")}, file)
    with pytest.raises(ValueError, match="missing predictor"):
        PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0).load_weights(tmp_path)


def test_saving_removes_the_rnd_file_of_older_saves(tmp_path):
    (tmp_path / "RND_weights.pth").write_bytes(b"from an older version")
    PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0).save_weights(tmp_path)
    assert not (tmp_path / "RND_weights.pth").exists()


def test_loading_weights_saved_without_rnd_names_the_option(tmp_path):
    PPO(False, OBS_DIM, 2, device="cpu", seed=0).save_weights(tmp_path)
    with pytest.raises(ValueError, match="use_RND=False, but this PPO has use_RND=True"):
        PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0).load_weights(tmp_path)


def test_ppo_without_rnd_has_no_intrinsic_reward():
    ppo = PPO(False, OBS_DIM, 2, device="cpu", seed=0, batch_size=64, mini_batch_size=32, k_epochs=1)
    assert ppo.rnd is None
    fill_memory(ppo, 64, np.random.default_rng(1))
    assert "intrinsic_reward" not in ppo.learn()


def test_beta_scales_the_intrinsic_advantage():
    """With extrinsic rewards and all values zero, A_ext = 0 and the advantages are
    beta * A_int: doubling beta doubles them exactly."""
    from PPO.Memory import Rollout

    def advantages(beta):
        ppo = PPO(False, OBS_DIM, 2, use_RND=True, beta=beta, device="cpu", seed=0, gamma=0.9, GAE_lambda=1.0)
        g = torch.Generator().manual_seed(0)
        batch = Rollout.from_trajectories(
            torch.randn(8, OBS_DIM, generator=g),
            torch.zeros(8, dtype=torch.long),
            torch.zeros(8),
            torch.tensor([0] * 7 + [1], dtype=torch.bool),
            torch.zeros(8, dtype=torch.bool),
            torch.randn(1, OBS_DIM, generator=g),
        ).to("cpu")
        torch.nn.init.zeros_(ppo.policy.critic[-1].weight)  # all values 0: only rewards count
        torch.nn.init.zeros_(ppo.policy.critic[-1].bias)
        adv, returns = ppo._advantages(batch, torch.zeros(8, 1, 2))
        assert returns.shape == (8, 1, 2) and torch.all(returns[..., 0] == 0)
        return adv, ppo.stats["intrinsic_reward"]

    adv1, r1 = advantages(0.1)
    adv2, r2 = advantages(0.2)
    assert r1 == r2 > 0
    torch.testing.assert_close(adv2, 2 * adv1)
    assert torch.all(adv1 > 0)


def test_failed_rnd_load_leaves_policy_untouched(tmp_path):
    """RND entries of the wrong shape are found before anything is loaded."""
    PPO(False, OBS_DIM + 1, 2, use_RND=True, device="cpu", seed=1).save_weights(tmp_path)
    file = tmp_path / "Policy_weights.pth"
    state = torch.load(file, weights_only=True)
    fitting = persistence.weights_state(PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=2))
    torch.save({k: (v if k.startswith("rnd.") else fitting[k]) for k, v in state.items()}, file)
    ppo = PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0)
    before = {k: v.clone() for k, v in ppo.policy.state_dict().items()}
    with pytest.raises(ValueError, match="Policy_weights.pth does not match this model"):
        ppo.load_weights(tmp_path)
    for key, value in ppo.policy.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_rnd_gives_the_critic_two_value_heads():
    ppo = PPO(False, OBS_DIM, 2, use_RND=True, device="cpu", seed=0)
    assert ppo.policy.critic[-1].out_features == 2
    assert ppo.policy.value(torch.randn(5, OBS_DIM)).shape == (5, 2)
    assert PPO(False, OBS_DIM, 2, device="cpu", seed=0).policy.value(torch.randn(5, OBS_DIM)).shape == (5,)


def test_intrinsic_returns_run_through_episode_ends_within_an_env():
    """Column 0 holds two episodes (the first terminated at row 1, an autoreset row 2 between
    them, the second terminated at row 5), column 1 one episode truncated at row 1 (then a
    padded tail). The extrinsic GAE cuts at every end; the intrinsic GAE runs on from row 1
    into column 0's next episode (bootstrapping V_int of its first state, past the autoreset
    row) and stops only at each column's last step."""
    from PPO.Memory import Rollout

    ppo = PPO(
        False,
        OBS_DIM,
        2,
        use_RND=True,
        beta=1.0,
        extrinsic_coef=2.0,
        gamma=0.9,
        intrinsic_gamma=0.8,
        GAE_lambda=0.7,
        device="cpu",
        seed=0,
        normalize_reward=False,
    )
    g = torch.Generator().manual_seed(0)
    states = torch.randn(6, 2, OBS_DIM, generator=g)
    finals = torch.randn(3, OBS_DIM, generator=g)  # row-major: (1, 0), (1, 1), (5, 0)

    def grid(column0, column1):
        return torch.tensor([column0, column1], dtype=torch.bool).T

    valid = grid([1, 1, 0, 1, 1, 1], [1, 1, 0, 0, 0, 0])
    batch = Rollout(
        states=states,
        actions=torch.zeros(6, 2, dtype=torch.long),
        rewards=torch.arange(12, dtype=torch.float32).reshape(6, 2),
        terminated=grid([0, 1, 0, 0, 0, 1], [0] * 6),
        truncated=grid([0] * 6, [0, 1, 0, 0, 0, 0]),
        valid=valid,
        final_states=finals,
        episode_starts=grid([1, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0]),
        log_probs=torch.full((6, 2), float("nan")),
    )
    with torch.no_grad():
        values = ppo.policy.value(states.reshape(12, OBS_DIM)).reshape(6, 2, 2) * valid[..., None]
        final_values = ppo.policy.value(finals)
    advantages, returns = ppo._advantages(batch, values)
    # scored after the batch joined RND's input statistics, as inside _advantages
    novelty = torch.zeros(6, 2)
    novelty[valid] = ppo.rnd.intrinsic_reward(batch.next_states()[valid], update_stats=False)

    zero = torch.tensor(0.0)
    v = values
    ext_next = torch.stack(
        [
            torch.stack([v[1, 0, 0], zero, zero, v[4, 0, 0], v[5, 0, 0], zero]),
            torch.stack([v[1, 1, 0], final_values[1, 0], zero, zero, zero, zero]),
        ]
    ).T
    ext_adv, ext_ret = compute_gae(batch.rewards, v[..., 0], ext_next, batch.ends, valid, 0.9, 0.7)
    # Non-episodic: after column 0's termination at row 1 the intrinsic return flows on to row 3.
    int_next = torch.stack(
        [
            torch.stack([v[1, 0, 1], v[3, 0, 1], zero, v[4, 0, 1], v[5, 0, 1], final_values[2, 1]]),
            torch.stack([v[1, 1, 1], final_values[1, 1], zero, zero, zero, zero]),
        ]
    ).T
    column_ends = grid([0, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0])
    int_stats = ppo.intrinsic_scaler.return_stats  # scaled by the std of the intrinsic return
    scale = torch.sqrt(int_stats.var + int_stats.eps).float()
    int_adv, int_ret = compute_gae(novelty / scale, v[..., 1], int_next, column_ends, valid, 0.8, 0.7)
    torch.testing.assert_close(returns[..., 0], ext_ret)
    torch.testing.assert_close(returns[..., 1], int_ret)
    torch.testing.assert_close(advantages, 2.0 * ext_adv + 1.0 * int_adv)
    assert int_adv[1, 0] != (novelty[1, 0] / scale + 0.8 * final_values[0, 1] - v[1, 0, 1])


def test_predictor_trains_on_a_fraction_of_every_minibatch():
    ppo = PPO(
        False,
        OBS_DIM,
        2,
        use_RND=True,
        rnd_update_fraction=0.5,
        batch_size=64,
        mini_batch_size=16,
        k_epochs=2,
        device="cpu",
        seed=0,
    )
    sizes = []
    original = ppo.rnd._errors
    ppo.rnd._errors = lambda obs: sizes.append(obs.shape[0]) or original(obs)
    fill_memory(ppo, 64, np.random.default_rng(0))
    stats = ppo.learn()
    # one scoring pass over the batch, then 2 epochs x 4 mini-batches of 8 (half of 16)
    assert sizes == [64] + [8] * 8
    assert stats["rnd_loss"] > 0
