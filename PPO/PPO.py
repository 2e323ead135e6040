"""Proximal Policy Optimisation: the learner's networks, acting, and the update.

The whole update is `PPO.learn`, readable top to bottom, with the losses it calls in
PPO/losses.py. Saving and loading live in PPO/persistence.py, the device and thread choice in
PPO/threads.py.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import persistence
from .ActorCritic import ActorCritic
from .Memory import Memory, Rollout
from .RND import RND
from .advantages import compute_gae, next_valid
from .checkpoint import non_finite_entries
from .config import PPOConfig
from .checks import check_bool, check_compile_mode, check_positive_int, NonFiniteError
from .export import export_policy
from .losses import clip_grad_norm, clipped_surrogate_loss, clipped_value_loss, lag_corrected_targets
from .normalization import RewardScaler
from .numpy_actor import NumpyActor
from .threads import choose_torch_threads, default_device

EVAL_CHUNK = 65536
CONFIG_FIELDS = tuple(item.name for item in dataclasses.fields(PPOConfig))
# The options the learner reads, kept as its attributes (ppo.lr, ppo.gamma, ...).
LEARNER_SETTINGS = ("is_continuous", "observ_dim", "action_dim", "lr", "k_epochs", "policy_clip",
                    "GAE_lambda", "gamma", "batch_size", "mini_batch_size", "use_RND", "beta",
                    "entropy_coef", "value_coef", "max_grad_norm", "value_clip", "target_kl",
                    "max_lag_weight", "normalize_advantages", "observation_shape", "action_nvec",
                    "normalize_reward", "anneal_lr", "total_steps", "extrinsic_coef",
                    "intrinsic_gamma", "observation_parts", "observation_space", "is_image",
                    "has_images")


def _non_finite_rows(x: np.ndarray | torch.Tensor) -> list[int]:
    """The rows of a [B, ...] batch holding NaN or inf (none for integer data)."""
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "fc" or np.isfinite(x).all():
            return []
        return np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1)).tolist()
    if not x.is_floating_point():
        return []
    # NumPy is several times quicker than torch for this on the small CPU batches of a rollout.
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return _non_finite_rows(x.detach().numpy())
    if bool(torch.isfinite(x).all()):
        return []
    return torch.nonzero(~torch.isfinite(x.reshape(len(x), -1)).all(1)).flatten().tolist()


class PPO:
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
    learner's own (where and how it runs), not options of the saved model.

    Batching: `learn()` waits until at least `batch_size` steps are stored (returning None and
    keeping them otherwise), then trains `k_epochs` passes over *all* stored steps in shuffled
    mini-batches of `mini_batch_size`, one optimiser step per mini-batch.

    `normalize_reward` (default None: decided by `use_RND`) divides the extrinsic reward by the
    running std of the discounted return. Left out, it is True without RND and False with
    `use_RND=True`: as in Burda et al. (2018), RND normalises only the intrinsic reward. Before
    a sparse goal is first reached, the extrinsic return is made of the task's small shaping
    costs alone; dividing by its std blows those costs up until they drown the intrinsic bonus,
    and the policy learns to avoid them instead of exploring (tests/test_rnd_deep_sea.py). Pass
    `normalize_reward=True` to scale with RND anyway (an env id's preset that names it, as
    MountainCar-v0's, counts as passed). The resolved value is what `config` saves.
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
        self.options = options = PPOConfig(**{name: given[name] for name in CONFIG_FIELDS})
        for name in LEARNER_SETTINGS:  # what the learner reads, as its own attributes
            setattr(self, name, getattr(options, name))

        self._place(device, num_threads, seed)
        self._build_networks(options)
        self._build_update(options, compile_update, compile_mode)
        self.action_bounds_given = False
        if self.is_continuous:
            self._init_action_bounds(action_scaling, action_low, action_high)

    def _place(self, device, num_threads: int | None, seed: int | None) -> None:
        """The device, torch's thread count on a CPU, and the seed (drawn if not given)."""
        self.device = torch.device(device) if device is not None else default_device()
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} was asked for, but torch sees no CUDA device here")
        if num_threads is not None:
            num_threads = check_positive_int("num_threads", num_threads)
        self.num_threads = (choose_torch_threads(num_threads, self.has_images)
                            if self.device.type == "cpu" else torch.get_num_threads())
        # A drawn seed stays below 2**30: seeds derived from it (seed + copy index + steps so far)
        # stay within the int32 that some env libraries (EnvPool) require.
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**30)
        self.seed = int(seed)

    def _build_networks(self, options: PPOConfig) -> None:
        """The actor-critic and, with RND, RND's networks, initialised from the seed alone."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.policy = ActorCritic(self.is_continuous, self.observ_dim, self.action_dim,
                                      options.hidden_sizes, squash_actions=options.squash_actions,
                                      normalize_obs=options.normalize_obs,
                                      log_std_init=options.log_std_init,
                                      observation_shape=self.observation_shape,
                                      action_nvec=self.action_nvec,
                                      num_values=2 if self.use_RND else 1,
                                      orthogonal_init=options.orthogonal_init,
                                      activation=options.activation,
                                      critic_hidden_sizes=options.critic_hidden_sizes,
                                      observation_parts=self.observation_parts,
                                      ).to(self.device)
            self.rnd = RND(self.observ_dim, observation_shape=self.observation_shape,
                           update_fraction=options.rnd_update_fraction
                           ).to(self.device) if self.use_RND else None
        self._policy_parameters = list(self.policy.parameters())

    def _build_update(self, options: PPOConfig, compile_update: bool, compile_mode: str) -> None:
        """What the update needs: the loss (compiled or not), the optimiser, the reward scalers,
        the memory, the random generators and the counters."""
        # torch.compile of the mini-batch loss and its gradient: compiled at the first learn()
        # (seconds to a minute; needs a C++ compiler on a CPU), then quicker per step; dynamic,
        # because the batch's valid rows, and so its last mini-batch, vary from round to round
        self.compile_update = check_bool("compile_update", compile_update)
        self.compile_mode = check_compile_mode(compile_mode, self.compile_update)
        self._minibatch_losses = (torch.compile(self._losses, dynamic=True, mode=self.compile_mode)
                                  if self.compile_update else self._losses)
        self.optimizer = torch.optim.Adam(self._policy_parameters, lr=self.lr, fused=True,
                                          eps=options.adam_eps)
        self.reward_scaler = RewardScaler(self.gamma).to(self.device) if self.normalize_reward else None
        # Intrinsic returns never restart at episode ends (Burda et al.) and are not clipped.
        self.intrinsic_scaler = (RewardScaler(self.intrinsic_gamma, clip=float("inf"), episodic=False)
                                 .to(self.device) if self.use_RND else None)
        self.memory = Memory(self.device)
        self.sample_generator = torch.Generator(self.device).manual_seed(self.seed)
        # On the CPU, rollout actions of vector policies are sampled in NumPy (same actions, less
        # overhead per call; see numpy_actor.py). Set to None to sample through torch.
        self.numpy_actor = (NumpyActor(self.policy) if self.device.type == "cpu" and not self.has_images
                            else None)
        self.shuffle_generator = torch.Generator().manual_seed(self.seed + 1)
        self.samples_learned = 0
        self.stats: dict[str, float] = {}

    @property
    def config(self) -> dict[str, Any]:
        """The learner's options as a plain JSON-ready dict (`PPOConfig.to_dict`): what the
        weights file and checkpoints hold, and what `PPO(**ppo.config)` rebuilds it from."""
        return self.options.to_dict()

    # ----------------------------------------------------------------- actions
    def _init_action_bounds(self, action_scaling, action_low, action_high) -> None:
        if action_scaling is not None and action_low is not None:
            raise ValueError("pass either action_scaling or action_low/action_high, not both")
        if action_scaling is not None:
            scale = self._action_vector("action_scaling", action_scaling)
            if not torch.all(scale > 0):
                raise ValueError(f"action_scaling must be positive, got {action_scaling!r}")
            self.set_action_bounds(-scale, scale)
        elif action_low is not None or action_high is not None:
            if action_low is None or action_high is None:
                raise ValueError("action_low and action_high must be given together")
            self.set_action_bounds(action_low, action_high)

    def _action_vector(self, name: str, value) -> torch.Tensor:
        vector = torch.as_tensor(np.asarray(value, dtype=np.float32)).flatten()
        if vector.numel() == 1:
            vector = vector.expand(self.action_dim)
        if vector.numel() != self.action_dim or not torch.all(torch.isfinite(vector)):
            raise ValueError(f"{name} must be a finite number or {self.action_dim} finite numbers, "
                             f"got {value!r}")
        return vector

    def set_action_bounds(self, low, high) -> None:
        """Maps the policy's Gaussian onto [low, high]: the mean of a fresh policy sits at the
        centre and one std spans half the range. Saved with the weights."""
        if not self.is_continuous:
            raise ValueError("set_action_bounds: this PPO has discrete actions (is_continuous=False)")
        low, high = self._action_vector("action_low", low), self._action_vector("action_high", high)
        if not torch.all(high > low):
            raise ValueError(f"action_high must exceed action_low everywhere, got low={low.tolist()}"
                             f", high={high.tolist()}")
        self.policy.set_action_bounds(low.to(self.device), high.to(self.device))
        self.action_bounds_given = True

    def _check_states(self, state) -> tuple[np.ndarray | torch.Tensor, bool]:
        """Returns the states as a [B, ...] array or tensor (as given) of `observ_dim` values per
        row, and whether a single unbatched state was given."""
        if not isinstance(state, (np.ndarray, torch.Tensor)):
            raise TypeError(f"state must be a torch.Tensor or numpy array, got {type(state).__name__}")
        shape = tuple(state.shape)
        single = len(shape) == 1 or shape == self.observation_shape != (self.observ_dim,)
        if single:
            state = state[None]
        if state.ndim < 2 or state.shape[0] == 0 or math.prod(state.shape[1:]) != self.observ_dim:
            expected = ", ".join(str(d) for d in self.observation_shape)
            raise ValueError(f"state: expected shape [batch, {expected}] (batch >= 1) or "
                             f"[{expected}], got {list(shape)}")
        bad_rows = _non_finite_rows(state)
        if bad_rows:
            raise ValueError(f"state: non-finite values (NaN or inf) in rows {bad_rows[:10]}")
        return state, single

    def get_action(self, state, deterministic: bool = False, clip_actions: bool = True, *,
                   generator: torch.Generator | None = None) -> np.ndarray:
        """Actions for a batch of states [B, observ_dim] (or one state [observ_dim]).

        Discrete: int64 indices [B]; MultiDiscrete: int64 [B, len(action_nvec)]. Continuous:
        float32 [B, action_dim] in the env's units; sampled actions are not clipped (the
        vectorizer clips what the env receives; the learner scores what was sampled).
        `deterministic=True` returns the most likely action, clipped to the action bounds where
        they are known (an action ready for the env, as for deployment); `clip_actions=False`
        keeps the raw mean. Sampling draws from `generator` (on the learner's device), by
        default the learner's own, which rollouts draw from.
        """
        actions, _, single = self._act(state, deterministic, with_log_probs=False,
                                       generator=generator)
        if deterministic and clip_actions and self.is_continuous and self.action_bounds_given:
            actions = np.clip(actions, self.policy.action_low.cpu().numpy(),
                              self.policy.action_high.cpu().numpy())
        return actions[0] if single else actions

    def sample_actions(self, state, deterministic: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`get_action(state)`'s actions (unclipped) and their log-probabilities under the
        policy that chose them, float32 [B] (a scalar for one state): what a rollout stores as
        the behaviour policy of PPO's ratio (`Rollout.log_probs`)."""
        actions, log_probs, single = self._act(state, deterministic, with_log_probs=True)
        return (actions[0], log_probs[0]) if single else (actions, log_probs)

    @torch.no_grad()
    def _act(self, state, deterministic: bool, with_log_probs: bool,
             generator: torch.Generator | None = None
             ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(actions [B, ...], their log-probs [B] or None, whether one state was given)."""
        states, single = self._check_states(state)
        generator = self.sample_generator if generator is None else generator
        if self.numpy_actor is not None and (isinstance(states, np.ndarray) or states.device.type == "cpu"):
            states = states if isinstance(states, np.ndarray) else states.detach().numpy()
            out = self.numpy_actor.actor_output(np.asarray(states, dtype=np.float32)
                                                .reshape(len(states), -1))
            actions = self.numpy_actor.sample(out, generator, deterministic)
            out = torch.from_numpy(out)
        else:
            states = torch.as_tensor(states).to(self.device, non_blocking=True)
            out = self.policy.actor(self.policy.features(states))
            actions = self.policy.sample(out, generator, deterministic).cpu().numpy()
        if not with_log_probs:
            return actions, None, single
        log_probs, _ = self.policy.log_prob_entropy(out, torch.as_tensor(actions).to(out.device),
                                                    with_entropy=False)
        return actions, log_probs.cpu().numpy(), single

    # ------------------------------------------------------------------ update
    @torch.no_grad()
    def _evaluate_all(self, states: torch.Tensor, actions: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Old log-probs and values of every stored step, in chunks to bound memory."""
        log_probs, values = [], []
        for s, a in zip(states.split(EVAL_CHUNK), actions.split(EVAL_CHUNK)):
            chunk_log_probs, _, chunk_values = self.policy.evaluate(s, a)
            log_probs.append(chunk_log_probs)
            values.append(chunk_values)
        return torch.cat(log_probs), torch.cat(values)

    @torch.no_grad()
    def _values_of(self, states: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.policy.value(s) for s in states.split(EVAL_CHUNK)])

    @torch.no_grad()
    def _advantages(self, batch: Rollout, values: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE over the [T, N] rollout, with termination cutting the return and truncation
        bootstrapping V(final state); `values` are V of every row, [T, N] (or [T, N, 2] with RND).

        Returns (advantages [T, N], returns [T, N] or, with RND, [T, N, 2]). With RND the
        intrinsic part is non-episodic: it runs on through episode ends within each copy's
        column, bootstrapping from V_int of the copy's next state, and the advantages are
        combined as `extrinsic_coef * A_ext + beta * A_int`.
        """
        valid, ends = batch.valid, batch.ends
        rewards = batch.rewards.float()
        if self.reward_scaler is not None:
            rewards = self.reward_scaler(rewards, valid, batch.episode_starts)
        final_values = torch.zeros_like(values)
        final_values[ends] = self._values_of(batch.final_states)
        # inside an episode the next row is the next step (an episode's rows are contiguous)
        following = torch.roll(values, -1, dims=0)
        if self.rnd is None:
            next_values = torch.where(ends, final_values, following).masked_fill(batch.terminated, 0.0)
            return compute_gae(rewards, values, next_values, ends, valid, self.gamma, self.GAE_lambda)

        extrinsic_next = torch.where(ends, final_values[..., 0], following[..., 0])
        extrinsic, extrinsic_returns = compute_gae(
            rewards, values[..., 0], extrinsic_next.masked_fill(batch.terminated, 0.0), ends,
            valid, self.gamma, self.GAE_lambda)
        novelty = torch.zeros_like(rewards)
        novelty[valid] = self.rnd.intrinsic_reward(batch.next_states()[valid])
        self.stats["intrinsic_reward"] = novelty[valid].mean().item()
        intrinsic_rewards = self.intrinsic_scaler(novelty, valid, batch.episode_starts)
        # a copy's run ends at its column's last valid row: only there does the return stop;
        # elsewhere it flows on to the copy's next step, past the next episode's reset row
        column_ends = ends & (next_valid(torch.ones_like(rewards), valid) == 0)
        intrinsic_next = torch.where(column_ends, final_values[..., 1],
                                     next_valid(values[..., 1], valid))
        intrinsic, intrinsic_returns = compute_gae(intrinsic_rewards, values[..., 1], intrinsic_next,
                                                   column_ends, valid, self.intrinsic_gamma,
                                                   self.GAE_lambda)
        advantages = self.extrinsic_coef * extrinsic + self.beta * intrinsic
        return advantages, torch.stack([extrinsic_returns, intrinsic_returns], dim=-1)

    def _anneal_learning_rate(self) -> float:
        """Linear decay from `lr` to 0 over `total_steps` learned samples (with `anneal_lr`)."""
        if not self.anneal_lr:
            return self.lr
        if self.total_steps is None:
            raise ValueError("total_steps: anneal_lr=True needs the number of env steps the "
                             "learning rate decays over (AsyncPPO sets it from its steps)")
        lr = self.lr * max(0.0, 1.0 - self.samples_learned / self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def learn(self) -> dict[str, float] | None:
        """One PPO update on everything in `self.memory`, if it holds at least `batch_size` steps.

        Returns the update's statistics (also kept in `self.stats`), or None if it waited.
        """
        if len(self.memory) < self.batch_size:
            return None
        batch = self.memory.take()
        valid = batch.valid
        bad_rows = _non_finite_rows(batch.rewards[valid])
        if bad_rows:
            raise NonFiniteError(f"rewards: {len(bad_rows)} of the batch's {len(batch)} steps hold "
                                 f"NaN or inf (rows {bad_rows[:5]}); the batch was dropped and "
                                 f"the learner is unchanged")
        # The rows of the update; the [T, N] grids serve the scans (GAE, reward scaling).
        states, actions = batch.states[valid], batch.actions[valid]
        log_probs_now, old_values = self._evaluate_all(states, actions)
        # The behaviour policy's log-probs, as recorded when the actions were sampled; where
        # none were, the learner's own, which are the behaviour's if nothing changed since (the
        # observation statistics take this batch in only after the update, for the next one).
        recorded = batch.log_probs[valid]
        behaviour_log_probs = torch.where(torch.isnan(recorded), log_probs_now, recorded)
        old_log_probs, sample_weights = lag_corrected_targets(behaviour_log_probs, log_probs_now,
                                                              self.max_lag_weight)
        values = old_values.new_zeros(batch.shape + old_values.shape[1:])
        values[valid] = old_values
        advantage_grid, return_grid = self._advantages(batch, values)
        advantages, returns = advantage_grid[valid], return_grid[valid]
        next_states = batch.next_states()[valid] if self.rnd is not None else None
        learning_rate = self._anneal_learning_rate()

        totals = torch.zeros(7, device=self.device)
        num_updates = 0
        num_rows = len(states)
        minibatches_per_epoch = -(-num_rows // self.mini_batch_size)
        for epoch in range(self.k_epochs):
            epoch_kl = torch.zeros((), device=self.device)
            order = torch.randperm(num_rows, generator=self.shuffle_generator).to(self.device)
            for index in order.split(self.mini_batch_size):
                if self.compile_update:
                    # with CUDA graphs, each mini-batch is a new step: the last one's outputs
                    # (already read into `totals`) may be overwritten
                    torch.compiler.cudagraph_mark_step_begin()
                loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction = \
                    self._minibatch_losses(states[index], actions[index], old_log_probs[index],
                                           advantages[index], old_values[index], returns[index],
                                           sample_weights[index])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_grad_norm(self._policy_parameters, self.max_grad_norm)
                self.optimizer.step()
                rnd_loss = (self.rnd.train_predictor(next_states[index], self.shuffle_generator)
                            if self.rnd is not None else torch.zeros((), device=self.device))

                with torch.no_grad():
                    totals += torch.stack([policy_loss, value_loss, entropy, approx_kl,
                                           clip_fraction, rnd_loss,
                                           torch.ones((), device=self.device)]).detach()
                    epoch_kl += approx_kl
                num_updates += 1
            if self.target_kl is not None and epoch_kl.item() / minibatches_per_epoch > self.target_kl:
                break

        means = (totals[:6] / totals[6]).tolist()
        if self.policy.obs_normalizer is not None:
            self.policy.obs_normalizer.update(states)
        self._check_finite_after_update(dict(zip(("policy_loss", "value_loss", "entropy"), means)))
        if self.numpy_actor is not None:
            self.numpy_actor.refresh()  # the fused Adam step does not bump tensor versions
        self.samples_learned += num_rows
        extrinsic_returns = returns if returns.dim() == 1 else returns[:, 0]
        extrinsic_values = old_values if old_values.dim() == 1 else old_values[:, 0]
        explained = 1 - torch.var(extrinsic_returns - extrinsic_values) / (torch.var(extrinsic_returns) + 1e-8)
        self.stats.update(dict(zip(
            ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), means)))
        if self.rnd is not None:
            self.stats["rnd_loss"] = means[5]
        self.stats.update(explained_variance=explained.item(), num_samples=float(num_rows),
                          epochs=float(epoch + 1), gradient_steps=float(num_updates),
                          learning_rate=learning_rate)
        return dict(self.stats)

    def _losses(self, states: torch.Tensor, actions: torch.Tensor, old_log_probs: torch.Tensor,
                advantages: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                sample_weights: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One mini-batch's loss, and its parts for the statistics: (loss, policy_loss,
        value_loss, entropy, approx_kl, clip_fraction). `learn` calls it through
        `_minibatch_losses`: this function itself, or compiled with `compile_update=True`."""
        log_probs, entropy, values = self.policy.evaluate(states, actions)
        policy_loss, ratio, log_ratio = clipped_surrogate_loss(
            log_probs, old_log_probs, advantages, self.policy_clip, self.normalize_advantages,
            sample_weights)
        value_loss = clipped_value_loss(values, old_values, returns, self.value_clip)
        entropy = entropy.mean()
        loss = policy_loss + self.value_coef * value_loss - self.entropy_coef * entropy
        with torch.no_grad():
            approx_kl = ((ratio - 1) - log_ratio).mean()
            clip_fraction = ((ratio - 1).abs() > self.policy_clip).float().mean()
        return loss, policy_loss, value_loss, entropy, approx_kl, clip_fraction

    def non_finite_weights(self) -> list[str]:
        """The names of the weights and statistics (as `save_weights` writes them) that hold
        NaN or inf; empty for a healthy learner."""
        return list(non_finite_entries(persistence.weights_state(self)))

    def _check_finite_after_update(self, losses: dict[str, float]) -> None:
        bad = self.non_finite_weights()
        if not bad and all(math.isfinite(value) for value in losses.values()):
            return
        shown = ", ".join(f"{name}={value:.4g}" for name, value in losses.items())
        raise NonFiniteError(
            f"the update diverged ({shown}; NaN or inf in {bad[:5] or 'no weights yet'}): this "
            f"learner can no longer be trained or saved, and nothing is saved over earlier files. "
            f"Resume from the last checkpoint, e.g. with a lower lr or normalize_reward=True")

    def export(self, file: str | Path, format: str = "export", clip_actions: bool = True) -> Path:
        """Writes the policy alone for deployment: raw observations in, the most likely actions
        out, as `get_action(..., deterministic=True)` gives them. `format`: "export" (load with
        `torch.export.load(file).module()`), "torchscript" (`torch.jit.load(file)`) or "onnx"
        (onnxruntime; input "obs", output "actions"; needs `pip install -e .[onnx]`).
        `clip_actions=False` keeps continuous actions unclipped. A policy trained on Discrete,
        MultiDiscrete or MultiBinary observations takes them raw (one-hot inside). See
        PPO/export.py."""
        return export_policy(self.policy, file, format, clip_actions and self.action_bounds_given,
                             self.observation_space)

    # ------------------------------------------------------------- save/load (PPO/persistence.py)
    def save_weights(self, path: str | Path) -> None:
        """Writes `Policy_weights.pth` into the directory `path` (created if missing): the policy,
        the observation and reward statistics, the action bounds, the constructor's options and,
        with RND, RND's networks and statistics (entries named `rnd.*`). One file, written
        atomically: a crash mid-save leaves the previous save whole. Raises NonFiniteError, and
        writes nothing, if the learner holds NaN or inf."""
        persistence.save_weights(self, path)

    def load_weights(self, path: str | Path) -> "PPO":
        """Loads what `save_weights` wrote into `path`. Raises FileNotFoundError if the file is
        missing and ValueError if it is corrupt or was saved for a different model, naming what
        differs. Returns self, so `PPO(...).load_weights(path)` gives the loaded learner."""
        persistence.load_weights(self, path)
        return self

    def training_state(self) -> dict[str, Any]:
        """Everything needed to go on training exactly where this learner is: the weights and
        statistics (as `save_weights` writes them), the optimisers, the random generators, the
        learned-sample counter (LR annealing), each env's running returns (reward scaling) and
        the steps waiting in `memory`. Tensors and plain values only, so it loads with
        `weights_only=True`."""
        return persistence.training_state(self)

    def load_training_state(self, state: dict[str, Any], file: Path | str = "checkpoint") -> None:
        """Restores what `training_state` returned (checked first: a state saved for another
        model raises ValueError naming what differs, and changes nothing)."""
        persistence.load_training_state(self, state, Path(file))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None,
             **overrides: Any) -> "PPO":
        """A PPO built with the options its weights were saved with (`overrides` replace some),
        with those weights loaded: `PPO.load('data/cartpole')` needs no sizes."""
        config = {**persistence.saved_config(path), **overrides}
        return cls(**config, device=device).load_weights(path)
