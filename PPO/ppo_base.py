"""`PPOBase`: what a PPO learner holds, and all it does but learn.

`PPO` (PPO/PPO.py) checks its options into a `PPOConfig` and builds this from them: the
device and seed, the networks, the optimiser, the reward scalers, the memory, the random
generators and the counters; then it adds the update, `learn()`. Here are the rest of its
public methods: acting (`get_action`, `sample_actions`, `set_action_bounds`; the work in
PPO/acting.py), `export` (PPO/export.py), and the files (`save_weights`, `load_weights`,
`training_state`, `load_training_state`; the work in PPO/persistence.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from numpy.typing import ArrayLike

from . import persistence
from .acting import act, check_states, checked_action_bounds
from .ActorCritic import ActorCritic
from .checkpoint import non_finite_entries
from .checks import NonFiniteError
from .config import PPOConfig
from .export import export_policy
from .Memory import Memory
from .normalization import RewardScaler
from .numpy_actor import NumpyActor
from .RND import RND
from .threads import place

# The options the learner reads, kept as its attributes (ppo.lr, ppo.gamma, ...).
LEARNER_SETTINGS = (
    "is_continuous",
    "observ_dim",
    "action_dim",
    "lr",
    "k_epochs",
    "policy_clip",
    "GAE_lambda",
    "gamma",
    "batch_size",
    "mini_batch_size",
    "use_RND",
    "beta",
    "entropy_coef",
    "value_coef",
    "max_grad_norm",
    "value_clip",
    "target_kl",
    "max_lag_weight",
    "normalize_advantages",
    "observation_shape",
    "action_nvec",
    "normalize_reward",
    "anneal_lr",
    "total_steps",
    "extrinsic_coef",
    "intrinsic_gamma",
    "observation_parts",
    "observation_space",
    "is_image",
    "has_images",
)


class LearnerSettings:
    """The types of the `LEARNER_SETTINGS` attributes, as `PPOConfig` leaves them once checked
    (`PPOBase.__init__` copies them over by name): declarations for the type checker only."""

    is_continuous: bool
    observ_dim: int
    action_dim: int
    lr: float
    k_epochs: int
    policy_clip: float
    GAE_lambda: float
    gamma: float
    batch_size: int
    mini_batch_size: int
    use_RND: bool
    beta: float
    entropy_coef: float
    value_coef: float
    max_grad_norm: float
    value_clip: float | None
    target_kl: float | None
    max_lag_weight: float | None
    normalize_advantages: bool
    observation_shape: tuple[int, ...]
    action_nvec: tuple[int, ...] | None
    normalize_reward: bool
    anneal_lr: bool
    total_steps: int | None
    extrinsic_coef: float
    intrinsic_gamma: float
    observation_parts: list[list[int]] | None
    observation_space: dict | None
    is_image: bool
    has_images: bool


Learner = TypeVar("Learner", bound="PPOBase")  # `load_weights` returns self: a PPO for a PPO


def build_networks(options: PPOConfig, device: torch.device, seed: int) -> tuple[ActorCritic, RND | None]:
    """The actor-critic and, with RND, RND's networks, initialised from the seed alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = ActorCritic(
            options.is_continuous,
            options.observ_dim,
            options.action_dim,
            options.hidden_sizes,
            squash_actions=options.squash_actions,
            normalize_obs=options.normalize_obs,
            log_std_init=options.log_std_init,
            observation_shape=options.observation_shape,
            action_nvec=options.action_nvec,
            num_values=2 if options.use_RND else 1,
            orthogonal_init=options.orthogonal_init,
            activation=options.activation,
            critic_hidden_sizes=options.critic_hidden_sizes,
            observation_parts=options.observation_parts,
        ).to(device)
        rnd = (
            RND(
                options.observ_dim,
                observation_shape=options.observation_shape,
                update_fraction=options.rnd_update_fraction,
            ).to(device)
            if options.use_RND
            else None
        )
    return policy, rnd


class PPOBase(LearnerSettings):
    """A PPO learner's state, built from its checked options (`PPOConfig`), and its public
    methods other than the update: acting, action bounds, export, saving and loading. Not
    made on its own: `PPO` is one, with the update (`learn()`) added."""

    def __init__(
        self, options: PPOConfig, device: str | torch.device | None, num_threads: int | None, seed: int | None
    ):
        self.options = options
        for name in LEARNER_SETTINGS:  # what the learner reads, as its own attributes
            setattr(self, name, getattr(options, name))
        self.device, self.num_threads = place(device, num_threads, self.has_images)
        # A drawn seed stays below 2**30: seeds derived from it (seed + copy index + steps so far)
        # stay within the int32 that some env libraries (EnvPool) require.
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0] % 2**30)
        self.seed = int(seed)
        self.policy, self.rnd = build_networks(options, self.device, self.seed)
        self._policy_parameters = list(self.policy.parameters())
        self.optimizer = torch.optim.Adam(
            self._policy_parameters, lr=self.lr, fused=True, eps=options.adam_eps
        )
        self.reward_scaler = RewardScaler(self.gamma).to(self.device) if self.normalize_reward else None
        # Intrinsic returns never restart at episode ends (Burda et al.) and are not clipped.
        self.intrinsic_scaler = (
            RewardScaler(self.intrinsic_gamma, clip=float("inf"), episodic=False).to(self.device)
            if self.use_RND
            else None
        )
        self.memory = Memory(self.device)
        self.sample_generator = torch.Generator(self.device).manual_seed(self.seed)
        # On the CPU, rollout actions of vector policies are sampled in NumPy (same actions, less
        # overhead per call; see numpy_actor.py). Set to None to sample through torch.
        self.numpy_actor = (
            NumpyActor(self.policy) if self.device.type == "cpu" and not self.has_images else None
        )
        self.shuffle_generator = torch.Generator().manual_seed(self.seed + 1)
        self.samples_learned = 0
        self.stats: dict[str, float] = {}
        self.action_bounds_given = False

    @property
    def config(self) -> dict[str, Any]:
        """The learner's options as a plain JSON-ready dict (`PPOConfig.to_dict`): what the
        weights file and checkpoints hold, and what `PPO(**ppo.config)` rebuilds it from."""
        return self.options.to_dict()

    # ------------------------------------------------------------- acting (PPO/acting.py)
    def set_action_bounds(self, low: ArrayLike, high: ArrayLike) -> None:
        """Maps the policy's Gaussian onto [low, high]: the mean of a fresh policy sits at the
        centre and one std spans half the range. Saved with the weights."""
        if not self.is_continuous:
            raise ValueError("set_action_bounds: this PPO has discrete actions (is_continuous=False)")
        low, high = checked_action_bounds(low, high, self.action_dim)
        self.policy.set_action_bounds(low.to(self.device), high.to(self.device))
        self.action_bounds_given = True

    def get_action(
        self,
        state: np.ndarray | torch.Tensor,
        deterministic: bool = False,
        clip_actions: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """Actions for a batch of states [B, observ_dim] (or one state [observ_dim]).

        Discrete: int64 indices [B]; MultiDiscrete: int64 [B, len(action_nvec)]. Continuous:
        float32 [B, action_dim] in the env's units; sampled actions are not clipped (the
        vectorizer clips what the env receives; the learner scores what was sampled).
        `deterministic=True` returns the most likely action, clipped to the action bounds where
        they are known (an action ready for the env, as for deployment); `clip_actions=False`
        keeps the raw mean. Sampling draws from `generator` (on the learner's device), by
        default the learner's own, which rollouts draw from.
        """
        actions, _, single = self._act(state, deterministic, with_log_probs=False, generator=generator)
        if deterministic and clip_actions and self.is_continuous and self.action_bounds_given:
            actions = np.clip(
                actions, self.policy.action_low.cpu().numpy(), self.policy.action_high.cpu().numpy()
            )
        return actions[0] if single else actions

    def sample_actions(
        self, state: np.ndarray | torch.Tensor, deterministic: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """`get_action(state)`'s actions (unclipped) and their log-probabilities under the
        policy that chose them, float32 [B] (a scalar for one state): what a rollout stores as
        the behaviour policy of PPO's ratio (`Rollout.log_probs`)."""
        actions, maybe_log_probs, single = self._act(state, deterministic, with_log_probs=True)
        log_probs = cast(np.ndarray, maybe_log_probs)  # with_log_probs: an array
        return (actions[0], log_probs[0]) if single else (actions, log_probs)

    def _act(
        self,
        state: np.ndarray | torch.Tensor,
        deterministic: bool,
        with_log_probs: bool,
        generator: torch.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(actions [B, ...], their log-probs [B] or None, whether one state was given)."""
        states, single = check_states(state, self.observation_shape, self.observ_dim)
        generator = self.sample_generator if generator is None else generator
        actions, log_probs = act(
            self.policy, self.numpy_actor, states, self.device, generator, deterministic, with_log_probs
        )
        return actions, log_probs, single

    # -------------------------------------------- export (PPO/export.py), files (PPO/persistence.py)
    def export(self, file: str | Path, format: str = "export", clip_actions: bool = True) -> Path:
        """Writes the policy alone for deployment: raw observations in, the most likely actions
        out, as `get_action(..., deterministic=True)` gives them. `format`: "export" (load with
        `torch.export.load(file).module()`), "torchscript" (`torch.jit.load(file)`) or "onnx"
        (onnxruntime; input "obs", output "actions"; needs `pip install -e .[onnx]`).
        `clip_actions=False` keeps continuous actions unclipped. A policy trained on Discrete,
        MultiDiscrete or MultiBinary observations takes them raw (one-hot inside). See
        PPO/export.py."""
        return export_policy(
            self.policy, file, format, clip_actions and self.action_bounds_given, self.observation_space
        )

    def non_finite_weights(self) -> list[str]:
        """The names of the weights and statistics (as `save_weights` writes them) that hold
        NaN or inf; empty for a healthy learner."""
        return list(non_finite_entries(persistence.weights_state(self)))

    def _anneal_learning_rate(self) -> float:
        """Linear decay from `lr` to 0 over `total_steps` learned samples (with `anneal_lr`)."""
        if not self.anneal_lr:
            return self.lr
        if self.total_steps is None:
            raise ValueError(
                "total_steps: anneal_lr=True needs the number of env steps the "
                "learning rate decays over (AsyncPPO sets it from its steps)"
            )
        lr = self.lr * max(0.0, 1.0 - self.samples_learned / self.total_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _check_finite_after_update(self, losses: dict[str, float]) -> None:
        """Raises NonFiniteError when an update left NaN or inf in the weights or the losses."""
        bad = self.non_finite_weights()
        if not bad and all(math.isfinite(value) for value in losses.values()):
            return
        shown = ", ".join(f"{name}={value:.4g}" for name, value in losses.items())
        raise NonFiniteError(
            f"the update diverged ({shown}; NaN or inf in {bad[:5] or 'no weights yet'}): this "
            f"learner can no longer be trained or saved, and nothing is saved over earlier files. "
            f"Resume from the last checkpoint, e.g. with a lower lr or normalize_reward=True"
        )

    def save_weights(self, path: str | Path) -> None:
        """Writes `Policy_weights.pth` into the directory `path` (created if missing): the policy,
        the observation and reward statistics, the action bounds, the constructor's options and,
        with RND, RND's networks and statistics (entries named `rnd.*`). One file, written
        atomically: a crash mid-save leaves the previous save whole. Raises NonFiniteError, and
        writes nothing, if the learner holds NaN or inf."""
        persistence.save_weights(self, path)

    def load_weights(self: Learner, path: str | Path) -> Learner:
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
