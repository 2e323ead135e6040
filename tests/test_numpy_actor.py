"""Tests for PPO.numpy_actor.NumpyActor: the CPU rollout fast path acts exactly like the torch
policy (same outputs, same samples from the same generator), and stays current as weights change."""

import numpy as np
import pytest
import torch

from PPO.ActorCritic import ActorCritic
from PPO.numpy_actor import NumpyActor
from PPO.PPO import PPO

OBS_DIM = 5
LOW = torch.tensor([-1.0, 0.0, -0.3])
HIGH = torch.tensor([3.0, 10.0, 0.1])

POLICIES = {
    "discrete": dict(is_continuous=False, action_dim=4),
    "multi_discrete": dict(is_continuous=False, action_dim=7, action_nvec=(3, 4)),
    "gaussian": dict(is_continuous=True, action_dim=3),
    "squashed": dict(is_continuous=True, action_dim=3, squash_actions=True),
    "normalized_obs": dict(is_continuous=False, action_dim=2, normalize_obs=True),
    "relu_gaussian": dict(is_continuous=True, action_dim=3, activation="relu"),
    "relu_discrete": dict(is_continuous=False, action_dim=4, activation="relu"),
}


def make_policy(kind: str) -> ActorCritic:
    torch.manual_seed(0)
    options = dict(POLICIES[kind])
    net = ActorCritic(
        options.pop("is_continuous"), OBS_DIM, options.pop("action_dim"), hidden_sizes=(16, 16), **options
    )
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # give the near-zero policy head real outputs
        for p in net.actor[-1].parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
        if net.is_continuous:
            net.log_std.copy_(torch.tensor([-0.5, 0.0, 0.3]))
            net.set_action_bounds(LOW, HIGH)
    if net.obs_normalizer is not None:
        net.obs_normalizer.update(torch.randn(100, OBS_DIM, generator=gen) * 3 + 2)
    return net


def observations(n=64, seed=2) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, OBS_DIM)) * 2).astype(np.float32)


@pytest.mark.parametrize("kind", sorted(POLICIES))
def test_actor_output_equals_the_torch_forward(kind):
    net = make_policy(kind)
    obs = observations()
    expected = net.actor(net.features(torch.from_numpy(obs))).detach().numpy()
    got = NumpyActor(net).actor_output(obs)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(POLICIES))
@pytest.mark.parametrize("deterministic", [False, True])
def test_same_actions_as_torch_from_the_same_generator(kind, deterministic):
    net = make_policy(kind)
    obs = observations(256)
    expected = net.act(torch.from_numpy(obs), torch.Generator().manual_seed(7), deterministic).numpy()
    got = NumpyActor(net).act(obs, torch.Generator().manual_seed(7), deterministic)
    assert got.shape == expected.shape
    if net.is_continuous:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        if net.squash_actions:
            assert (got >= LOW.numpy()).all() and (got <= HIGH.numpy()).all()
    else:
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)


def test_draws_as_many_random_numbers_as_torch():
    """After acting, both generators are in the same state: the next samples agree too."""
    net = make_policy("multi_discrete")
    torch_gen, numpy_gen = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    actor = NumpyActor(net)
    for _ in range(3):
        obs = observations(16)
        np.testing.assert_array_equal(
            actor.act(obs, numpy_gen), net.act(torch.from_numpy(obs), torch_gen).numpy()
        )
    assert torch.equal(torch_gen.get_state(), numpy_gen.get_state())


def test_image_policy_is_refused():
    net = ActorCritic(False, 4 * 84 * 84, 3, observation_shape=(4, 84, 84))
    with pytest.raises(ValueError, match="policy: the NumPy actor is for vector observations"):
        NumpyActor(net)


def make_ppo(**kwargs) -> PPO:
    return PPO(False, OBS_DIM, 3, device="cpu", seed=0, batch_size=64, mini_batch_size=16, lr=0.05, **kwargs)


def torch_actions(ppo: PPO, obs: np.ndarray, generator_state: torch.Tensor) -> np.ndarray:
    generator = torch.Generator().set_state(generator_state)
    return ppo.policy.act(torch.from_numpy(obs), generator).numpy()


def test_ppo_get_action_on_cpu_uses_the_numpy_actor_and_matches_torch():
    ppo = make_ppo()
    assert isinstance(ppo.numpy_actor, NumpyActor)
    obs = observations(128)
    state = ppo.sample_generator.get_state()
    np.testing.assert_array_equal(ppo.get_action(obs), torch_actions(ppo, obs, state))
    ppo.numpy_actor = None  # the torch path continues the same random stream
    state = ppo.sample_generator.get_state()
    np.testing.assert_array_equal(ppo.get_action(obs), torch_actions(ppo, obs, state))


def test_numpy_actor_follows_learning_and_loading(tmp_path):
    """The fused Adam step changes weights without bumping tensor versions; the copies must not
    go stale after learn(), nor after loading other weights."""
    ppo = make_ppo()  # no normaliser: its update in learn() would bump versions anyway
    obs = observations(64)
    before = ppo.numpy_actor.actor_output(obs).copy()
    rng = np.random.default_rng(0)
    states = observations(64, seed=5)
    ppo.memory.add_trajectories(
        states,
        ppo.get_action(states),
        rng.normal(size=64).astype(np.float32) * 5,
        np.arange(64) % 8 == 7,
        np.zeros(64, bool),
        observations(8, seed=6),
    )
    assert ppo.learn() is not None
    torch_out = ppo.policy.actor(ppo.policy.features(torch.from_numpy(obs))).detach().numpy()
    assert not np.allclose(torch_out, before, atol=1e-3)
    np.testing.assert_allclose(ppo.numpy_actor.actor_output(obs), torch_out, rtol=1e-5, atol=1e-6)

    ppo.save_weights(tmp_path / "learned.pth")
    fresh = make_ppo()
    fresh.get_action(obs)  # builds its copies from the untrained weights
    fresh.load_weights(tmp_path / "learned.pth")
    np.testing.assert_allclose(fresh.numpy_actor.actor_output(obs), torch_out, rtol=1e-5, atol=1e-6)


def test_image_ppo_acts_through_torch():
    ppo = PPO(False, 4 * 84 * 84, 3, device="cpu", seed=0, observation_shape=(4, 84, 84))
    assert ppo.numpy_actor is None
    assert ppo.get_action(np.zeros((2, 4, 84, 84), np.uint8)).shape == (2,)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_training_with_the_numpy_actor_equals_training_through_torch(env_id):
    """The whole loop, both ways from the same seeds. NumPy's and torch's matrix products round
    differently in the last bits, so the behaviour log-probs recorded at sampling (and, for
    continuous actions, the actions) differ there, and the weights after several updates agree
    to float32 precision rather than bit for bit."""
    import gymnasium as gym

    from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env

    def train(use_numpy: bool) -> dict:
        env = gym.make(env_id)
        ppo = ppo_for_env(env, seed=3, device="cpu", batch_size=256, mini_batch_size=64, normalize_obs=True)
        if not use_numpy:
            ppo.numpy_actor = None
        runner = AsyncPPO(env, ppo, num_envs=8, num_steps=32, seed=3, progress_bar=False)
        for _ in range(4):
            runner.train_round()
        runner.close()
        assert ppo.stats["num_samples"] >= 200
        return ppo.policy.state_dict()

    with_numpy, with_torch = train(True), train(False)
    for name, tensor in with_torch.items():
        torch.testing.assert_close(with_numpy[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
