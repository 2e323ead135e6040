"""Tests for PPO.ActorCritic.ActorCritic: initialisation, log-probs, entropies, acting."""

import math

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

from PPO.ActorCritic import ActorCritic

OBS_DIM = 6
LOW = torch.tensor([-1.0, 0.0])
HIGH = torch.tensor([3.0, 10.0])
CENTER = (HIGH + LOW) / 2  # [1, 5]
HALF = (HIGH - LOW) / 2  # [2, 5]


def make(is_continuous, action_dim=2, squash=False, seed=0, log_std_init=0.0, bounds=True):
    torch.manual_seed(seed)
    net = ActorCritic(
        is_continuous,
        OBS_DIM,
        action_dim,
        hidden_sizes=(32, 32),
        squash_actions=squash,
        log_std_init=log_std_init,
    )
    if is_continuous and bounds:
        net.set_action_bounds(LOW, HIGH)
    return net


def randomize_actor(net, scale=0.5, seed=1):
    """A fresh policy head outputs ~0; give it real means so the tests see non-trivial values."""
    gen = torch.Generator().manual_seed(seed)
    head = net.actor[-1]
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * scale)
        head.bias.copy_(torch.randn(head.bias.shape, generator=gen) * scale)


def linears(seq):
    return [m for m in seq if isinstance(m, torch.nn.Linear)]


# ------------------------------------------------------------------ initialisation
@pytest.mark.parametrize("is_continuous", [False, True])
def test_orthogonal_init(is_continuous):
    net = make(is_continuous, action_dim=3, bounds=False)
    actor, critic = linears(net.actor), linears(net.critic)
    assert len(actor) == 3 and len(critic) == 3
    for layer in actor + critic:
        assert torch.count_nonzero(layer.bias) == 0
    # hidden layers: orthogonal with gain sqrt(2)
    first = actor[0].weight  # [32, 6]: columns orthogonal, each of norm sqrt(2)
    torch.testing.assert_close(first.T @ first, 2 * torch.eye(OBS_DIM), atol=1e-5, rtol=0)
    second = actor[1].weight  # [32, 32]
    torch.testing.assert_close(second @ second.T, 2 * torch.eye(32), atol=1e-5, rtol=0)
    # policy head: gain 0.01, rows orthogonal with norm 0.01
    head = actor[-1].weight  # [3, 32]
    torch.testing.assert_close(head @ head.T, 1e-4 * torch.eye(3), atol=1e-8, rtol=0)
    assert head.abs().max() <= 0.01 + 1e-7
    # value head: gain 1
    vhead = critic[-1].weight  # [1, 32]
    assert abs(float(vhead.detach().norm()) - 1.0) < 1e-5
    if is_continuous:
        torch.testing.assert_close(net.log_std.detach(), torch.zeros(3))
        torch.testing.assert_close(net.action_center, torch.zeros(3))
        torch.testing.assert_close(net.action_half_range, torch.ones(3))
    else:
        assert not hasattr(net, "log_std")


def test_fresh_policy_is_near_uniform_and_log_std_init():
    net = make(False, action_dim=4)
    probs = torch.softmax(net.actor(torch.randn(50, OBS_DIM)), -1)
    assert torch.all((probs - 0.25).abs() < 0.02)
    cont = ActorCritic(True, OBS_DIM, 2, log_std_init=-0.7)
    torch.testing.assert_close(cont.log_std.detach(), torch.full((2,), -0.7))


def test_set_action_bounds_buffers_and_state_dict():
    net = make(True)
    torch.testing.assert_close(net.action_center, CENTER)
    torch.testing.assert_close(net.action_half_range, HALF)
    state = net.state_dict()
    assert torch.equal(state["action_low"], CENTER - HALF)
    assert torch.equal(state["action_high"], CENTER + HALF)


# ------------------------------------------------------------------ discrete
def test_discrete_evaluate_matches_categorical():
    net = make(False, action_dim=5)
    randomize_actor(net, scale=1.0)
    obs = torch.randn(64, OBS_DIM)
    actions = torch.randint(0, 5, (64,))
    log_probs, entropy, values = net.evaluate(obs, actions)
    dist = Categorical(logits=net.actor(obs))
    torch.testing.assert_close(log_probs, dist.log_prob(actions), atol=1e-6, rtol=0)
    torch.testing.assert_close(entropy, dist.entropy(), atol=1e-6, rtol=0)
    torch.testing.assert_close(values, net.critic(obs).squeeze(-1))
    assert values.shape == (64,)
    torch.testing.assert_close(net.value(obs), values)
    # actions may arrive as float (as stored in a float tensor) or with a trailing dim
    lp_float, _, _ = net.evaluate(obs, actions.float().unsqueeze(-1))
    torch.testing.assert_close(lp_float, log_probs)


def test_discrete_act_deterministic_is_argmax_and_sampling_follows_probs():
    net = make(False, action_dim=3)
    with torch.no_grad():
        net.actor[-1].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    obs = torch.zeros(1, OBS_DIM).expand(20000, OBS_DIM)
    det = net.act(obs[:5], deterministic=True)
    assert det.tolist() == [2] * 5
    gen = torch.Generator().manual_seed(0)
    samples = net.act(obs, generator=gen)
    freq = torch.bincount(samples, minlength=3).float() / len(samples)
    probs = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


# ------------------------------------------------------------------ continuous
def test_continuous_log_probs_equal_normal_in_env_units():
    net = make(True, squash=False)
    randomize_actor(net)
    with torch.no_grad():
        net.log_std.copy_(torch.tensor([-0.3, 0.4]))
    obs = torch.randn(128, OBS_DIM)
    actions = net.act(obs, generator=torch.Generator().manual_seed(3))
    log_probs, entropy, _ = net.evaluate(obs, actions)

    mu = net.actor(obs)
    std = net.log_std.exp()
    # action = center + half * N(mu, std)  <=>  action ~ N(center + half*mu, half*std)
    ref = Normal(CENTER + HALF * mu, HALF * std)
    torch.testing.assert_close(log_probs, ref.log_prob(actions).sum(-1), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(entropy, ref.entropy().sum(-1), atol=1e-5, rtol=1e-6)
    assert log_probs.requires_grad  # it is a training loss term


def test_continuous_act_deterministic_is_the_mean_and_samples_have_the_right_moments():
    net = make(True, squash=False)
    randomize_actor(net)
    obs = torch.randn(4, OBS_DIM)
    mode = net.act(obs, deterministic=True)
    torch.testing.assert_close(mode, CENTER + HALF * net.actor(obs).detach())
    one = torch.randn(1, OBS_DIM).expand(20000, OBS_DIM)
    samples = net.act(one, generator=torch.Generator().manual_seed(0))
    mean = CENTER + HALF * net.actor(one[:1]).detach()[0]
    torch.testing.assert_close(samples.mean(0), mean, atol=0.1, rtol=0)
    torch.testing.assert_close(samples.std(0), HALF * net.log_std.detach().exp(), atol=0.1, rtol=0)


def squashed_reference(net, obs):
    mu = net.actor(obs)
    std = net._log_std().exp().expand_as(mu)
    return Independent(
        TransformedDistribution(Normal(mu, std), [TanhTransform(), AffineTransform(CENTER, HALF)]), 1
    )


def test_squashed_log_probs_equal_tanh_corrected_density():
    net = make(True, squash=True)
    randomize_actor(net)
    with torch.no_grad():
        net.log_std.copy_(torch.tensor([-0.5, 0.2]))
    obs = torch.randn(256, OBS_DIM)
    actions = net.act(obs, generator=torch.Generator().manual_seed(5))
    unit = (actions - CENTER) / HALF
    ok = (unit.abs() < 0.99).all(-1)  # not saturated
    assert ok.sum() > 150
    log_probs, entropy, _ = net.evaluate(obs, actions)
    ref = squashed_reference(net, obs).log_prob(actions)
    torch.testing.assert_close(log_probs[ok], ref[ok], atol=1e-4, rtol=1e-5)
    assert torch.isfinite(log_probs).all()
    # entropy is that of the Gaussian before squashing, in env units
    gauss = Normal(torch.zeros(2), HALF * net.log_std.detach().exp()).entropy().sum()
    torch.testing.assert_close(entropy, gauss.expand(256), atol=1e-5, rtol=0)


def test_squashed_log_probs_hand_checked_single_point():
    # one dimension, bounds [0, 10]: center 5, half 5; mu = 0 (fresh head ~0 is replaced), std = 1
    net = ActorCritic(True, 1, 1, hidden_sizes=(4,), squash_actions=True)
    net.set_action_bounds(torch.tensor([0.0]), torch.tensor([10.0]))
    with torch.no_grad():
        net.actor[-1].weight.zero_()
        net.actor[-1].bias.zero_()
    a = 5 + 5 * math.tanh(0.5)  # u = 0.5
    # log N(0.5; 0, 1) - log(1 - tanh(0.5)^2) - log 5
    expected = -0.5 * 0.25 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(0.5) ** 2) - math.log(5)
    lp, _, _ = net.evaluate(torch.zeros(1, 1), torch.tensor([[a]]))
    assert abs(float(lp.detach()) - expected) < 1e-5


def test_squashed_act_stays_inside_asymmetric_bounds_and_mode_is_tanh_of_mean():
    net = make(True, squash=True, log_std_init=2.0)  # std e^2: most samples far in the tails
    randomize_actor(net, scale=2.0)
    obs = torch.randn(5000, OBS_DIM)
    actions = net.act(obs, generator=torch.Generator().manual_seed(0))
    assert torch.all(actions >= LOW) and torch.all(actions <= HIGH)
    # the tails are really exercised: some samples sit on the bounds
    assert ((actions == LOW) | (actions == HIGH)).any()
    mode = net.act(obs[:10], deterministic=True)
    torch.testing.assert_close(mode, CENTER + HALF * torch.tanh(net.actor(obs[:10]).detach()))
    assert torch.all(mode >= LOW) and torch.all(mode <= HIGH)


def test_squashed_act_inside_inexact_bounds():
    torch.manual_seed(0)
    net = ActorCritic(True, 4, 2, squash_actions=True, log_std_init=2.0)
    low, high = torch.tensor([-0.3, 0.1]), torch.tensor([0.7, 0.3])
    net.set_action_bounds(low, high)
    actions = net.act(
        torch.randn(20000, 4, generator=torch.Generator().manual_seed(0)),
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.all(actions >= low) and torch.all(actions <= high)


def test_log_std_is_clamped():
    net = make(True, squash=False)
    with torch.no_grad():
        net.log_std.fill_(50.0)
    obs = torch.randn(8, OBS_DIM)
    actions = net.act(obs, generator=torch.Generator().manual_seed(0))
    lp, ent, _ = net.evaluate(obs, actions)
    ref = Normal(CENTER + HALF * net.actor(obs), HALF * math.exp(2.0))
    torch.testing.assert_close(lp, ref.log_prob(actions).sum(-1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ent, ref.entropy().sum(-1), atol=1e-5, rtol=0)
