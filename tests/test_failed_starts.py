"""Issue 26, items 3 and 4: a start that fails leaves no process behind, and a copy that cannot
be built gives one short error on every backend.

Whatever fails while the copies' processes start (subprocess workers, the collector process of
`overlap=True`, Ray actors): an env constructor raising in one copy or in all, a worker dying
while it starts, copies with different spaces, a configuration the runner refuses. Every
process started so far is ended before the error reaches the caller, and an env constructor
that raises is reported in one first line naming the copy, where it was made and the env's
exception type and message, with no terminal colour codes, the original error chained where
the backend can.

The envs fail only outside the test's process (as a simulator refusing a second connection
would), so that the runner's own probes here succeed and the copies in other processes fail.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import os
import re
import time

import gymnasium as gym
import numpy as np
import pytest

from AsyncTools.AsyncPPO import AsyncPPO, ppo_for_env
from AsyncTools.vectorizer import EnvStepError
from tests.user_envs import BrokenCorridor, Corridor

REFUSED = "ConnectionRefusedError: simulator at port 9000 refused the connection"
_calls_here = itertools.count()  # env constructions in this process (copied into forked ones)


def _copy_one_fails(test_pid: int, counted: bool) -> bool:
    """True for env copy 1 outside the test's process: in a subprocess worker, the one
    gymnasium names '...-1'; elsewhere (the collector process, a Ray worker), with `counted`,
    the second env that process makes."""
    if os.getpid() == test_pid:
        return False
    name = multiprocessing.current_process().name
    if name.startswith("Worker<"):
        return name.endswith("-1")
    return counted and next(_calls_here) == 1


class CopyOneBroken(Corridor):
    """A Corridor whose copy 1 cannot connect to its simulator (see `_copy_one_fails`)."""

    def __init__(self, test_pid: int, counted: bool = True):
        if _copy_one_fails(test_pid, counted):
            raise ConnectionRefusedError("simulator at port 9000 refused the connection")
        super().__init__()


class CopyOneCrashes(Corridor):
    """A Corridor whose copy 1 ends its process in its constructor (a crash in native code)."""

    def __init__(self, test_pid: int):
        if _copy_one_fails(test_pid, counted=False):
            os._exit(3)
        super().__init__()


class CopyOneWider(Corridor):
    """A Corridor whose copy 1 has a wider observation space than the others."""

    def __init__(self, test_pid: int):
        super().__init__()
        if _copy_one_fails(test_pid, counted=False):
            self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(9,), dtype=np.float32)


def corridor_ppo():
    return ppo_for_env(Corridor(), seed=0, device="cpu", batch_size=64, mini_batch_size=32, k_epochs=1)


def refused_ppo():
    """A learner for 4-number observations: the runner refuses it for the Corridor (8)."""
    return ppo_for_env(
        gym.make("CartPole-v1"), seed=0, device="cpu", batch_size=64, mini_batch_size=32, k_epochs=1
    )


# ---------------------------------------------------------------- counting processes
def _stat(pid: str) -> tuple[str, int, int] | None:
    """(state, parent, process group) of process `pid`, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _is_ray(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            command = file.read().decode(errors="replace")
    except OSError:
        return False
    return "ray" in command


def processes_of_this_test() -> set[str]:
    """Live (not zombie) processes that this one started, Ray's own excepted: its descendants,
    and the processes of its group whose parent ended (orphans, adopted outside the group)."""
    stats = {pid: _stat(pid) for pid in os.listdir("/proc") if pid.isdigit()}
    stats = {int(pid): stat for pid, stat in stats.items() if stat is not None}
    me, group = os.getpid(), os.getpgid(0)

    def ours(pid: int) -> bool:
        seen = set()
        while pid in stats and pid not in seen:
            seen.add(pid)
            state, parent, pid_group = stats[pid]
            if parent == me:
                return True
            if pid_group == group and (parent not in stats or stats[parent][2] != group):
                return True  # an orphan of this group
            pid = parent
        return False

    return {
        str(pid)
        for pid, (state, _, _) in stats.items()
        if pid != me and state != "Z" and ours(pid) and not _is_ray(str(pid))
    }


def live_children() -> set[str]:
    """This process's live (not zombie) children, from /proc."""
    children = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            with open(f"/proc/{os.getpid()}/task/{task}/children") as file:
                children.update(file.read().split())
        except OSError:
            continue
    return {pid for pid in children if (_stat(pid) or ("Z",))[0] != "Z"}


@pytest.fixture
def no_process_left():
    """Fails the test if a process it started (a child, or a child's child) is still running
    after it; checked right after the error (call the fixture's value) and at the end."""
    before_group, before_children = processes_of_this_test(), live_children()

    def check() -> None:
        left = (processes_of_this_test() - before_group) | (live_children() - before_children)
        assert not left, (
            f"processes left running: {sorted(left)}; active_children: {multiprocessing.active_children()}"
        )

    yield check
    check()


def start_failure(make_runner) -> BaseException:
    """The error of building the runner and training its first round (a backend may find a
    copy that cannot be built at either)."""
    with pytest.raises(Exception) as info:
        runner = make_runner()
        runner.train_round()
    return info.value


def first_line(error: BaseException) -> str:
    return str(error).splitlines()[0]


# ---------------------------------------------------------------- subprocess workers
@pytest.mark.slow
def test_subprocess_one_copy_that_cannot_be_built(no_process_left):
    error = start_failure(
        lambda: AsyncPPO(
            functools.partial(CopyOneBroken, os.getpid()),
            corridor_ppo(),
            num_envs=3,
            num_steps=8,
            backend="subprocess",
            progress_bar=False,
        )
    )
    no_process_left()
    assert type(error) is EnvStepError and error.env_index == 1
    assert first_line(error) == (
        f"env copy 1 of 3 could not be made in its worker process: the env constructor raised {REFUSED}"
    )
    assert isinstance(error.__cause__, ConnectionRefusedError)
    assert "\x1b" not in str(error)


@pytest.mark.slow
def test_subprocess_every_copy_that_cannot_be_built(no_process_left):
    error = start_failure(
        lambda: AsyncPPO(
            BrokenCorridor, corridor_ppo(), num_envs=3, num_steps=8, backend="subprocess", progress_bar=False
        )
    )
    no_process_left()
    assert type(error) is EnvStepError and error.env_index == 0
    lines = str(error).splitlines()
    assert lines[0] == (
        f"env copy 0 of 3 could not be made in its worker process: the env constructor raised {REFUSED}"
    )
    assert lines[1] == "(env copies [1, 2] of 3 could not be made either)"
    assert isinstance(error.__cause__, ConnectionRefusedError)


@pytest.mark.slow
def test_subprocess_worker_that_dies_while_it_starts(no_process_left):
    with pytest.raises(EnvStepError) as info:
        AsyncPPO(
            functools.partial(CopyOneCrashes, os.getpid()),
            corridor_ppo(),
            num_envs=3,
            num_steps=8,
            backend="subprocess",
            progress_bar=False,
        )
    no_process_left()
    assert re.match(
        r"a subprocess worker of the 3 env copies died while starting \(\w+\), "
        r"before its env could report an error",
        first_line(info.value),
    )


@pytest.mark.slow
def test_subprocess_copies_with_different_spaces(no_process_left):
    with pytest.raises(RuntimeError, match="observation spaces are not equivalent"):
        AsyncPPO(
            functools.partial(CopyOneWider, os.getpid()),
            corridor_ppo(),
            num_envs=3,
            num_steps=8,
            backend="subprocess",
            progress_bar=False,
        )
    no_process_left()


@pytest.mark.slow
@pytest.mark.parametrize("overlap", [False, True])
def test_refused_configuration_on_local_backends(no_process_left, overlap):
    with pytest.raises(ValueError, match="observ_dim"):
        AsyncPPO(
            Corridor,
            refused_ppo(),
            num_envs=3,
            num_steps=8,
            backend="subprocess",
            overlap=overlap,
            progress_bar=False,
        )
    no_process_left()


# ---------------------------------------------------------------- the collector process
@pytest.mark.slow
def test_collector_process_loop_copy_that_cannot_be_built(no_process_left):
    error = start_failure(
        lambda: AsyncPPO(
            functools.partial(CopyOneBroken, os.getpid()),
            corridor_ppo(),
            num_envs=3,
            num_steps=8,
            backend="loop",
            overlap=True,
            progress_bar=False,
        )
    )
    no_process_left()
    assert type(error) is EnvStepError and error.env_index == 1
    assert first_line(error) == (
        f"env copy 1 of 3 could not be made in the collector process: the env constructor raised {REFUSED}"
    )
    assert isinstance(error.__cause__, ConnectionRefusedError)


@pytest.mark.slow
def test_collector_process_every_copy_that_cannot_be_built(no_process_left):
    error = start_failure(
        lambda: AsyncPPO(
            BrokenCorridor,
            corridor_ppo(),
            num_envs=3,
            num_steps=8,
            backend="loop",
            overlap=True,
            progress_bar=False,
        )
    )
    no_process_left()
    assert type(error) is EnvStepError and error.env_index == 0
    assert first_line(error) == (
        f"env copy 0 of 3 could not be made in the collector process: the env constructor raised {REFUSED}"
    )


@pytest.mark.slow
def test_collector_process_subprocess_copy_that_cannot_be_built(no_process_left):
    """The collector process's own workers end too, not only the collector process."""
    error = start_failure(
        lambda: AsyncPPO(
            functools.partial(CopyOneBroken, os.getpid(), counted=False),
            corridor_ppo(),
            num_envs=3,
            num_steps=8,
            backend="subprocess",
            overlap=True,
            progress_bar=False,
        )
    )
    no_process_left()
    assert type(error) is EnvStepError and error.env_index == 1
    assert first_line(error) == (
        f"env copy 1 of 3 could not be made in its worker process: the env constructor raised {REFUSED}"
    )
    assert isinstance(error.__cause__, ConnectionRefusedError)


# ---------------------------------------------------------------- Ray actors
def ray_actors(ray) -> dict[str, dict]:
    from ray._private import state  # the GCS's table: Ray's state API needs the dashboard

    return {actor_id: actor for actor_id, actor in state.actors().items()}


def check_actors_ended(ray, before: dict) -> None:
    started = {actor_id: actor for actor_id, actor in ray_actors(ray).items() if actor_id not in before}
    assert started, "no Ray actor was started"
    alive = {actor_id: actor["State"] for actor_id, actor in started.items() if actor["State"] != "DEAD"}
    assert not alive, f"Ray actors not ended: {alive}"
    deadline = time.monotonic() + 5  # a dead actor's process may take a moment to exit
    while True:
        running = [
            actor["Pid"]
            for actor in started.values()
            if actor.get("Pid") and (_stat(str(actor["Pid"])) or ("Z",))[0] != "Z"
        ]
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not running, f"Ray worker processes still running: {running}"


def ray_runner(env) -> AsyncPPO:
    return AsyncPPO(
        env, corridor_ppo(), num_envs=3, num_steps=8, backend="ray", ray_workers=2, progress_bar=False
    )


@pytest.mark.slow
def test_ray_every_copy_that_cannot_be_built(ray_session):
    before = ray_actors(ray_session)
    with pytest.raises(EnvStepError) as info:
        ray_runner(functools.partial(BrokenCorridor, always=True))
    check_actors_ended(ray_session, before)
    error = info.value
    match = re.fullmatch(
        rf"ray worker (\d) could not start \(env copies (\d-\d)\): env copy (\d) of 3 could not "
        rf"be made: the env constructor raised {REFUSED}",
        first_line(error),
    )
    assert match, first_line(error)
    assert match.groups() in {("0", "0-1", "0"), ("1", "2-2", "2")}
    assert error.env_index == int(match.group(3))
    assert "\x1b" not in str(error)
    assert isinstance(error.__cause__, ray_session.exceptions.RayActorError)


@pytest.mark.slow
def test_ray_one_copy_that_cannot_be_built(ray_session):
    """Worker 1 starts; it is ended too."""
    before = ray_actors(ray_session)
    with pytest.raises(EnvStepError) as info:
        ray_runner(functools.partial(CopyOneBroken, os.getpid()))
    check_actors_ended(ray_session, before)
    error = info.value
    assert first_line(error) == (
        f"ray worker 0 could not start (env copies 0-1): env copy 1 of "
        f"3 could not be made: the env constructor raised {REFUSED}"
    )
    assert error.env_index == 1
    assert "\x1b" not in str(error)
    assert isinstance(error.__cause__, ray_session.exceptions.RayActorError)


@pytest.mark.slow
def test_ray_refused_configuration(ray_session):
    before = ray_actors(ray_session)
    with pytest.raises(ValueError, match="observ_dim"):
        AsyncPPO(
            Corridor, refused_ppo(), num_envs=3, num_steps=8, backend="ray", ray_workers=2, progress_bar=False
        )
    check_actors_ended(ray_session, before)
