"""What `ppo-tune` searches: the settings of one trial, per env family, drawn from an Optuna trial.

Every value drawn is valid by construction:
- the rollout (`num_envs * num_steps` steps per round) is a power of two, and so is the number
  of copies, so `num_steps` is a whole number; one update per round (`batch_size` = the rollout);
- the mini-batch is the rollout divided by a power of two no larger than it, so it divides the
  batch evenly and is never larger than it;
- the largest rollout is capped by the training budget (at least `MIN_UPDATES` updates), so a
  trial always learns.

The parameters Optuna records are these draws (`rollout_log2`, `num_envs_log2`, `minibatches_log2`,
...); `settings_from_params` turns them into the presets format ({"ppo": PPO keywords, "runner":
AsyncPPO keywords}), from a draw or from a finished trial's params, and `params_of` goes back: the
params of known settings (today's defaults, say), to queue them as a trial.
"""

from __future__ import annotations

from typing import Any, Protocol

FAMILIES = ("discrete", "continuous", "image")
MIN_UPDATES = 8  # a trial's budget fits at least this many rounds of the largest rollout
NETWORKS = {"small": (64, 64), "medium": (256, 256)}

# (lowest, highest) log2 of the rollout and of the number of copies, per family
ROLLOUT_LOG2 = {"discrete": (8, 14), "continuous": (9, 14), "image": (9, 12)}
NUM_ENVS_LOG2 = {"discrete": (2, 5), "continuous": (0, 4), "image": (3, 4)}
LR_RANGE = {"discrete": (1e-5, 1e-2), "continuous": (1e-5, 3e-3), "image": (1e-5, 1e-3)}
GAMMAS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
GAE_LAMBDAS = (0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)
CLIPS = (0.1, 0.2, 0.3)
EPOCHS = (3, 5, 10, 20)
ENTROPY_RANGE = (1e-8, 0.1)  # drawn on a log scale; its low end stands for no entropy bonus
MINIBATCHES_LOG2 = (0, 6)
ACTIVATIONS = ("tanh", "relu")
SWITCHES = (False, True)


class Trial(Protocol):
    """The part of `optuna.Trial` a search space uses."""

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int) -> int: ...
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def largest_rollout_log2(family: str, steps: int) -> int:
    """The largest rollout (log2) a trial of `steps` env steps may draw: at least MIN_UPDATES
    rounds fit in the budget, and never below the family's smallest rollout."""
    low, high = ROLLOUT_LOG2[family]
    fits = max(steps // MIN_UPDATES, 1).bit_length() - 1
    return max(low, min(high, fits))


def sample(trial: Trial, family: str, steps: int) -> dict[str, dict[str, Any]]:
    """One trial's settings for an env of `family` trained for `steps` env steps, in the presets
    format: {"ppo": PPO keywords, "runner": AsyncPPO keywords}."""
    if family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    low, _ = ROLLOUT_LOG2[family]
    rollout_log2 = trial.suggest_int("rollout_log2", low, largest_rollout_log2(family, steps))
    params: dict[str, Any] = {
        "rollout_log2": rollout_log2,
        "num_envs_log2": trial.suggest_int("num_envs_log2", *NUM_ENVS_LOG2[family]),
        "minibatches_log2": trial.suggest_int("minibatches_log2", *MINIBATCHES_LOG2),
        "lr": trial.suggest_float("lr", *LR_RANGE[family], log=True),
        "k_epochs": trial.suggest_categorical("k_epochs", EPOCHS),
        "gamma": trial.suggest_categorical("gamma", GAMMAS),
        "GAE_lambda": trial.suggest_categorical("GAE_lambda", GAE_LAMBDAS),
        "policy_clip": trial.suggest_categorical("policy_clip", CLIPS),
        "entropy_coef": trial.suggest_float("entropy_coef", *ENTROPY_RANGE, log=True),
        "anneal_lr": trial.suggest_categorical("anneal_lr", SWITCHES),
    }
    if family != "image":  # the CNN and the frames' scaling are fixed
        params["network"] = trial.suggest_categorical("network", tuple(NETWORKS))
        params["activation"] = trial.suggest_categorical("activation", ACTIVATIONS)
        params["normalize_obs"] = trial.suggest_categorical("normalize_obs", SWITCHES)
        params["normalize_reward"] = trial.suggest_categorical("normalize_reward", SWITCHES)
    return settings_from_params(params)


def settings_from_params(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The presets-format settings of a trial's params (as `sample` draws them, or as Optuna
    stores them). The copies are capped so that each steps at least 8 times per round."""
    rollout = 2 ** params["rollout_log2"]
    num_envs = 2 ** min(params["num_envs_log2"], params["rollout_log2"] - 3)
    mini_batch = rollout // 2 ** min(params["minibatches_log2"], params["rollout_log2"])
    ppo = {
        name: params[name]
        for name in ("lr", "k_epochs", "gamma", "GAE_lambda", "policy_clip", "entropy_coef", "anneal_lr")
    }
    ppo.update(batch_size=rollout, mini_batch_size=mini_batch)
    if "network" in params:
        ppo["hidden_sizes"] = list(NETWORKS[params["network"]])
        for name in ("activation", "normalize_obs", "normalize_reward"):
            ppo[name] = params[name]
    return {"ppo": ppo, "runner": {"num_envs": num_envs, "num_steps": rollout // num_envs}}


def params_of(settings: dict[str, dict[str, Any]], family: str, steps: int) -> dict[str, Any]:
    """The params `sample` would have drawn for `settings` (the presets format, with every option
    the family's search space draws), for a study of `steps` env steps: known settings (today's
    defaults) queued as a trial. No entropy bonus (0) is the range's low end, 1e-8. ValueError
    naming the first setting that lies outside the search space."""
    ppo, runner = settings["ppo"], settings["runner"]
    rollout = runner["num_envs"] * runner["num_steps"]
    if ppo["batch_size"] != rollout:
        raise ValueError(
            f"batch_size={ppo['batch_size']}: the search space updates once a round, on a batch of "
            f"num_envs x num_steps = {rollout}"
        )
    rollout_log2 = _log2(
        "num_envs x num_steps", rollout, ROLLOUT_LOG2[family][0], largest_rollout_log2(family, steps)
    )
    if ppo["mini_batch_size"] <= 0 or rollout % ppo["mini_batch_size"]:
        raise ValueError(f"mini_batch_size={ppo['mini_batch_size']}: does not divide the batch of {rollout}")
    params: dict[str, Any] = {
        "rollout_log2": rollout_log2,
        "num_envs_log2": _log2("num_envs", runner["num_envs"], *NUM_ENVS_LOG2[family]),
        "minibatches_log2": _log2(
            "batch_size / mini_batch_size", rollout // ppo["mini_batch_size"], *MINIBATCHES_LOG2
        ),
        "lr": _within("lr", ppo["lr"], LR_RANGE[family]),
        "k_epochs": _choice("k_epochs", ppo["k_epochs"], EPOCHS),
        "gamma": _choice("gamma", ppo["gamma"], GAMMAS),
        "GAE_lambda": _choice("GAE_lambda", ppo["GAE_lambda"], GAE_LAMBDAS),
        "policy_clip": _choice("policy_clip", ppo["policy_clip"], CLIPS),
        "entropy_coef": _within("entropy_coef", ppo["entropy_coef"] or ENTROPY_RANGE[0], ENTROPY_RANGE),
        "anneal_lr": _choice("anneal_lr", ppo["anneal_lr"], SWITCHES),
    }
    if family != "image":
        networks = {sizes: name for name, sizes in NETWORKS.items()}
        params["network"] = networks[_choice("hidden_sizes", tuple(ppo["hidden_sizes"]), tuple(networks))]
        for name, choices in (
            ("activation", ACTIVATIONS),
            ("normalize_obs", SWITCHES),
            ("normalize_reward", SWITCHES),
        ):
            params[name] = _choice(name, ppo[name], choices)
    return params


def _log2(name: str, value: int, low: int, high: int) -> int:
    """log2 of `value`, a power of two from 2**low to 2**high; ValueError naming `name` else."""
    if not (
        isinstance(value, int)
        and value > 0
        and value & (value - 1) == 0
        and low <= value.bit_length() - 1 <= high
    ):
        raise ValueError(
            f"{name}={value!r}: outside the search space (a power of two from {2**low} to {2**high})"
        )
    return value.bit_length() - 1


def _within(name: str, value: float, bounds: tuple[float, float]) -> float:
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name}={value!r}: outside the search space ({bounds[0]:g} to {bounds[1]:g})")
    return value


def _choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):  # 1 is not True
        raise ValueError(f"{name}={value!r}: outside the search space ({', '.join(map(str, choices))})")
    return value
