"""Settings that learn, chosen by the env: family defaults from the spaces, then a per-env-id
preset from `presets.json` (a plain JSON file shipped with the package).

Families (`FAMILY_DEFAULTS`):
- "discrete": vector observations, discrete actions: the learner's own defaults, tuned on
  CartPole (32 envs x 64 steps, lr 3e-3, 4 epochs of 512).
- "continuous": vector observations, Box actions: CleanRL's ppo_continuous_action.py (8 envs x
  256 steps, lr 3e-4 annealed, 10 epochs of 64, observation and reward normalisation, value
  clipping 0.2). The reward normalisation is PPO's own default, which one place decides: on,
  except with `use_RND=True` (PPO's docstring), so the family does not set it.
- "image": uint8 frames (Atari): CleanRL's ppo_atari.py (8 envs x 128 steps, lr 2.5e-4
  annealed, 4 epochs of 256, clip 0.1, entropy 0.01, value clipping 0.1; rewards are clipped
  to their sign by the Atari stack, so no reward scaling); evaluated with sampled actions.

What the user passes always wins over both; `preset=False` leaves out the per-id table (the
family defaults still apply). A per-id preset that names an option (MountainCar-v0's
`normalize_reward`, measured with and without RND) counts as given, as the user's would.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import gymnasium as gym

from PPO import PPO

FAMILY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "discrete": {"ppo": {}, "runner": {"num_envs": 32, "num_steps": 64, "eval_deterministic": True}},
    "continuous": {
        "ppo": {
            "lr": 3e-4,
            "anneal_lr": True,
            "k_epochs": 10,
            "batch_size": 2048,
            "mini_batch_size": 64,
            "gamma": 0.99,
            "GAE_lambda": 0.95,
            "normalize_obs": True,
            "value_clip": 0.2,
        },  # normalize_reward: PPO's default (off with use_RND)
        "runner": {"num_envs": 8, "num_steps": 256, "eval_deterministic": True},
    },
    "image": {
        "ppo": {
            "lr": 2.5e-4,
            "anneal_lr": True,
            "k_epochs": 4,
            "batch_size": 1024,
            "mini_batch_size": 256,
            "gamma": 0.99,
            "GAE_lambda": 0.95,
            "policy_clip": 0.1,
            "entropy_coef": 0.01,
            "value_clip": 0.1,
            "normalize_reward": False,
        },
        # Sampled actions in evaluation, as RL Zoo evaluates Atari: a deterministic policy can
        # stall a game for good (Breakout waits for FIRE after a lost life).
        "runner": {"num_envs": 8, "num_steps": 128, "eval_deterministic": False},
    },
}


def family(is_continuous: bool, is_image: bool) -> str:
    """'image' for frame observations, else 'continuous' for Box actions, else 'discrete'."""
    return "image" if is_image else "continuous" if is_continuous else "discrete"


def family_defaults(ppo: PPO) -> dict[str, Any]:
    """The runner defaults of the family of envs that `ppo` was built for."""
    return FAMILY_DEFAULTS[family(ppo.is_continuous, ppo.has_images)]["runner"]


@lru_cache(maxsize=1)
def presets() -> dict[str, dict[str, Any]]:
    """The per-env-id table of presets.json (entries: source, ppo, runner)."""
    text = resources.files("AsyncTools").joinpath("presets.json").read_text(encoding="utf-8")
    return {env_id: entry for env_id, entry in json.loads(text).items() if not env_id.startswith("_")}


def env_id_of(env: Any) -> str | None:
    """The registered id of a `gym.make` env or `gym.make_vec` vector env (None for anything
    else)."""
    spec = getattr(env, "spec", None) if isinstance(env, (gym.Env, gym.vector.VectorEnv)) else None
    return None if spec is None else spec.id


def settings_for(env_id: str | None, family_name: str, part: str, preset: bool = True) -> dict[str, Any]:
    """The defaults of `part` ("ppo" or "runner") for an env of `family_name` with id `env_id`:
    the family's, updated with the id's preset when `preset` is True and the table has one."""
    settings = dict(FAMILY_DEFAULTS[family_name][part])
    if preset and env_id in presets():
        settings.update(presets()[env_id][part])
    return settings


RUNNER_OPTIONS = ("num_envs", "num_steps", "eval_deterministic")  # the runner part of an entry


def read_presets_file(
    path: str | Path, env_id: str, ppo_options: Collection[str]
) -> dict[str, dict[str, Any]]:
    """The entry for `env_id` of a presets file (the format of AsyncTools/presets.json, as
    `ppo-tune` writes it): {"ppo": {...}, "runner": {...}}. ValueError, naming the file, when it
    cannot be read or parsed, has no entry for `env_id`, or names an option outside `ppo_options`
    (its "ppo" part) or RUNNER_OPTIONS (its "runner" part), or gives one as null."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--presets {path}: cannot be read ({error})") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"--presets {path}: not valid JSON ({error})") from error
    entries = (
        {key: value for key, value in table.items() if not key.startswith("_")}
        if isinstance(table, dict)
        else {}
    )
    if env_id not in entries:
        raise ValueError(
            f"--presets {path}: no entry for {env_id!r} (the file has: {', '.join(entries) or 'none'})"
        )
    entry = entries[env_id]
    if not isinstance(entry, dict) or set(entry) - {"source", "ppo", "runner"}:
        raise ValueError(
            f"--presets {path}: the {env_id!r} entry must be an object of source, ppo and runner"
        )
    checked: dict[str, dict[str, Any]] = {}
    for part, known in (("ppo", ppo_options), ("runner", RUNNER_OPTIONS)):
        options = entry.get(part, {})
        if not isinstance(options, dict):
            raise ValueError(f"--presets {path}: {env_id!r}.{part} must be an object, got {options!r}")
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"--presets {path}: {env_id!r}.{part} names unknown option(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        nulls = sorted(name for name, value in options.items() if value is None)
        if nulls:
            raise ValueError(f"--presets {path}: {env_id!r}.{part}: {', '.join(nulls)} is null; give a value")
        checked[part] = dict(options)
    return checked
