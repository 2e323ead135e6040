"""Episodes and games, counted one way by every collection loop, evaluation and Ray.

- `EpisodeCounter`: the return and length of the episode under way in each of N env copies;
  `add` counts a step, `end` hands back finished episodes and starts those copies from 0.
- `game_returns`: the whole-game scores a RecordEpisodeStatistics reported in a step's infos
  (Atari: the real, unclipped score of a game of several lives).
- `EpisodeRound`: what a round collected; `merge_rounds` joins rounds (or steps) in order.

Which steps count and when an episode ends stay the caller's: the episode-synchronous round
adds its running copies and ends every finished one when the round is over; the fixed-horizon
loop adds the valid rows (not the autoreset rows) and ends episodes at every termination or
truncation; evaluation ends an episode at the end of a whole game when the env reports games,
playing on through lost lives (their steps count in the one episode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALL = slice(None)  # `EpisodeCounter.add`'s default: every copy


class EpisodeCounter:
    """The return (`returns`, float64) and length (`lengths`, int64) of the episode under way
    in each of `num_envs` env copies.

    Rewards are added as they are given, in float64: the vectorizer's float32 rewards and an
    env's own Python floats (evaluation) add up exactly as in a float64 sum of them."""

    def __init__(self, num_envs: int):
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def add(self, rewards: Any, indices: Any = ALL) -> None:
        """Counts one step of the copies `indices` (an index array or a bool mask; every copy
        by default) with their `rewards` (one per copy counted, or one for all)."""
        self.returns[indices] += rewards
        self.lengths[indices] += 1

    def end(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ends the episodes of the copies `indices` (an index array or a bool mask): returns
        their (returns, lengths), in the order of `indices`; those copies count from 0 again."""
        returns, lengths = self.returns[indices].copy(), self.lengths[indices].copy()
        self.returns[indices] = 0.0
        self.lengths[indices] = 0
        return returns, lengths


def game_returns(infos: Any, indices: np.ndarray) -> np.ndarray | None:
    """The whole-game returns that gymnasium's RecordEpisodeStatistics reported in `infos`
    (its `info["episode"]["r"]`), one per copy in `indices` (NaN for copies that reported
    none), or None if none did. Inside life-loss and reward-clipping wrappers, as the Atari
    helper puts it, that is the real, unclipped score of a game of several lives.

    `infos` is a list of per-copy dicts (loop backend, copies `indices`; one env: `[info]`) or
    gymnasium's dict of arrays over all copies, with the `_episode` mask (vector env backends)."""
    if isinstance(infos, dict):
        if "episode" not in infos:
            return None
        reported = np.where(infos["_episode"], infos["episode"]["r"], np.nan)[indices]
        return reported.astype(np.float64) if np.isfinite(reported).any() else None
    ended = [row for row, info in enumerate(infos) if "episode" in info]
    if not ended:
        return None
    reported = np.full(len(indices), np.nan)
    for row in ended:
        reported[row] = float(infos[row]["episode"]["r"])
    return reported


@dataclass
class EpisodeRound:
    """What one round collected: its env steps, the episodes that finished in it and the
    whole-game returns the env reported (`game_returns`; Atari: real scores)."""

    steps: int
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    game_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))


def merge_rounds(rounds: list[EpisodeRound]) -> EpisodeRound:
    """One EpisodeRound from several (Ray's workers', or one per step of a fixed-horizon
    round): steps added up, episodes and games in order; returns and game returns float64,
    lengths int64."""
    returns = [r.episode_returns for r in rounds] or [np.zeros(0)]
    lengths = [r.episode_lengths for r in rounds] or [np.zeros(0, dtype=np.int64)]
    games = [r.game_returns for r in rounds] or [np.zeros(0)]
    return EpisodeRound(
        sum(r.steps for r in rounds),
        np.concatenate(returns).astype(np.float64),
        np.concatenate(lengths).astype(np.int64),
        np.concatenate(games).astype(np.float64),
    )
