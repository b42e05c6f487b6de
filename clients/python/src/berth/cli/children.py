"""Child processes that end with their parent, however the parent ends.

`berth up` stops its children in order on Ctrl-C or SIGTERM; a SIGKILL (or a crash) gives
it no chance to. On Linux the kernel then sends each child SIGTERM itself
(PR_SET_PDEATHSIG, set in the child before it runs), so no registry, agent or Redis is left
holding ports and files. Elsewhere this does nothing and the parent's own handlers remain
the only way down.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from functools import cache

_PR_SET_PDEATHSIG = 1


@cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up in the parent: loading a library between fork and exec can
    deadlock on a lock another thread of the parent held at the fork."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen (`preexec_fn=die_with_parent()`, called in the
    parent): the child gets SIGTERM when this process ends. The signal follows the thread
    that started the child, so start long-lived children from the main thread."""
    parent = os.getpid()
    prctl = _prctl()

    def arm() -> None:  # runs in the child, between fork and exec
        if prctl is None:
            return
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            # The parent died before the line above armed the signal: it will never come.
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


# Set by a parent that starts a Berth process without a preexec_fn (a multithreaded parent
# must not run Python between fork and exec): the child arms the signal itself at start.
PARENT_PID_ENV = "BERTH_DIE_WITH_PARENT_PID"


def die_with_parent_from_env() -> None:
    """At a Berth process's start: when its parent asked (PARENT_PID_ENV), get SIGTERM when
    that parent ends; if it has ended already, stop now."""
    wanted = os.environ.pop(PARENT_PID_ENV, "")
    prctl = _prctl()
    if not wanted.isdigit() or prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(wanted):
        os.kill(os.getpid(), signal.SIGTERM)
