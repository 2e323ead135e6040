"""Collection loops, written with the same pieces a hand-written loop uses.

Two shapes of collection:
- `collect_episodes`: the original project's episode-synchronous round, one episode in every
  env copy, through the `utils` helpers of the custom loop;
- `FixedHorizonLoop`: every copy steps `num_steps` times per round and keeps going across
  rounds (autoreset); unfinished episodes are bootstrapped at the horizon.

Both act through `policy(states) -> (actions, log_probs)` (`PPO.sample_actions`; log_probs
may be None) and store every step, with the behaviour log-probs, in a `VecMemory`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from PPO.checks import check_positive_int

from . import utils
from .episodes import EpisodeCounter, EpisodeRound, merge_rounds
from .vec_memory import VecMemory
from .vectorizer import EnvVectorizer

ROLLOUTS = ("episodes", "steps")
# states -> (actions, their log-probabilities under the acting policy, or None)
Policy = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def check_rollout(rollout: str) -> str:
    if rollout not in ROLLOUTS:
        raise ValueError(f"rollout must be one of {ROLLOUTS}, got {rollout!r}")
    return rollout


def reported_games(env: EnvVectorizer) -> list[float]:
    """The whole-game returns the env reported at its last step."""
    games = env.last_game_returns
    return [] if games is None else games[np.isfinite(games)].tolist()


EPISODE_STEP_CAP = 10_000  # default cap on one episode in rollout="episodes" rounds and in evaluation


def check_episode_step_cap(cap: int) -> int:
    return check_positive_int("episode_step_cap", cap)


def warn_episode_cut(episodes: str, cap: int) -> None:
    """The message given when `episodes` are cut at the step cap (once per place, as warnings go)."""
    warnings.warn(
        f"{episodes}: still running after episode_step_cap={cap} steps, cut there "
        f"(as a time limit would cut it); pass episode_step_cap= to change "
        f"the cap",
        RuntimeWarning,
        stacklevel=3,
    )


def collect_episodes(
    env: EnvVectorizer,
    buffer: VecMemory,
    policy: Policy,
    *,
    episode_step_cap: int = EPISODE_STEP_CAP,
    should_stop: Callable[[], bool] | None = None,
) -> EpisodeRound:
    """Runs one episode in every env copy, storing every step in `buffer`; returns when all
    episodes are over (the original project's collection).

    An episode still running after `episode_step_cap` steps is cut there (a warning says so),
    and once `should_stop()` turns True every running episode is cut at the step under way
    (a timeout or a stop signal): cut episodes are stored as truncated, so their last state's
    value is bootstrapped. Episodes cut by `should_stop` are not counted as finished."""
    states = env.reset()[0]
    episodes = EpisodeCounter(env.num_envs)
    unfinished = np.zeros(env.num_envs, dtype=bool)
    games: list[float] = []
    while True:
        actions, log_probs = policy(states)
        running = env.active_indices()
        next_states, rewards, terminated, truncated, _ = env.step(actions)
        games += reported_games(env)
        episodes.add(rewards, running)
        ended = terminated | truncated
        cut = (episodes.lengths[running] >= episode_step_cap) & ~ended
        if cut.any():
            warn_episode_cut(f'rollout="episodes", env copies {running[cut].tolist()}', episode_step_cap)
        if should_stop is not None and should_stop():
            unfinished[running[~(ended | cut)]] = True
            cut = ~ended
        dones = ended | cut
        # Cut episodes end like time limits: their last state's value is bootstrapped.
        buffer.append(
            running, states, actions, rewards, terminated, truncated | cut, next_states, log_probs=log_probs
        )
        states = utils.inactive_states_dropout(next_states, dones)
        env.envs_active = utils.update_active_environments_list(env.envs_active, dones)
        if np.all(env.envs_active):
            steps = int(episodes.lengths.sum())
            return EpisodeRound(steps, *episodes.end(~unfinished), np.array(games))


class FixedHorizonLoop:
    """Steps every env copy `num_steps` times per `collect` call, episodes running on across
    calls; a copy whose episode ended is reset on its next step (that row is not stored)."""

    def __init__(self, env: EnvVectorizer):
        self.env = env
        self.states: np.ndarray | None = None
        self.episodes = EpisodeCounter(env.num_envs)  # episodes run on across calls

    def collect(self, buffer: VecMemory, policy: Policy, num_steps: int) -> EpisodeRound:
        if self.states is None:
            self.states = self.env.reset()[0]
        per_step: list[EpisodeRound] = []  # each step's finished episodes and games
        for _ in range(num_steps):
            actions, log_probs = policy(self.states)
            next_states, rewards, terminated, truncated, valid = self.env.step_autoreset(actions)
            buffer.append(
                None,
                self.states,
                actions,
                rewards,
                terminated,
                truncated,
                next_states,
                valid=valid,
                log_probs=log_probs,
            )
            self.episodes.add(rewards[valid], valid)
            per_step.append(
                EpisodeRound(
                    int(np.count_nonzero(valid)),
                    *self.episodes.end(terminated | truncated),
                    np.array(reported_games(self.env)),
                )
            )
            self.states = next_states
        return merge_rounds(per_step)


def random_observations(env: EnvVectorizer, num_steps: int, seed: int | None = None) -> np.ndarray:
    """Observations of `num_steps` uniformly random steps of every copy (from a fresh reset),
    [num_steps * N, *obs_shape]: what RND's input statistics are warmed up with."""
    env.action_space.seed(seed)
    observations = [env.reset()[0]]
    for _ in range(num_steps):
        actions = np.stack([env.action_space.sample() for _ in range(env.num_envs)])
        next_states, _, _, _, valid = env.step_autoreset(actions)
        observations.append(next_states[valid])
    env.reset()
    return np.concatenate(observations)
