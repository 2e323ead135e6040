"""The run folder: what a training run leaves behind besides its weights.

progress.csv        one row per round: steps, time, speed, mean return, evaluation return (on
                    rounds with a periodic evaluation), the learner's statistics
episodes.csv        one row per finished episode: the step it ended at, its return and length
games.csv           one row per whole game, where the env reports games (Atari through the
                    helper: the real, unclipped score; then also the headline mean_return)
events.out.tfevents TensorBoard scalars, when the `tensorboard` package is installed
learning_curve.png  episode returns over steps, written by `close()` (needs matplotlib)
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

PROGRESS_FIELDS = (
    "steps",
    "seconds",
    "steps_per_second",
    "episodes",
    "mean_return",
    "eval_return",
    "mean_episode_return",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "learning_rate",
    "intrinsic_reward",
    "rnd_loss",
)
EPISODE_FIELDS = ("steps", "return", "length")
GAME_FIELDS = ("steps", "return")


class RunLogger:
    """Appends to the CSV files of `run_dir` (created if missing; a resumed run goes on in the
    same files) and mirrors the progress rows to TensorBoard where it is installed."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        with _naming_write_errors(self.run_dir):
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._progress = self._open_csv("progress.csv", PROGRESS_FIELDS)
            self._episodes = self._open_csv("episodes.csv", EPISODE_FIELDS)
            self._tensorboard = _tensorboard_writer(self.run_dir)
        games = self.run_dir / "games.csv"
        self._games = self._open_csv("games.csv", GAME_FIELDS) if games.exists() else None

    def _open_csv(self, name: str, fields: Sequence[str]) -> tuple[TextIO, csv.DictWriter[str]]:
        """Opens `name` for appending; a file begun by an earlier version keeps its own columns."""
        file = self.run_dir / name
        new = not file.exists() or file.stat().st_size == 0
        if not new:
            with open(file, newline="") as existing:
                fields = next(csv.reader(existing), []) or fields
        handle = open(file, "a", newline="")
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        return handle, writer

    def log_round(
        self,
        steps: int,
        seconds: float,
        stats: dict[str, float],
        recent_returns: Sequence[float],
        episode_ends: Sequence[tuple[int, float, int]],
        total_episodes: int,
        *,
        eval_return: float | None = None,
        recent_episode_returns: Sequence[float] | None = None,
        game_ends: Sequence[tuple[int, float]] = (),
    ) -> None:
        """One progress row (the mean of `recent_returns`, the periodic evaluation's mean return
        if this round had one, the mean of `recent_episode_returns` where the headline returns
        are whole games, the learner's `stats`), one episodes.csv row for each (end step,
        return, length) in `episode_ends` and one games.csv row for each (end step, return) in
        `game_ends`; flushed, so a crash loses nothing."""
        row = dict(
            stats,
            steps=steps,
            seconds=round(seconds, 3),
            steps_per_second=round(steps / seconds, 1) if seconds > 0 else "",
            episodes=total_episodes,
            mean_return=_mean(recent_returns),
            eval_return="" if eval_return is None else eval_return,
            mean_episode_return=_mean(recent_episode_returns or recent_returns),
        )
        with _naming_write_errors(self.run_dir / "progress.csv"):
            handle, writer = self._progress
            writer.writerow(row)
            handle.flush()
        with _naming_write_errors(self.run_dir / "episodes.csv"):
            handle, writer = self._episodes
            writer.writerows({"steps": s, "return": r, "length": n} for s, r, n in episode_ends)
            handle.flush()
        if game_ends:
            with _naming_write_errors(self.run_dir / "games.csv"):
                if self._games is None:
                    self._games = self._open_csv("games.csv", GAME_FIELDS)
                handle, writer = self._games
                writer.writerows({"steps": s, "return": r} for s, r in game_ends)
                handle.flush()
        if self._tensorboard is not None:
            with _naming_write_errors(Path(self._tensorboard.get_logdir())):
                for name in PROGRESS_FIELDS[1:]:
                    if isinstance(row.get(name), (int, float)):
                        self._tensorboard.add_scalar(name, row[name], steps)

    def close(self) -> Path | None:
        """Closes the files and writes learning_curve.png; returns its path (None without
        matplotlib or episodes)."""
        try:
            for handle, _ in filter(None, (self._progress, self._episodes, self._games)):
                handle.close()
            if self._tensorboard is not None:
                self._tensorboard.close()
            games = self._games is not None
            return plot_learning_curve(
                self.run_dir / ("games.csv" if games else "episodes.csv"),
                self.run_dir / "learning_curve.png",
                label="game score" if games else "episode return",
            )
        except OSError as error:  # the rows were flushed as they came; this must not hide how the run ended
            warnings.warn(f"closing the run folder {self.run_dir}: {error}", RuntimeWarning, stacklevel=2)
            return None


@contextmanager
def _naming_write_errors(file: Path) -> Iterator[None]:
    """Re-raises a failed write (a full disk: ENOSPC) as an OSError that names `file`."""
    try:
        yield
    except OSError as error:
        raise OSError(
            error.errno, f"could not write {file} ({error.strerror or error})", str(file)
        ) from error


def _tensorboard_writer(run_dir: Path) -> SummaryWriter | None:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: CSV only
        return None
    return SummaryWriter(log_dir=str(run_dir))


def _mean(values: Sequence[float] | None) -> float | str:
    return float(np.mean(values)) if values else ""


def plot_learning_curve(
    episodes_csv: Path, png: Path, window: int = 32, label: str = "episode return"
) -> Path | None:
    """Returns over env steps from a CSV of (steps, return) rows (episodes.csv or games.csv),
    with their running mean over `window` rows."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    with open(episodes_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return None
    steps = np.array([float(row["steps"]) for row in rows])
    returns = np.array([float(row["return"]) for row in rows])
    running = np.convolve(returns, np.ones(window), "valid") / window if len(returns) >= window else returns
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, returns, ".", markersize=2, alpha=0.3, label=label)
    axis.plot(steps[len(steps) - len(running) :], running, label=f"mean of {min(window, len(returns))}")
    axis.set_xlabel("env steps")
    axis.set_ylabel("return")
    axis.legend()
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return png
