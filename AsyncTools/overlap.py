"""Collecting while learning (`AsyncPPO(..., overlap=True)`): a collector's rounds run one
ahead of the learner (`Collector.start_collect`): in a collector process of their own
(AsyncTools/process_collector.py, what AsyncPPO uses for local backends) or on Ray actors, on
other cores; in a background thread for a collector that acts in this process.

    round k+1 is collected by the acting copy   |   the learner updates on round k
    with the weights published after round k-1  |
    -------------------------- join, publish the new weights ----------------------

The policy lags the learner by one update; PPO's ratio divides by the behaviour log-probs the
collector recorded, so the lag is corrected the way the ratio intends. The hand-off is fixed
(the acting copy changes only between rounds, never while a round is collected), so the same
seeds give the same run whatever the timing.

The acting copy is AsyncTools/acting.py's, as in a collector process and on Ray: for a
collector acting elsewhere it lives there (the weights reach it through `collector.sync`); for
one acting in this process it is built here, on the learner's device, and its weights are
loaded between rounds. While a round is under way, the collector's env copies and the acting
copy are touched only by whatever collects it (the collector process, the Ray workers, or the
background thread); the learner never touches them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from PPO import PPO
from PPO.Memory import Rollout

from .acting import acting_copy, load_into, weights_of
from .collector_base import Collector, PendingRound
from .rollout import EpisodeRound


def local_acting_copy(ppo: PPO) -> PPO:
    """A copy of `ppo`'s policy on its device that acts while `ppo` learns (AsyncTools/acting.py:
    the learner's seed, so it samples from the learner's own stream), holding `ppo`'s weights."""
    acting = acting_copy(ppo.config, ppo.seed, device=ppo.device)
    load_into(acting, weights_of(ppo))
    return acting


class OverlappedCollection:
    """Runs `collector`'s rounds one ahead of the learner `ppo`.

    `next_round()` returns the round collected meanwhile (the first one is collected then and
    there), publishes the learner's current weights to the acting copy (in this process, or,
    through `collector.sync`, to the collector process or the Ray workers) and starts the next
    round with them. An error in that round is raised by the `next_round()` that waits for it.
    `wait()` lets a round under way finish (the next `next_round()` returns it); `close()` waits
    and drops it.
    """

    def __init__(self, collector: Collector, ppo: PPO):
        self.collector = collector
        self.ppo = ppo
        # a collector acting elsewhere (a collector process, Ray) gets the weights by `sync`
        self.acting = local_acting_copy(ppo) if collector.acts_in_this_process else None
        self._pending: PendingRound | None = None

    def next_round(
        self, should_stop: Callable[[], bool] | None = None
    ) -> tuple[Rollout | None, EpisodeRound]:
        """The next round's rollout and EpisodeRound, as `Collector.collect` returns them."""
        if self._pending is None:
            self._start(should_stop)
        pending = cast(PendingRound, self._pending)  # started just above if there was none
        self._pending = None
        collected = pending.result()
        self._publish()
        self._start(should_stop)
        return collected

    def _publish(self) -> None:
        if self.acting is not None:
            load_into(self.acting, weights_of(self.ppo))
        self.collector.sync(self.ppo)

    def _start(self, should_stop: Callable[[], bool] | None) -> None:
        self._pending = self.collector.start_collect(self.acting or self.ppo, should_stop)

    def wait(self) -> None:
        """Waits until no round is being collected (one collected stays for `next_round`)."""
        if self._pending is not None:
            self._pending.wait()

    def close(self) -> None:
        """Waits for a round under way and drops it (with any error it raised)."""
        self.wait()
        self._pending = None
