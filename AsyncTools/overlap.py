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

The collector's env copies, and the acting copy, are touched only by the background thread
while a round is under way; the learner never touches them.
"""
from __future__ import annotations

from typing import Callable

import torch

from PPO import PPO
from PPO.Memory import Rollout

from .collectors import Collector, PendingRound
from .rollout import EpisodeRound


def acting_copy(ppo: PPO) -> PPO:
    """A PPO of the same structure that acts while `ppo` learns (its weights set by `publish`)."""
    threads = {"num_threads": torch.get_num_threads()} if ppo.device.type == "cpu" else {}
    acting = PPO(**ppo.config, device=ppo.device, seed=ppo.seed, **threads)
    publish(ppo, acting)
    return acting


@torch.no_grad()
def publish(learner: PPO, acting: PPO) -> None:
    """Copies the learner's policy (weights, observation statistics, action bounds) into the
    acting copy."""
    acting.policy.load_state_dict(learner.policy.state_dict())
    if acting.numpy_actor is not None:
        acting.numpy_actor.refresh()


class OverlappedCollection:
    """Runs `collector`'s rounds one ahead of the learner `ppo`.

    `next_round()` returns the round collected in the background (the first one is collected
    then and there), publishes the learner's current weights to the acting copy (and, through
    `collector.sync`, to remote workers) and starts the next round with them. An error in the
    background round is raised by the `next_round()` that waits for it. `wait()` lets a round
    under way finish (the next `next_round()` returns it); `close()` waits and drops it.
    """

    def __init__(self, collector: Collector, ppo: PPO):
        self.collector = collector
        self.ppo = ppo
        # a collector acting elsewhere (a collector process, Ray) gets the weights by `sync`
        self.acting = acting_copy(ppo) if collector.acts_in_this_process else None
        self._pending: PendingRound | None = None

    def next_round(self, should_stop: Callable[[], bool] | None = None
                   ) -> tuple[Rollout | None, EpisodeRound]:
        """The next round's rollout and EpisodeRound, as `Collector.collect` returns them."""
        if self._pending is None:
            self._start(should_stop)
        pending, self._pending = self._pending, None
        collected = pending.result()
        self._publish()
        self._start(should_stop)
        return collected

    def _publish(self) -> None:
        if self.acting is not None:
            publish(self.ppo, self.acting)
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
