"""Proximal Policy Optimisation: the options and the update.

`PPO` checks its options (PPO/config.py) and builds its state from them (`PPOBase`,
PPO/ppo_base.py: networks, optimiser, memory, acting, saving and loading); the whole update is
`PPO.learn`, readable top to bottom, with the losses it calls in PPO/losses.py and GAE over the
rollout in PPO/advantages.py. Acting's checks and sampling live in PPO/acting.py, saving and
loading in PPO/persistence.py, the device and thread choice in PPO/threads.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from . import persistence
from .acting import initial_action_bounds, non_finite_rows
from .ActorCritic import ActorCritic
from .advantages import episodic_gae, non_episodic_gae
from .checks import CUDA_GRAPH_MODES, NonFiniteError, check_bool, check_compile_mode
from .config import PPOConfig
from .losses import (
    LossTotals,
    clip_grad_norm,
    clipped_surrogate_loss,
    clipped_value_loss,
    lag_corrected_targets,
)
from .Memory import Rollout
from .normalization import RewardScaler
from .ppo_base import PPOBase
from .RND import RND

EVAL_CHUNK = 65536
CONFIG_FIELDS = tuple(item.name for item in dataclasses.fields(PPOConfig))


def _explained_variance(returns: torch.Tensor, values: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns), of the extrinsic head with RND: 1 where the
    values predict the returns, 0 or less where they do not."""
    extrinsic_returns = returns if returns.dim() == 1 else returns[:, 0]
    extrinsic_values = values if values.dim() == 1 else values[:, 0]
    return (
        1 - torch.var(extrinsic_returns - extrinsic_values) / (torch.var(extrinsic_returns) + 1e-8)
    ).item()


def _rnd_loss(
    rnd: RND | None,
    next_states: torch.Tensor | None,
    index: torch.Tensor,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """One gradient step of RND's predictor on these rows of the next states, and its loss (a
    zero without RND)."""
    if rnd is None or next_states is None:
        return torch.zeros((), device=device)
    return rnd.train_predictor(next_states[index], generator)


def _compiled(losses: Callable, compile_update: bool, mode: str, mini_batch_size: int) -> Callable:
    """`losses` as such, or with `compile_update` torch.compile of it and its gradient: compiled
    at the first learn() (seconds to a minute; needs a C++ compiler on a CPU), then quicker per
    step. In "default" mode dynamic, because the batch's valid rows, and so its last mini-batch,
    vary by round. CUDA graphs are recorded for one shape (and torch 2.11's dynamic-shape CUDA
    graphs crashed in the backward pass on an H200), so in CUDA_GRAPH_MODES only full mini-batches
    run compiled, for one fixed shape; a shorter last one runs `losses` itself, uncompiled."""
    if not compile_update:
        return losses
    if mode not in CUDA_GRAPH_MODES:
        return torch.compile(losses, dynamic=True, mode=mode)
    compiled = torch.compile(losses, dynamic=False, mode=mode)

    def full_mini_batches_compiled(*columns: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (compiled if len(columns[0]) == mini_batch_size else losses)(*columns)

    return full_mini_batches_compiled


@torch.no_grad()
def _scores(
    policy: ActorCritic, states: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The log-probs and values of every stored step under `policy`, in chunks to bound memory."""
    log_probs, values = [], []
    for s, a in zip(states.split(EVAL_CHUNK), actions.split(EVAL_CHUNK), strict=True):
        chunk_log_probs, _, chunk_values = policy.evaluate(s, a)
        log_probs.append(chunk_log_probs)
        values.append(chunk_values)
    return torch.cat(log_probs), torch.cat(values)


@torch.no_grad()
def _values(policy: ActorCritic, states: torch.Tensor) -> torch.Tensor:
    return torch.cat([policy.value(s) for s in states.split(EVAL_CHUNK)])


def _check_rewards(batch: Rollout) -> None:
    """Raises NonFiniteError naming the rows whose reward is NaN or inf (the batch is dropped)."""
    bad_rows = non_finite_rows(batch.rewards[batch.valid])
    if bad_rows:
        raise NonFiniteError(
            f"rewards: {len(bad_rows)} of the batch's {len(batch)} steps hold NaN or inf "
            f"(rows {bad_rows[:5]}); the batch was dropped and the learner is unchanged"
        )


class PPO(PPOBase):
    """A PPO learner for one Box observation and a Discrete (`is_continuous=False`, `action_dim`
    = number of actions), MultiDiscrete (`action_nvec` = its sizes, `action_dim` = their sum) or
    Box (`is_continuous=True`, `action_dim` = its size) action. Image observations (give their
    3-D `observation_shape`, pixels 0-255) get a Nature CNN; any other shape is flattened.
    `observation_space` records, for observations flattened from a Discrete, MultiDiscrete,
    MultiBinary, Dict or Tuple space, that space's structure (`AsyncTools.envs.describe_space`;
    `ppo_for_env` fills it in): it is saved with the weights, and evaluation, play.py and the
    exported policy check and flatten an env's raw observations by it.

    The positional parameters are the original project's, in its order; every newer option is
    keyword-only. `GAE_lambda` and `use_RND` keep the original's spelling. The options are
    checked by `PPOConfig` (PPO/config.py), held as `ppo.options` and, as a plain dict, as
    `ppo.config`; `device`, `seed`, `num_threads`, `compile_update` and `compile_mode` are the
    learner's own (where and how it runs), not options of the saved model. The learner's state
    and its methods other than the update (acting, action bounds, `export`, saving and loading)
    are `PPOBase`'s (PPO/ppo_base.py).

    Batching: `learn()` waits until at least `batch_size` steps are stored (returning None and
    keeping them otherwise), then trains `k_epochs` passes over *all* stored steps in shuffled
    mini-batches of `mini_batch_size`, one optimiser step per mini-batch.

    `normalize_reward` (default None) divides the extrinsic reward by the running std of the
    discounted return: left out, it is True, but False with `use_RND=True`, as in Burda et al.
    (2018) (why: `normalize_reward` in docs/guides/settings.md). An explicit value wins (an env
    id's preset that names it counts as passed); the resolved value is what `config` saves.
    """

    def __init__(
        self,
        is_continuous: bool,
        observ_dim: int,
        action_dim: int,
        action_scaling: float | Sequence[float] | None = None,
        lr: float = 3e-3,
        k_epochs: int = 4,
        policy_clip: float = 0.2,
        GAE_lambda: float = 0.95,
        gamma: float = 0.99,
        batch_size: int = 2048,
        mini_batch_size: int = 512,
        use_RND: bool = False,
        beta: float = 1.0,
        *,
        device: str | torch.device | None = None,
        seed: int | None = None,
        hidden_sizes: Sequence[int] = (64, 64),
        entropy_coef: float | None = None,
        value_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        value_clip: float | None = None,
        target_kl: float | None = None,
        normalize_advantages: bool = True,
        normalize_obs: bool = False,
        squash_actions: bool = False,
        log_std_init: float = 0.0,
        action_low: Sequence[float] | None = None,
        action_high: Sequence[float] | None = None,
        observation_shape: Sequence[int] | None = None,
        action_nvec: Sequence[int] | None = None,
        normalize_reward: bool | None = None,
        anneal_lr: bool = False,
        total_steps: int | None = None,
        extrinsic_coef: float = 2.0,
        intrinsic_gamma: float = 0.99,
        rnd_update_fraction: float = 0.25,
        orthogonal_init: bool = True,
        adam_eps: float = 1e-5,
        num_threads: int | None = None,
        activation: str = "tanh",
        critic_hidden_sizes: Sequence[int] | None = None,
        observation_parts: Sequence[Sequence[int]] | None = None,
        compile_update: bool = False,
        compile_mode: str = "default",
        max_lag_weight: float | None = None,
        observation_space: dict | None = None,
    ):
        given = locals()  # the options as passed, by name: PPOConfig checks them all
        options = PPOConfig(**{name: given[name] for name in CONFIG_FIELDS})
        super().__init__(options, device, num_threads, seed)
        self.compile_update = check_bool("compile_update", compile_update)
        mode = self.compile_mode = check_compile_mode(compile_mode, self.compile_update)
        self._minibatch_losses = _compiled(self._losses, self.compile_update, mode, self.mini_batch_size)
        if self.is_continuous and (
            bounds := initial_action_bounds(action_scaling, action_low, action_high, self.action_dim)
        ):
            self.set_action_bounds(*bounds)

    # ------------------------------------------------------------------ update
    @torch.no_grad()
    def _advantages(self, batch: Rollout, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE over the [T, N] rollout (PPO/advantages.py), with termination cutting the return
        and truncation bootstrapping V(final state); `values` are V of every row, [T, N] (or
        [T, N, 2] with RND).

        Returns (advantages [T, N], returns [T, N] or, with RND, [T, N, 2]). With RND the
        intrinsic part is non-episodic (`non_episodic_gae`: it runs on through episode ends
        within each copy's column, bootstrapping from V_int of the copy's next state), and the
        advantages are combined as `extrinsic_coef * A_ext + beta * A_int`.
        """
        valid = batch.valid
        rewards = batch.rewards.float()
        if self.reward_scaler is not None:
            rewards = self.reward_scaler(rewards, valid, batch.episode_starts)
        final_values = torch.zeros_like(values)
        final_values[batch.ends] = _values(self.policy, batch.final_states)
        if self.rnd is None:
            return episodic_gae(batch, rewards, values, final_values, self.gamma, self.GAE_lambda)

        extrinsic, extrinsic_returns = episodic_gae(
            batch, rewards, values[..., 0], final_values[..., 0], self.gamma, self.GAE_lambda
        )
        novelty = torch.zeros_like(rewards)
        novelty[valid] = self.rnd.intrinsic_reward(batch.next_states()[valid])
        self.stats["intrinsic_reward"] = novelty[valid].mean().item()
        intrinsic_rewards = cast(RewardScaler, self.intrinsic_scaler)(novelty, valid, batch.episode_starts)
        intrinsic, intrinsic_returns = non_episodic_gae(
            batch,
            intrinsic_rewards,
            values[..., 1],
            final_values[..., 1],
            self.intrinsic_gamma,
            self.GAE_lambda,
        )
        advantages = self.extrinsic_coef * extrinsic + self.beta * intrinsic
        return advantages, torch.stack([extrinsic_returns, intrinsic_returns], dim=-1)

    def learn(self) -> dict[str, float] | None:
        """One PPO update on everything in `self.memory`, if it holds at least `batch_size` steps.

        Returns the update's statistics (also kept in `self.stats`), or None if it waited.
        """
        if len(self.memory) < self.batch_size:
            return None
        batch = self.memory.take()  # a Rollout [T, N] on the device
        valid = batch.valid
        _check_rewards(batch)
        # The rows of the update; the [T, N] grids serve the scans (GAE, reward scaling).
        states, actions = batch.states[valid], batch.actions[valid]
        log_probs_now, old_values = _scores(self.policy, states, actions)
        # The behaviour policy's log-probs, as recorded when the actions were sampled; where
        # none were, the learner's own, which are the behaviour's if nothing changed since (the
        # observation statistics take this batch in only after the update, for the next one).
        recorded = batch.log_probs[valid]
        behaviour_log_probs = torch.where(torch.isnan(recorded), log_probs_now, recorded)
        old_log_probs, sample_weights = lag_corrected_targets(
            behaviour_log_probs, log_probs_now, self.max_lag_weight
        )
        values = old_values.new_zeros(batch.shape + old_values.shape[1:])
        values[valid] = old_values
        advantage_grid, return_grid = self._advantages(batch, values)
        advantages, returns = advantage_grid[valid], return_grid[valid]
        next_states = batch.next_states()[valid] if self.rnd is not None else None
        learning_rate = self._anneal_learning_rate()
        rows = (states, actions, old_log_probs, advantages, old_values, returns, sample_weights)

        totals = LossTotals(self.device)
        num_rows = len(states)
        minibatches_per_epoch = -(-num_rows // self.mini_batch_size)
        for epoch in range(self.k_epochs):  # noqa: B007 (read after the loop: the epochs run)
            epoch_kl = torch.zeros((), device=self.device)
            order = torch.randperm(num_rows, generator=self.shuffle_generator).to(self.device)
            for index in order.split(self.mini_batch_size):
                if self.compile_update:
                    # with CUDA graphs, each mini-batch is a new step: the last one's outputs
                    # (already read into `totals`) may be overwritten
                    torch.compiler.cudagraph_mark_step_begin()
                loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction = self._minibatch_losses(
                    *(column[index] for column in rows)
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_grad_norm(self._policy_parameters, self.max_grad_norm)
                self.optimizer.step()
                rnd_loss = _rnd_loss(self.rnd, next_states, index, self.shuffle_generator, self.device)
                totals.add(policy_loss, value_loss, entropy, approx_kl, clip_fraction, rnd_loss)
                epoch_kl += approx_kl.detach()
            if self.target_kl is not None and epoch_kl.item() / minibatches_per_epoch > self.target_kl:
                break

        means = totals.means()
        if self.policy.obs_normalizer is not None:
            self.policy.obs_normalizer.update(states)
        self._check_finite_after_update(
            {name: means[name] for name in ("policy_loss", "value_loss", "entropy")}
        )
        if self.numpy_actor is not None:
            self.numpy_actor.refresh()  # the fused Adam step does not bump tensor versions
        self.samples_learned += num_rows
        if self.rnd is None:
            del means["rnd_loss"]
        self.stats.update(means)
        self.stats.update(
            explained_variance=_explained_variance(returns, old_values),
            num_samples=float(num_rows),
            epochs=float(epoch + 1),
            gradient_steps=float(totals.count),
            learning_rate=learning_rate,
        )
        return dict(self.stats)

    def _losses(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        old_log_probs: torch.Tensor,
        advantages: torch.Tensor,
        old_values: torch.Tensor,
        returns: torch.Tensor,
        sample_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """One mini-batch's loss, and its parts for the statistics: (loss, policy_loss,
        value_loss, entropy, approx_kl, clip_fraction). `learn` calls it through
        `_minibatch_losses`: this function itself, or compiled with `compile_update=True`."""
        log_probs, entropy, values = self.policy.evaluate(states, actions)
        policy_loss, ratio, log_ratio = clipped_surrogate_loss(
            log_probs, old_log_probs, advantages, self.policy_clip, self.normalize_advantages, sample_weights
        )
        value_loss = clipped_value_loss(values, old_values, returns, self.value_clip)
        entropy = entropy.mean()
        loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > self.policy_clip).float().mean()
        return loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None, **overrides: Any) -> PPO:
        """A PPO built with the options its weights were saved with (`overrides` replace some),
        with those weights loaded: `PPO.load('data/cartpole')` needs no sizes."""
        config = {**persistence.saved_config(path), **overrides}
        return cls(**config, device=device).load_weights(path)
