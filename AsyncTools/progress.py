"""The progress bar of an AsyncPPO run: steps, the mean return and the learner's statistics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

STATS_SHOWN = {
    "policy_loss": ("pi", ".3f"),
    "value_loss": ("v", ".3g"),
    "entropy": ("ent", ".3f"),
    "approx_kl": ("kl", ".4f"),
    "clip_fraction": ("clip", ".2f"),
    "explained_variance": ("ev", ".2f"),
    "intrinsic_reward": ("int", ".3g"),
}


def format_stats(stats: dict[str, float]) -> str:
    """The learner's last statistics, short, for the progress bar."""
    return " ".join(
        f"{short}={stats[name]:{spec}}" for name, (short, spec) in STATS_SHOWN.items() if name in stats
    )


def steps_bar(steps: int, done: int, shown: bool = True) -> tqdm:
    """The run's progress bar, counting env steps: `steps` in all, `done` of them already (a
    resumed run's); hidden unless `shown`."""
    return tqdm(total=steps, initial=min(done, steps), unit="step", disable=not shown, dynamic_ncols=True)


def show_progress(
    pbar: tqdm,
    new_steps: int,
    recent_returns: Sequence[float],
    stats: dict[str, float],
    eval_return: float | None,
) -> None:
    """Advances the bar by `new_steps` env steps and shows the mean of `recent_returns`, the
    last periodic evaluation's return (None: none yet) and the learner's `stats`."""
    if recent_returns:
        pbar.set_description(f"Mean reward {np.mean(recent_returns): .1f}", refresh=False)
    if stats:
        shown = format_stats(stats)
        if eval_return is not None:
            shown = f"eval={eval_return:.1f} " + shown
        pbar.set_postfix_str(shown, refresh=False)
    pbar.update(min(pbar.total - pbar.n, new_steps))
