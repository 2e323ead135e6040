"""One `learn()` call against a plain PPO update written here with torch.distributions and
torch.optim.Adam: the gradient of the whole loss (clipped surrogate, value loss with its
coefficient, entropy bonus with its sign and coefficient) on a tiny batch with a termination
and a truncation, the parameters after two epochs (the second with ratios outside the clip
range), the statistics learn() reports, and target_kl's early stop."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal

from PPO import PPO

OBS_DIM, STEPS = 3, 8
GAMMA, LAMBDA = 0.9, 0.8
TERMINATED_AT, TRUNCATED_AT = 3, 7  # the episode ends by termination, the next by truncation


def make_ppo(kind: str, **options) -> PPO:
    settings = dict(
        lr=0.05,
        k_epochs=1,
        batch_size=STEPS,
        mini_batch_size=STEPS,
        gamma=GAMMA,
        GAE_lambda=LAMBDA,
        entropy_coef=0.05,
        value_coef=0.7,
        max_grad_norm=1e6,
        normalize_reward=False,
        hidden_sizes=(4,),
        device="cpu",
        seed=3,
    )
    settings.update(options)
    return PPO(kind == "continuous", OBS_DIM, 2, **settings)


def fill(ppo: PPO) -> dict[str, torch.Tensor]:
    """Stores one env's STEPS steps (an episode terminated at TERMINATED_AT, then one truncated
    at TRUNCATED_AT) and returns them."""
    g = torch.Generator().manual_seed(7)
    data = dict(
        states=torch.randn(STEPS, OBS_DIM, generator=g),
        rewards=torch.randn(STEPS, generator=g),
        terminated=torch.zeros(STEPS, dtype=torch.bool),
        truncated=torch.zeros(STEPS, dtype=torch.bool),
        final_states=torch.randn(2, OBS_DIM, generator=g),
    )
    data["actions"] = (
        torch.randn(STEPS, 2, generator=g)
        if ppo.is_continuous
        else torch.randint(0, 2, (STEPS,), generator=g)
    )
    data["terminated"][TERMINATED_AT] = True
    data["truncated"][TRUNCATED_AT] = True
    ppo.memory.add_trajectories(**data)
    return data


def log_prob_entropy_value(policy, kind, states, actions):
    """The policy's log-probs, entropies and values by torch.distributions (bounds +-1 for the
    continuous policy: env units are the Gaussian's own)."""
    features = policy.features(states)  # the observation normaliser's statistics applied, if on
    out = policy.actor(features)
    values = policy.critic(features).squeeze(-1)
    if kind == "discrete":
        dist = Categorical(logits=out)
        return dist.log_prob(actions), dist.entropy(), values
    dist = Normal(out, policy.log_std.exp())
    return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1), values


def reference_advantages(policy, data) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE by the textbook loop: V of the next state, 0 after a termination, V(final state)
    after a truncation; the running sum restarts at every episode end."""
    with torch.no_grad():
        values = policy.critic(policy.features(data["states"])).squeeze(-1)
        finals = policy.critic(policy.features(data["final_states"])).squeeze(-1)
    advantages = torch.zeros(STEPS)
    running = 0.0
    for t in reversed(range(STEPS)):
        if t == TERMINATED_AT:
            next_value, running = 0.0, 0.0
        elif t == TRUNCATED_AT:
            next_value, running = finals[1], 0.0
        else:
            next_value = values[t + 1]
        delta = data["rewards"][t] + GAMMA * next_value - values[t]
        running = delta + GAMMA * LAMBDA * running
        advantages[t] = running
    return advantages, advantages + values


def reference_loss(policy, kind, data, old_log_probs, old_values, advantages, returns, ppo, weights=1.0):
    log_probs, entropy, values = log_prob_entropy_value(policy, kind, data["states"], data["actions"])
    ratio = torch.exp(log_probs - old_log_probs)
    if ppo.normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    clip = ppo.policy_clip
    policy_loss = -torch.mean(
        weights * torch.min(ratio * advantages, torch.clamp(ratio, 1 - clip, 1 + clip) * advantages)
    )
    value_error = (values - returns) ** 2
    if ppo.value_clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -ppo.value_clip, ppo.value_clip)
        value_error = torch.max(value_error, (clipped - returns) ** 2)
    value_loss = 0.5 * value_error.mean()
    loss = policy_loss + ppo.value_coef * value_loss - ppo.entropy_coef * entropy.mean()
    return loss, dict(policy_loss=policy_loss, value_loss=value_loss, entropy=entropy.mean(), ratio=ratio)


def reference_update(ppo: PPO, kind: str, data, epochs: int):
    """Runs `epochs` plain PPO epochs (one mini-batch each) on a copy of `ppo`'s policy; returns
    the copy, the last epoch's gradients and loss terms, and the advantages and returns."""
    policy = copy.deepcopy(ppo.policy)
    with torch.no_grad():
        old_log_probs, _, old_values = log_prob_entropy_value(policy, kind, data["states"], data["actions"])
    advantages, returns = reference_advantages(policy, data)
    optimizer = torch.optim.Adam(policy.parameters(), lr=ppo.lr, eps=ppo.optimizer.defaults["eps"])
    for _ in range(epochs):
        loss, terms = reference_loss(policy, kind, data, old_log_probs, old_values, advantages, returns, ppo)
        optimizer.zero_grad()
        loss.backward()
        gradients = {name: p.grad.clone() for name, p in policy.named_parameters()}
        optimizer.step()
    return policy, gradients, terms, old_values, returns


def gradients_of(ppo: PPO) -> dict[str, torch.Tensor]:
    """The gradients learn()'s last optimiser step used (left on the parameters)."""
    return {name: p.grad for name, p in ppo.policy.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
@pytest.mark.parametrize("normalize_advantages", [True, False])
def test_the_gradient_of_one_update_is_the_reference_gradient(kind, normalize_advantages):
    ppo = make_ppo(kind, normalize_advantages=normalize_advantages)
    data = fill(ppo)
    _, expected, terms, old_values, returns = reference_update(ppo, kind, data, epochs=1)
    stats = ppo.learn()
    got = gradients_of(ppo)
    assert set(got) == set(expected)
    for name, gradient in expected.items():
        torch.testing.assert_close(got[name], gradient, rtol=1e-4, atol=1e-6, msg=name)
    for name in ("policy_loss", "value_loss", "entropy"):
        assert stats[name] == pytest.approx(terms[name].item(), rel=1e-5, abs=1e-7), name
    explained = 1 - torch.var(returns - old_values) / torch.var(returns)
    assert stats["explained_variance"] == pytest.approx(explained.item(), rel=1e-5)


LAG = torch.tensor([-1.0, 0.5, 0.0, -0.2, 1.0, -0.7, 0.3, 0.1])  # log pi_behaviour - log pi_learner


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_max_lag_weight_clips_around_the_learner_and_weights_each_sample(kind):
    """Decoupled PPO for a lagging behaviour policy: the ratio is pi / pi_learner (the policy at
    the update's start), each sample weighted by min(pi_learner / pi_behaviour, max_lag_weight)
    (here 1.5: the samples with a lag below log(1/1.5) are truncated)."""
    ppo = make_ppo(kind, max_lag_weight=1.5)
    with torch.no_grad():
        data = fill(ppo)
        learner, _, old_values = log_prob_entropy_value(ppo.policy, kind, data["states"], data["actions"])
    ppo.memory.take()
    ppo.memory.add_trajectories(**data, log_probs=learner + LAG)
    advantages, returns = reference_advantages(ppo.policy, data)
    weights = torch.exp(-LAG).clamp(max=1.5)
    assert (weights == 1.5).sum() == 2 and (weights < 1).sum() == 4
    policy = copy.deepcopy(ppo.policy)
    loss, terms = reference_loss(policy, kind, data, learner, old_values, advantages, returns, ppo, weights)
    loss.backward()
    stats = ppo.learn()
    for name, gradient in gradients_of(ppo).items():
        torch.testing.assert_close(
            gradient, dict(policy.named_parameters())[name].grad, rtol=1e-4, atol=1e-6, msg=name
        )
    assert stats["policy_loss"] == pytest.approx(terms["policy_loss"].item(), rel=1e-5)
    assert stats["approx_kl"] == 0.0  # measured against the learner, where the ratio starts at 1


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_without_lag_max_lag_weight_changes_nothing(kind):
    """Behaviour log-probs equal to the learner's (a synchronous round): the same update as
    standard PPO; with a lag, standard PPO's update differs (its ratio is against the behaviour)."""
    updates = {}
    for name, lag, option in [("plain", 0.0, None), ("decoupled", 0.0, 1.5), ("lagged", LAG, None)]:
        ppo = make_ppo(kind, max_lag_weight=option)
        with torch.no_grad():
            data = fill(ppo)
            learner, _, _ = log_prob_entropy_value(ppo.policy, kind, data["states"], data["actions"])
        ppo.memory.take()
        ppo.memory.add_trajectories(**data, log_probs=learner + lag)
        ppo.learn()
        updates[name] = ppo.policy.state_dict()
    for name, tensor in updates["plain"].items():
        torch.testing.assert_close(updates["decoupled"][name], tensor, rtol=1e-6, atol=1e-7, msg=name)
    assert any(
        not torch.allclose(updates["lagged"][name], tensor) for name, tensor in updates["plain"].items()
    )


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_two_epochs_with_clipping_end_at_the_reference_parameters(kind):
    """The second epoch's ratios leave the (small) clip ranges, so its gradient depends on every
    min, max and clamp of the objective."""
    ppo = make_ppo(kind, k_epochs=2, policy_clip=0.05, value_clip=0.01, lr=0.02)
    data = fill(ppo)
    policy, expected, terms, *_ = reference_update(ppo, kind, data, epochs=2)
    outside = (terms["ratio"] - 1).abs() > ppo.policy_clip
    assert 0 < int(outside.sum()) < STEPS, "the test needs clipped and unclipped ratios"
    ppo.learn()
    got = gradients_of(ppo)
    for name, gradient in expected.items():
        torch.testing.assert_close(got[name], gradient, rtol=1e-4, atol=1e-6, msg=name)
    for (name, mine), theirs in zip(ppo.policy.named_parameters(), policy.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6, msg=name)


def test_with_observation_normalisation_the_ratio_is_against_the_policy_that_acted():
    """The statistics in force when the actions were sampled (fitted on earlier data) are those
    of the first gradient step; the batch joins them after the update, for the next rollout."""
    ppo = make_ppo("continuous", normalize_obs=True)
    ppo.policy.obs_normalizer.update(torch.randn(50, OBS_DIM) * 3 + 2)
    acting = copy.deepcopy(ppo.policy.obs_normalizer.state_dict())
    data = fill(ppo)
    _, expected, *_ = reference_update(ppo, "continuous", data, epochs=1)  # with `acting`
    ppo.learn()
    for name, gradient in expected.items():
        torch.testing.assert_close(gradients_of(ppo)[name], gradient, rtol=1e-4, atol=1e-6, msg=name)
    after = ppo.policy.obs_normalizer
    assert int(after.count) == int(acting["count"]) + STEPS
    assert not torch.equal(after.mean, acting["mean"])


def test_the_gradient_is_scaled_to_max_grad_norm():
    ppo = make_ppo("discrete", max_grad_norm=0.01)
    data = fill(ppo)
    _, expected, *_ = reference_update(ppo, "discrete", data, epochs=1)
    norm = torch.sqrt(sum(gradient.square().sum() for gradient in expected.values()))
    assert norm > 0.1, "the test needs a gradient well above max_grad_norm"
    ppo.learn()
    got = gradients_of(ppo)
    for name, gradient in expected.items():
        torch.testing.assert_close(got[name], gradient * 0.01 / norm, rtol=1e-4, atol=1e-7, msg=name)


def test_the_entropy_bonus_raises_the_entropy_by_its_coefficient():
    """With the other terms' gradients equal, the entropy coefficient alone moves the actor's
    output-layer gradient by -coef * d(mean entropy)."""
    with_bonus, without = make_ppo("discrete", entropy_coef=0.5), make_ppo("discrete", entropy_coef=0.0)
    data = fill(with_bonus)
    fill(without)
    with torch.enable_grad():
        probe = copy.deepcopy(with_bonus.policy)
        _, entropy, _ = log_prob_entropy_value(probe, "discrete", data["states"], data["actions"])
        entropy.mean().backward()
    with_bonus.learn(), without.learn()
    for name, p in probe.named_parameters():
        if name.startswith("actor"):
            difference = gradients_of(with_bonus)[name] - gradients_of(without)[name]
            torch.testing.assert_close(difference, -0.5 * p.grad, rtol=1e-4, atol=1e-6, msg=name)


def epoch_one_kl() -> float:
    ppo = make_ppo("discrete", k_epochs=1, batch_size=64, mini_batch_size=16, lr=0.05)
    fill_many(ppo)
    return ppo.learn()["approx_kl"]


def fill_many(ppo: PPO) -> None:
    for _ in range(64 // STEPS):
        fill(ppo)


@pytest.mark.parametrize("factor, epochs", [(0.99, 1), (1.01, 2)])
def test_target_kl_compares_the_epochs_mean_kl(factor, epochs):
    """target_kl just under the first epoch's mean KL (over its 4 mini-batches) stops after
    that epoch; just over it lets the next one run."""
    kl = epoch_one_kl()
    assert kl > 0
    ppo = make_ppo("discrete", k_epochs=3, batch_size=64, mini_batch_size=16, lr=0.05, target_kl=factor * kl)
    fill_many(ppo)
    stats = ppo.learn()
    assert stats["epochs"] >= epochs if factor > 1 else stats["epochs"] == epochs
    assert stats["gradient_steps"] == 4 * stats["epochs"]


@pytest.mark.parametrize(
    "column, value, message",
    [
        (
            "actions",
            torch.zeros(STEPS - 1, dtype=torch.long),
            r"actions: expected 8 rows like states, got shape \(7,\)",
        ),
        ("rewards", torch.zeros(STEPS + 1), r"rewards: expected 8 rows like states, got shape \(9,\)"),
        ("final_states", torch.zeros(1, OBS_DIM), r"got 2 closing steps and 1 final states"),
        (
            "truncated",
            torch.zeros(STEPS, dtype=torch.bool),
            r"must each close with a terminated or truncated step",
        ),
    ],
)
def test_memory_add_names_what_does_not_fit(column, value, message):
    ppo = make_ppo("discrete")
    g = torch.Generator().manual_seed(0)
    data = dict(
        states=torch.randn(STEPS, OBS_DIM, generator=g),
        actions=torch.zeros(STEPS, dtype=torch.long),
        rewards=torch.zeros(STEPS),
        terminated=torch.zeros(STEPS, dtype=torch.bool),
        truncated=torch.zeros(STEPS, dtype=torch.bool),
        final_states=torch.zeros(2, OBS_DIM),
    )
    data["terminated"][3] = True
    data["truncated"][-1] = True
    data[column] = value
    with pytest.raises(ValueError, match=message):
        ppo.memory.add_trajectories(**data)
    assert len(ppo.memory) == 0
    np.testing.assert_equal(ppo.learn(), None)


def test_with_observation_normalisation_the_first_ratio_is_exactly_one():
    """With fitted statistics, one epoch of one mini-batch: its ratios are exactly 1 (no KL,
    nothing clipped). Which statistics the policy that acted used is the test above."""
    ppo = make_ppo("discrete", normalize_obs=True, policy_clip=1e-6)
    ppo.policy.obs_normalizer.update(torch.randn(50, OBS_DIM) * 2 + 1)
    fill(ppo)
    stats = ppo.learn()
    assert stats["approx_kl"] == 0.0 and stats["clip_fraction"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,mode", [("discrete", "default"), ("continuous", "default"), ("continuous", "reduce-overhead")]
)
def test_the_compiled_update_computes_what_the_plain_one_does(kind, mode):
    """compile_update=True: the same weights and statistics after two learn() calls (the second
    on a batch of another size, so the compiled loss meets a new shape), to float tolerance.
    "reduce-overhead" replays CUDA graphs on a GPU; on a CPU it checks the same learn() path."""
    learners = [
        make_ppo(
            kind,
            k_epochs=2,
            mini_batch_size=3,
            compile_update=compiled,
            **(dict(compile_mode=mode) if compiled else {}),
        )
        for compiled in (False, True)
    ]
    results = []
    for ppo in learners:
        fill(ppo)
        first = ppo.learn()
        data = fill(ppo)
        ppo.memory.add_trajectories(**{**data, "states": data["states"] + 1})
        results.append((first, ppo.learn(), ppo.policy.state_dict()))
    (plain_first, plain_second, plain), (compiled_first, compiled_second, compiled) = results
    for name, tensor in plain.items():
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    for key in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        assert compiled_first[key] == pytest.approx(plain_first[key], rel=1e-5, abs=1e-6), key
        assert compiled_second[key] == pytest.approx(plain_second[key], rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_cuda_graph_modes_compile_one_shape_and_run_a_short_last_mini_batch_plainly():
    """CUDA graphs are recorded for one shape, and torch 2.11's dynamic-shape CUDA graphs crashed
    on an H200 (benchmarks/gpu_check.py), so "reduce-overhead" compiles full mini-batches only:
    a batch whose last mini-batch is shorter (8 rows, then 16, in mini-batches of 3) needs no
    second compilation, and learns what the plain update does."""
    plain = make_ppo("continuous", mini_batch_size=3)
    compiled = make_ppo("continuous", mini_batch_size=3, compile_update=True, compile_mode="reduce-overhead")
    for ppo in (plain, compiled):
        fill(ppo)
        ppo.learn()  # compiles the 3-row mini-batch; the last 2 rows run plainly
    with torch.compiler.set_stance("fail_on_recompile"):
        for ppo in (plain, compiled):
            fill(ppo)
            fill(ppo)
            ppo.learn()  # 16 rows: a last mini-batch of 1 row
    for name, tensor in plain.policy.state_dict().items():
        torch.testing.assert_close(compiled.policy.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
