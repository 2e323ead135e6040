"""Tests for the learner's implementation details: reward scaling, LR annealing, MultiDiscrete
actions, image observations (Nature CNN), and options saved inside the weights."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from torch.distributions import Categorical

from PPO import PPO
from PPO.ActorCritic import ActorCritic, NatureCNN
from PPO.advantages import compute_gae
from PPO.Memory import Rollout
from PPO.normalization import RewardScaler


# ------------------------------------------------------------------ reward scaling
def reference_scaled_rewards(rollouts, gamma, episodic=True, clip=10.0):
    """gymnasium NormalizeReward's rule, step by step per env copy (column): R = r + gamma * R
    (restarted at episode starts), rewards divided by the std of every R seen so far."""
    carried, seen, out = {}, [], []
    for rewards, valid, starts in rollouts:
        for t in range(rewards.shape[0]):
            for env in range(rewards.shape[1]):
                if valid[t, env]:
                    previous = 0.0 if (starts[t, env] and episodic) else carried.get(env, 0.0)
                    carried[env] = rewards[t, env] + gamma * previous
                    seen.append(carried[env])
        std = np.sqrt(np.var(seen) + 1e-8)
        out.append(np.clip(rewards / std, -clip, clip))
    return out


def random_rollouts(rng, num_rollouts=4, num_envs=3):
    """[T, N] rewards, valid masks (some invalid rows) and episode starts, T varying."""
    rollouts = []
    for _ in range(num_rollouts):
        shape = (int(rng.integers(1, 9)), num_envs)
        rollouts.append(
            (
                rng.normal(1.0, 2.0, size=shape).astype(np.float32),
                rng.random(shape) < 0.8,
                rng.random(shape) < 0.25,
            )
        )
    return rollouts


@pytest.mark.parametrize("episodic", [True, False])
def test_reward_scaler_matches_the_per_step_reference(episodic):
    rng = np.random.default_rng(0)
    rollouts = random_rollouts(rng)
    scaler = RewardScaler(0.9, episodic=episodic)
    expected = reference_scaled_rewards(rollouts, 0.9, episodic)
    for (rewards, valid, starts), reference in zip(rollouts, expected, strict=True):
        scaled = scaler(torch.from_numpy(rewards), torch.from_numpy(valid), torch.from_numpy(starts))
        np.testing.assert_allclose(scaled.numpy()[valid], reference[valid], rtol=1e-5, atol=1e-6)
    assert float(scaler.return_stats.count) == sum(int(v.sum()) for _, v, _ in rollouts)


def test_reward_scaler_clips():
    scaler = RewardScaler(0.0, clip=2.0)  # gamma 0: R = r, so std of the rewards themselves
    rewards = torch.tensor([0.0] * 99 + [1000.0])[:, None]
    scaled = scaler(rewards, torch.ones(100, 1, dtype=torch.bool), torch.ones(100, 1, dtype=torch.bool))
    assert float(scaled.max()) == 2.0 and float(scaled[0]) == 0.0


def test_learn_scales_rewards_before_gae():
    """One column: an episode terminated at step 2, the next truncated at step 4."""
    ppo = PPO(False, 3, 2, normalize_reward=True, gamma=0.9, GAE_lambda=0.8, device="cpu", seed=0)
    rewards = torch.tensor([1.0, 2.0, 3.0, -1.0, 0.5])
    terminated = torch.tensor([0, 0, 1, 0, 0], dtype=torch.bool)
    truncated = torch.tensor([0, 0, 0, 0, 1], dtype=torch.bool)
    batch = Rollout.from_trajectories(
        torch.randn(5, 3),
        torch.zeros(5, dtype=torch.long),
        rewards,
        terminated,
        truncated,
        torch.randn(2, 3),
        env_ids=torch.zeros(5, dtype=torch.long),
    ).to("cpu")
    torch.nn.init.zeros_(ppo.policy.critic[-1].weight)
    torch.nn.init.zeros_(ppo.policy.critic[-1].bias)
    values = torch.zeros(5, 1)
    advantages, _ = ppo._advantages(batch, values)
    returns = np.array([1.0, 2.0 + 0.9, 3.0 + 0.9 * 2.9, -1.0, 0.5 - 0.9])
    scaled = (rewards / np.sqrt(returns.var() + 1e-8))[:, None]
    ends = (terminated | truncated)[:, None]
    reference, _ = compute_gae(scaled, values, torch.zeros(5, 1), ends, torch.ones_like(ends), 0.9, 0.8)
    torch.testing.assert_close(advantages, reference)


# ------------------------------------------------------------------ learning-rate annealing
def fill(ppo, num_steps, rng, obs_shape=None, dtype=np.float32):
    shape = obs_shape or (ppo.observ_dim,)
    if dtype == np.uint8:
        states = rng.integers(0, 256, size=(num_steps, *shape), dtype=np.uint8)
    else:
        states = rng.normal(size=(num_steps, *shape)).astype(dtype)
    actions = ppo.get_action(states)
    truncated = np.zeros(num_steps, bool)
    truncated[7::8] = True
    truncated[-1] = True
    finals = states[truncated]
    ppo.memory.add_trajectories(
        states,
        actions,
        rng.normal(size=num_steps).astype(np.float32),
        np.zeros(num_steps, bool),
        truncated,
        finals,
    )
    return states, actions


def test_anneal_lr_decays_linearly_over_total_steps():
    ppo = PPO(
        False,
        3,
        2,
        lr=1e-3,
        anneal_lr=True,
        total_steps=256,
        batch_size=64,
        mini_batch_size=64,
        k_epochs=1,
        device="cpu",
        seed=0,
    )
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(5):
        fill(ppo, 64, rng)
        rates.append(ppo.learn()["learning_rate"])
    np.testing.assert_allclose(rates, [1e-3, 0.75e-3, 0.5e-3, 0.25e-3, 0.0])
    assert ppo.optimizer.param_groups[0]["lr"] == 0.0


def test_anneal_lr_needs_total_steps():
    ppo = PPO(False, 3, 2, anneal_lr=True, batch_size=8, device="cpu", seed=0)
    fill(ppo, 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="total_steps"):
        ppo.learn()


def test_constant_lr_by_default():
    ppo = PPO(False, 3, 2, lr=2e-3, batch_size=8, device="cpu", seed=0)
    fill(ppo, 8, np.random.default_rng(0))
    assert ppo.learn()["learning_rate"] == 2e-3


# ------------------------------------------------------------------ MultiDiscrete
NVEC = (3, 2, 4)


def test_multidiscrete_log_prob_is_the_sum_of_its_parts():
    torch.manual_seed(0)
    net = ActorCritic(False, 5, sum(NVEC), hidden_sizes=(16,), action_nvec=NVEC)
    with torch.no_grad():
        net.actor[-1].weight.normal_()  # real, distinct logits
    obs = torch.randn(64, 5)
    actions = net.act(obs, torch.Generator().manual_seed(1))
    assert actions.shape == (64, 3) and actions.dtype == torch.int64
    for k, n in enumerate(NVEC):
        assert 0 <= int(actions[:, k].min()) and int(actions[:, k].max()) < n
    log_probs, entropy, _ = net.evaluate(obs, actions)
    logits = net.actor(obs).split(NVEC, dim=-1)
    parts = [Categorical(logits=block) for block in logits]
    expected_log_probs = sum(d.log_prob(actions[:, k]) for k, d in enumerate(parts))
    expected_entropy = sum(d.entropy() for d in parts)
    torch.testing.assert_close(log_probs, expected_log_probs)
    torch.testing.assert_close(entropy, expected_entropy)


def test_multidiscrete_samples_follow_each_categorical():
    torch.manual_seed(0)
    net = ActorCritic(False, 2, sum(NVEC), hidden_sizes=(8,), action_nvec=NVEC)
    with torch.no_grad():
        net.actor[-1].bias.copy_(torch.tensor([0.0, 1.0, 2.0, 0.0, -1.0, 1.0, 0.0, 0.0, 3.0]))
        net.actor[-1].weight.zero_()
    actions = net.act(torch.zeros(20000, 2), torch.Generator().manual_seed(2))
    for k, block in enumerate(net.actor[-1].bias.split(NVEC)):
        frequencies = torch.bincount(actions[:, k], minlength=NVEC[k]).float() / 20000
        torch.testing.assert_close(frequencies, torch.softmax(block, 0), atol=0.015, rtol=0)


def test_ppo_multidiscrete_learns_one_update_and_checks_sizes():
    ppo = PPO(
        False, 4, sum(NVEC), action_nvec=list(NVEC), batch_size=32, mini_batch_size=16, device="cpu", seed=0
    )
    fill(ppo, 32, np.random.default_rng(0))
    stats = ppo.learn()
    assert stats["num_samples"] == 32 and np.isfinite(stats["policy_loss"])
    assert ppo.get_action(np.zeros(4, np.float32)).shape == (3,)
    with pytest.raises(ValueError, match=r"action_nvec: sizes \[3, 2\] add up to 5 logits"):
        PPO(False, 4, 9, action_nvec=[3, 2], device="cpu")
    with pytest.raises(ValueError, match="action_nvec"):
        PPO(False, 4, 9, action_nvec=[3, 0, 6], device="cpu")
    with pytest.raises(ValueError, match="action_nvec"):
        PPO(True, 4, 9, action_nvec=[3, 6], device="cpu")


# ------------------------------------------------------------------ images
@pytest.mark.parametrize("shape", [(4, 84, 84), (84, 84, 3), (3, 64, 48)])
def test_nature_cnn_reads_uint8_frames_in_either_layout(shape):
    torch.manual_seed(0)
    cnn = NatureCNN(shape)
    frames = torch.randint(0, 256, (5, *shape), dtype=torch.uint8)
    features = cnn(frames)
    assert features.shape == (5, 512) and features.dtype == torch.float32
    # scaled to [0, 1] inside: the same frames as floats in [0, 1] give the same features
    unscaled = NatureCNN(shape, input_scale=1.0)
    unscaled.load_state_dict(cnn.state_dict())
    torch.testing.assert_close(unscaled(frames.float() / 255), features)
    channels = shape[2] if shape[-1] < shape[0] else shape[0]
    assert cnn.convs[0].in_channels == channels


def test_nature_cnn_refuses_tiny_frames():
    with pytest.raises(ValueError, match=r"observation_shape.*36x36.*\(3, 20, 20\)"):
        NatureCNN((3, 20, 20))


def test_ppo_on_uint8_frames_stores_uint8_and_trains():
    shape = (4, 84, 84)
    ppo = PPO(
        False,
        int(np.prod(shape)),
        4,
        observation_shape=shape,
        batch_size=16,
        mini_batch_size=8,
        k_epochs=1,
        device="cpu",
        seed=0,
    )
    assert isinstance(ppo.policy.torso, NatureCNN)
    rng = np.random.default_rng(0)
    states, _ = fill(ppo, 16, rng, obs_shape=shape, dtype=np.uint8)
    assert ppo.memory.state()[0]["states"].dtype == torch.uint8
    before = [p.clone() for p in ppo.policy.torso.parameters()]
    stats = ppo.learn()
    assert np.isfinite(stats["value_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, ppo.policy.torso.parameters(), strict=True))
    single = ppo.get_action(states[0])  # one unbatched frame stack
    assert single.shape == ()
    with pytest.raises(ValueError, match=r"state: expected shape \[batch, 4, 84, 84\]"):
        ppo.get_action(np.zeros((2, 4, 84, 83), np.uint8))


def test_image_options_are_checked():
    with pytest.raises(ValueError, match=r"observation_shape: \(4, 84, 84\) holds 28224 values"):
        PPO(False, 100, 4, observation_shape=(4, 84, 84), device="cpu")
    with pytest.raises(ValueError, match="normalize_obs"):
        PPO(False, 4 * 84 * 84, 4, observation_shape=(4, 84, 84), normalize_obs=True, device="cpu")


# ------------------------------------------------------------------ options inside the weights
def trained_ppo(tmp_path, **options):
    ppo = PPO(
        True,
        3,
        2,
        normalize_obs=True,
        normalize_reward=True,
        hidden_sizes=(32,),
        action_low=[-2.0, 0.0],
        action_high=[2.0, 1.0],
        batch_size=64,
        mini_batch_size=32,
        device="cpu",
        seed=0,
        **options,
    )
    rng = np.random.default_rng(0)
    for _ in range(3):
        fill(ppo, 64, rng)
        ppo.learn()
    ppo.save_weights(tmp_path)
    return ppo


def test_saved_file_holds_options_and_statistics(tmp_path):
    ppo = trained_ppo(tmp_path)
    state = torch.load(tmp_path / "Policy_weights.pth", weights_only=True)
    config = json.loads(bytes(state["config.json"].tolist()).decode())
    assert config["normalize_obs"] is True and config["hidden_sizes"] == [32]
    assert float(state["obs_normalizer.count"]) == 192
    assert float(state["reward_scaler.return_stats.count"]) == 192
    torch.testing.assert_close(state["reward_scaler.return_stats.var"], ppo.reward_scaler.return_stats.var)


def test_ppo_load_rebuilds_from_the_saved_options(tmp_path):
    ppo = trained_ppo(tmp_path)
    loaded = PPO.load(tmp_path, device="cpu")
    assert loaded.policy.obs_normalizer is not None and loaded.reward_scaler is not None
    states = torch.randn(16, 3) * 3
    torch.testing.assert_close(
        loaded.get_action(states, deterministic=True), ppo.get_action(states, deterministic=True)
    )
    torch.testing.assert_close(loaded.policy.value(states), ppo.policy.value(states))
    torch.testing.assert_close(loaded.reward_scaler.return_stats.var, ppo.reward_scaler.return_stats.var)


def test_loading_into_other_options_names_every_difference(tmp_path):
    trained_ppo(tmp_path)
    other = PPO(True, 3, 2, hidden_sizes=(32,), device="cpu", seed=0, normalize_reward=False)
    with pytest.raises(
        ValueError,
        match=r"normalize_obs=True, but this PPO has normalize_obs=False"
        r".*normalize_reward=True, but this PPO has",
    ):
        other.load_weights(tmp_path)


@pytest.mark.slow
def test_a_new_process_plays_exactly_as_the_trained_model(tmp_path):
    ppo = trained_ppo(tmp_path)
    states = (np.random.default_rng(5).normal(size=(8, 3)) * 4).astype(np.float32)
    np.save(tmp_path / "states.npy", states)
    script = (
        "import sys, numpy as np, torch\n"
        "from PPO import PPO\n"
        "ppo = PPO.load(sys.argv[1], device='cpu')\n"
        "states = np.load(sys.argv[1] + '/states.npy')\n"
        "np.save(sys.argv[1] + '/actions.npy', ppo.get_action(states, deterministic=True))\n"
        "np.save(sys.argv[1] + '/values.npy', ppo.policy.value(torch.from_numpy(states)).detach().numpy())\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, cwd=REPO_ROOT, timeout=120)
    np.testing.assert_array_equal(
        np.load(tmp_path / "actions.npy"), ppo.get_action(states, deterministic=True)
    )
    np.testing.assert_array_equal(
        np.load(tmp_path / "values.npy"), ppo.policy.value(torch.from_numpy(states)).detach().numpy()
    )


# ------------------------------------------------------------------ initialisation and Adam
def test_orthogonal_init_can_be_turned_off():
    torch.manual_seed(0)
    default = PPO(False, 6, 3, hidden_sizes=(32,), device="cpu", seed=0, orthogonal_init=False)
    head = default.policy.actor[-1].weight
    assert head.abs().max() > 0.05  # not the 0.01-gain orthogonal policy head
    assert torch.count_nonzero(default.policy.actor[0].bias) > 0  # PyTorch's default biases
    ortho = PPO(False, 6, 3, hidden_sizes=(32,), device="cpu", seed=0)
    assert ortho.policy.actor[-1].weight.abs().max() <= 0.01 + 1e-7


def test_adam_eps_reaches_the_optimizer():
    assert PPO(False, 3, 2, device="cpu").optimizer.param_groups[0]["eps"] == 1e-5
    assert PPO(False, 3, 2, device="cpu", adam_eps=1e-8).optimizer.param_groups[0]["eps"] == 1e-8
    with pytest.raises(ValueError, match="adam_eps"):
        PPO(False, 3, 2, device="cpu", adam_eps=0.0)


@pytest.mark.parametrize("max_norm", [0.05, 0.5, 1e6])
def test_clip_grad_norm_equals_torch(max_norm):
    """The learner's lean clipping scales the gradients exactly as nn.utils.clip_grad_norm_,
    both when it clips and when the norm is already below max_norm; parameters without a
    gradient are skipped."""
    from PPO.losses import clip_grad_norm

    torch.manual_seed(0)
    net = ActorCritic(True, 5, 2)
    net.value(torch.randn(64, 5)).sum().backward()
    params = list(net.parameters())
    assert any(p.grad is None for p in params)  # the actor's head had no part in the value
    reference = [None if p.grad is None else p.grad.clone() for p in params]
    reference_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, g in zip(reference_params, reference, strict=True):
        p.grad = g
    expected_norm = torch.nn.utils.clip_grad_norm_(reference_params, max_norm)
    norm = clip_grad_norm(params, max_norm)
    torch.testing.assert_close(norm, expected_norm)
    for p, q in zip(params, reference_params, strict=True):
        if q.grad is None:
            assert p.grad is None
        else:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-9)
    clipped = torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None]))
    assert clipped <= max_norm * (1 + 1e-5) or norm < max_norm


def test_activation_and_separate_critic_sizes():
    ppo = PPO(
        True,
        3,
        2,
        device="cpu",
        seed=0,
        activation="relu",
        hidden_sizes=(32,),
        critic_hidden_sizes=(128, 128),
    )
    assert [type(m).__name__ for m in ppo.policy.actor] == ["Linear", "ReLU", "Linear"]
    critic_linears = [m for m in ppo.policy.critic if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in critic_linears] == [128, 128, 1]
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'tanh'\], got 'gelu'"):
        PPO(True, 3, 2, device="cpu", activation="gelu")


def test_loading_into_another_activation_names_it(tmp_path):
    PPO(False, 3, 2, device="cpu", seed=0, activation="relu").save_weights(tmp_path)
    with pytest.raises(ValueError, match="activation='relu', but this PPO has activation='tanh'"):
        PPO(False, 3, 2, device="cpu", seed=0).load_weights(tmp_path)
    assert PPO.load(tmp_path, device="cpu").policy.activation == "relu"


def test_files_saved_before_the_activation_option_still_load(tmp_path):
    """A weights file whose options predate `activation`/`critic_hidden_sizes` was tanh, shared
    sizes: it loads into such a PPO."""
    import json

    ppo = PPO(False, 3, 2, device="cpu", seed=0)
    ppo.save_weights(tmp_path)
    file = tmp_path / "Policy_weights.pth"
    state = torch.load(file, weights_only=True)
    config = json.loads(bytes(state["config.json"].tolist()).decode())
    del config["activation"], config["critic_hidden_sizes"]
    state["config.json"] = torch.tensor(list(json.dumps(config).encode()), dtype=torch.uint8)
    torch.save(state, file)
    PPO(False, 3, 2, device="cpu").load_weights(tmp_path)
    assert PPO.load(tmp_path, device="cpu").policy.activation == "tanh"
