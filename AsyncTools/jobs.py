"""Several runs as separate processes, at most `jobs` at a time: `train.py --seeds ... --jobs J`
and `ppo-tune --jobs J` start their runs and workers through `run_processes`.

Each process is a fresh interpreter (`python -m MODULE ARGS`), so it chooses its own torch thread
count and its own signal handling: Ctrl-C in the terminal reaches every process of the group, each
run saves its checkpoint and stops, and `run_processes` waits for them and returns their exit
statuses. Nothing new is started after an interrupt; a SIGTERM to this process is passed on to
the running ones.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

POLL_SECONDS = 0.2


def check_jobs(jobs: int, what: str = "--jobs") -> int:
    """`jobs` if it is a positive whole number, else ValueError naming `what`."""
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"{what}: expected a positive number of processes, got {jobs!r}")
    return jobs


def run_processes(
    module: str, argvs: Sequence[Sequence[str]], jobs: int, env: dict[str, str] | None = None
) -> list[int | None]:
    """Runs `python -m module argv` for every argv, at most `jobs` at a time (with `env` added
    to this process's environment), and returns each one's exit status, in the order given
    (None for those never started after an interrupt)."""
    check_jobs(jobs)
    codes: list[int | None] = [None] * len(argvs)
    running: dict[int, subprocess.Popen] = {}
    waiting = list(range(len(argvs)))

    def forward(signum: int, _frame: object) -> None:  # SIGTERM: passed on, nothing new starts
        waiting.clear()
        for process in running.values():
            process.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                index = waiting.pop(0)
                running[index] = subprocess.Popen(
                    [sys.executable, "-m", module, *argvs[index]], env=_env(env)
                )
            for index, process in list(running.items()):
                if process.poll() is not None:
                    codes[index] = exit_status(process.returncode)
                    del running[index]
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:  # the children got the same SIGINT from the terminal: they stop
        for index, process in running.items():
            codes[index] = exit_status(_wait_after_interrupt(process))
    finally:
        signal.signal(signal.SIGTERM, previous)
    return codes


def exit_status(returncode: int) -> int:
    """A child's exit status as a shell reports it: 128 + the signal's number for one killed by a
    signal (Popen's negative return code), else as it is."""
    return 128 - returncode if returncode < 0 else returncode


def _wait_after_interrupt(process: subprocess.Popen) -> int:
    """Waits for a child that received the terminal's Ctrl-C to save and stop; a second Ctrl-C
    passes on to it (it stops at once)."""
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            process.send_signal(signal.SIGINT)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment with `extra`, and the project importable from the children."""
    env = {**os.environ, **(extra or {})}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def combined_exit_code(codes: Sequence[int | None]) -> int:
    """One exit status for several runs: 0 if all ended by themselves, 130/143 if any was
    stopped by a signal (or never started after one), else the first error's status."""
    started = [code for code in codes if code is not None]
    for signalled in (130, 143):
        if signalled in started:
            return signalled
    if len(started) < len(codes):
        return 130
    return next((code for code in started if code != 0), 0)
