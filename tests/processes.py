"""Processes the tests start: none outlives the test run, however the run ends.

Each runs in a process group of its own, so stopping it stops what it started too (a
scheduler's workers, say), and the kernel sends it SIGTERM if the test run dies
(PR_SET_PDEATHSIG, see berth.cli.children): a pytest killed by a timeout leaves nothing
behind. Fixtures stop theirs with `kill()`; at the end of the session `kill_all()` takes
down whatever a failed or interrupted teardown left (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from berth.cli.children import dies_with_parent

_started: list[subprocess.Popen[Any]] = []


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen(argv, **popen), in a new process group that dies with this one.
    Start it from the main thread: the kernel's signal follows the thread that started it."""
    proc = subprocess.Popen(dies_with_parent(argv), start_new_session=True, **popen)
    _started.append(proc)
    return proc


def kill(proc: subprocess.Popen[Any]) -> int:
    """SIGKILL the process's whole group (a SIGSTOPped one dies too) and reap it; its exit
    status. Until it is reaped its pid, and so its group's id, cannot be reused: only then
    is the group signalled, so this never signals a stranger."""
    if proc.returncode is None:
        # ProcessLookupError: the group is gone, the leader and all it started have exited.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def kill_all() -> list[int]:
    """Kill every group a test started and never waited for; the pids of their leaders."""
    left = [proc.pid for proc in _started if proc.returncode is None]
    for proc in _started:
        kill(proc)
    _started.clear()
    return left


def descendants(pid: int) -> list[int]:
    """Every process `pid` started that still runs, and theirs, depth first (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread (or the process) ended meanwhile
        for child in children:
            found += [child, *descendants(child)]
    return found


def wait_all_exit(pids: Iterable[int], within_s: float) -> list[int]:
    """Wait until every pid has exited (a pidfd becomes readable when its process ends, so
    this wakes on each exit, not on a clock); the ones still running after `within_s`
    seconds, a bound that only ends a hang."""
    fds: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # already gone
            fds[os.pidfd_open(pid)] = pid
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    try:
        deadline = time.monotonic() + within_s
        waiting = set(fds)
        while waiting and (left_ms := (deadline - time.monotonic()) * 1000) > 0:
            for fd, _ in poller.poll(left_ms):
                poller.unregister(fd)
                waiting.discard(fd)
        return sorted(fds[fd] for fd in waiting)
    finally:
        for fd in fds:
            os.close(fd)
