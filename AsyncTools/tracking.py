"""`train.py --track`: a run's scalars, settings and learning curve sent to Weights & Biases.

The run's settings (train_args.json's values) are the W&B config; after every round the learner's
statistics and the run's counters (`AsyncPPO.round_stats`: steps, mean_return, eval_return when
evaluated, losses...) are logged at the env step; at the end the learning curve image
(learning_curve.png, when matplotlib drew it) and any videos in the run folder are attached. Offline
(`WANDB_MODE=offline`) the run is kept under the run folder's wandb/ and can be sent later with
`wandb sync`.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType
from typing import Any

EXTRA = "pip install -e .[track]"  # what brings wandb


def import_wandb() -> ModuleType:
    """The wandb module, or ImportError with one line naming the extra to install."""
    try:
        return importlib.import_module("wandb")
    except ImportError as error:
        message = f"--track needs Weights & Biases (wandb), which is not installed: {EXTRA}"
        raise ImportError(message) from error


class TrackingError(RuntimeError):
    """W&B could not start the run (not logged in, no network, a bad project or entity)."""


class WandbTracker:
    """One W&B run for one training run: `log_round` is an AsyncPPO callback, `finish` ends it."""

    def __init__(
        self, run_dir: Path, settings: dict[str, Any], project: str | None = None, entity: str | None = None
    ):
        self.wandb = import_wandb()
        self.run_dir = Path(run_dir)
        try:
            self.run = self.wandb.init(
                project=project or "parallel-ppo",
                entity=entity,
                name=self.run_dir.name,
                config=settings,
                dir=str(self.run_dir),
                reinit="finish_previous",
            )
        except Exception as error:  # wandb's errors have no common base class across releases
            raise TrackingError(
                f"--track: W&B could not start the run ({type(error).__name__}: {error}); log in with "
                f"`wandb login`, or set WANDB_MODE=offline to keep it in the run folder"
            ) from error

    def log_round(self, runner: object, stats: dict[str, Any]) -> None:
        """Logs a round's finite scalars at its env step (an AsyncPPO callback: never stops it)."""
        scalars = {
            name: value
            for name, value in stats.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        }
        self.run.log(scalars, step=int(stats["steps"]))

    def finish(self) -> None:
        """Attaches the learning curve and the videos of the run folder, and ends the W&B run."""
        curve = self.run_dir / "learning_curve.png"
        if curve.is_file():
            self.run.log({"learning_curve": self.wandb.Image(str(curve))})
        for video in sorted(self.run_dir.rglob("*.mp4")):
            self.run.log({f"video/{video.stem}": self.wandb.Video(str(video))})
        self.run.finish()
