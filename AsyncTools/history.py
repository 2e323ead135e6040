"""A run's history: every finished episode and every whole game, kept as one record store that
is extended, saved in the checkpoint and restored as one."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .rollout import EpisodeRound


class Records:
    """A table kept as named columns of equal length (plain lists, so that a column read from it
    stays the same list as rows are added). In a checkpoint each column is one tensor, under
    `prefix + name`."""

    def __init__(self, prefix: str, **dtypes: torch.dtype):
        self.prefix, self.dtypes = prefix, dtypes
        self.columns: dict[str, list] = {name: [] for name in dtypes}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def add(self, **values: Sequence) -> None:
        """Appends rows: one sequence for every column, all of the same length."""
        if set(values) != set(self.dtypes) or len({len(column) for column in values.values()}) > 1:
            lengths = {name: len(column) for name, column in values.items()}
            raise ValueError(
                f"{self.prefix}records: one sequence of the same length for each of "
                f"{list(self.dtypes)}, got lengths {lengths}"
            )
        for name, column in values.items():
            self.columns[name].extend(column)

    def rows(self, *names: str, start: int = 0) -> list[tuple]:
        """The rows from `start` on, as tuples of the `names` columns."""
        return list(zip(*(self.columns[name][start:] for name in names), strict=True))

    def state(self) -> dict[str, torch.Tensor]:
        return {
            self.prefix + name: torch.tensor(self.columns[name], dtype=dtype)
            for name, dtype in self.dtypes.items()
        }

    def load_state(self, state: dict) -> None:
        """Restores the columns saved by `state()`, in place; a column missing from `state` (a
        checkpoint written before it existed) is empty."""
        for name, column in self.columns.items():
            column[:] = state.get(self.prefix + name, torch.zeros(0)).tolist()


class RunHistory:
    """Every finished episode (return, length, the env step count at the end of its round) and
    every whole game the env reported (Atari through the helper: the real, unclipped score of a
    game of several lives; where there are any, they are the run's headline returns). Saved in
    the checkpoint's runner entry as five tensors, `episode_returns`, `episode_lengths`,
    `episode_end_steps`, `game_returns` and `game_end_steps`, the keys of every checkpoint
    format so far (the game ones absent from the oldest)."""

    def __init__(self, state: dict | None = None):
        """An empty history, or the one saved by `state()` (a checkpoint's runner entry)."""
        self.episodes = Records("episode_", returns=torch.float64, lengths=torch.int64, end_steps=torch.int64)
        self.games = Records("game_", returns=torch.float64, end_steps=torch.int64)
        if state is not None:
            self.load_state(state)

    def add_round(self, collected: EpisodeRound, total_steps: int) -> None:
        """Records the episodes and games that ended in `collected`, a round that brought the
        run to `total_steps` env steps."""
        returns = collected.episode_returns.tolist()
        self.episodes.add(
            returns=returns,
            lengths=collected.episode_lengths.tolist(),
            end_steps=[total_steps] * len(returns),
        )
        games = collected.game_returns.tolist()
        self.games.add(returns=games, end_steps=[total_steps] * len(games))

    def mark(self) -> tuple[int, int]:
        """How many episodes and games there are now: `since` for `episode_ends`/`game_ends`."""
        return len(self.episodes), len(self.games)

    def episode_ends(self, since: tuple[int, int] = (0, 0)) -> list[tuple[int, float, int]]:
        """(end step, return, length) of the episodes recorded after the `since` mark."""
        return self.episodes.rows("end_steps", "returns", "lengths", start=since[0])

    def game_ends(self, since: tuple[int, int] = (0, 0)) -> list[tuple[int, float]]:
        """(end step, return) of the games recorded after the `since` mark."""
        return self.games.rows("end_steps", "returns", start=since[1])

    def recent_returns(self, count: int) -> list[float]:
        """The last `count` whole games where the env reports games, else the last `count`
        episodes."""
        return (self.games.columns["returns"] or self.episodes.columns["returns"])[-count:]

    def state(self) -> dict[str, torch.Tensor]:
        """The history as tensors (a checkpoint stays loadable with weights_only=True)."""
        return {**self.episodes.state(), **self.games.state()}

    def load_state(self, state: dict) -> None:
        """Restores the history saved by `state()` (in a checkpoint's runner entry)."""
        self.episodes.load_state(state)
        self.games.load_state(state)
