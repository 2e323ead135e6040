"""When a run stops before its `steps`: a timeout, a stop signal, `stop_at_return`, a callback."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from PPO.checks import check_finite_float

STOP_SIGNALS = ("SIGINT", "SIGTERM")


class StopControl:
    """Why and when a run stops early; `stopped_by` names the first cause, None while it runs on:
    - "timeout": `run(timeout=...)` seconds have passed (`start()` sets the deadline);
    - "SIGINT", "SIGTERM": Ctrl-C or SIGTERM came (see `stop_signals`): the run stops after the
      round under way, a second signal stops it at once; `interrupted` is then True;
    - "stop_at_return": a periodic evaluation's mean return reached `stop_at_return`;
    - "callback": `callback(runner, stats)`, called after every round, returned False.
    An `episodes` round under way when the time is up or a signal comes is cut short: the
    collectors poll `should_stop`."""

    def __init__(self, stop_at_return: float | None, callback: Callable[..., bool | None] | None):
        if callback is not None and not callable(callback):
            raise TypeError(
                f"callback must be a function (runner, stats) -> bool, got {type(callback).__name__}"
            )
        self.stop_at_return, self.callback = stop_at_return, callback
        self.stopped_by: str | None = None
        self.interrupted = False
        self._timeout: float | None = None
        self._deadline: float | None = None

    def start(self, timeout: float | None) -> None:
        """A run starts: no cause yet, and a deadline `timeout` seconds from now (None: none)."""
        self._timeout = timeout
        self._deadline = None if timeout is None else time.perf_counter() + timeout
        self.stopped_by = None

    def stop(self, cause: str) -> None:
        """Stops the run for `cause`, unless it is already stopping for another."""
        self.stopped_by = self.stopped_by or cause

    def should_stop(self) -> bool:
        """True once a stop signal came or the run's timeout has passed."""
        if self.stopped_by is None and self._deadline is not None and time.perf_counter() >= self._deadline:
            self.stopped_by = "timeout"
        return self.stopped_by is not None

    def evaluated(self, mean_return: float) -> None:
        """A periodic evaluation's mean return: reaching `stop_at_return` stops the run."""
        if self.stop_at_return is not None and mean_return >= self.stop_at_return:
            self.stop("stop_at_return")

    def after_round(self, runner: object, stats: Callable[[], dict]) -> None:
        """Calls `callback(runner, stats())` after a round (`runner`: the AsyncPPO, passed on as
        it is): False stops the run."""
        if self.callback is not None and self.callback(runner, stats()) is False:
            self.stop("callback")

    def finish(self) -> None:
        """The run ended: no deadline any more; `interrupted` if a signal stopped it."""
        self._deadline = None
        self.interrupted = self.stopped_by in STOP_SIGNALS

    def message(self, steps: int, run_dir: Path | None) -> str:
        """Why the run stopped, for the progress bar."""
        causes = {
            "timeout": f"stopped by the timeout ({self._timeout or 0:g} s)",
            "callback": "stopped by the callback",
            "stop_at_return": f"stopped: the evaluation return reached stop_at_return={self.stop_at_return:g}"
            if self.stop_at_return is not None
            else "",
        }
        cause = causes.get(self.stopped_by or "", f"interrupted by {self.stopped_by}")
        return f"{cause} at step {steps}" + (
            f"; checkpoint saved in {run_dir}" if run_dir is not None else ""
        )


def check_stop_at_return(stop_at_return: float | None, eval_every: int | None) -> float | None:
    """`stop_at_return` as a float (None stays None); ValueError if it is not a finite number
    or is given without `eval_every` (it stops at a periodic evaluation)."""
    if stop_at_return is None:
        return None
    if eval_every is None:
        raise ValueError(
            "stop_at_return: it stops at a periodic evaluation's mean return, so it "
            "needs eval_every (e.g. eval_every=10_000)"
        )
    return check_finite_float("stop_at_return", stop_at_return)


@contextmanager
def stop_signals(on_signal: Callable[[str], None]) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM call `on_signal(name)` (the run stops after the round
    under way) and a second one raises KeyboardInterrupt at once. Handlers can only be set in
    the main thread; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[str] = []

    def handle(signum: int, _frame: FrameType | None) -> None:
        """The handler of SIGINT and SIGTERM: the first asks for a stop, the second raises."""
        if received:
            raise KeyboardInterrupt(f"second stop signal ({signal.Signals(signum).name})")
        received.append(signal.Signals(signum).name)
        on_signal(received[0])

    previous = {name: signal.signal(getattr(signal, name), handle) for name in STOP_SIGNALS}
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), signal.SIG_DFL if handler is None else handler)
