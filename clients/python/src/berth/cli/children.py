"""Child processes that end with their parent, however the parent ends.

`berth up` stops its children in order on Ctrl-C or SIGTERM; a SIGKILL (or a crash) gives
it no chance to. On Linux the kernel then sends each child SIGTERM itself
(PR_SET_PDEATHSIG, set in the child before it runs), so no registry, agent or Redis is left
holding ports and files. Elsewhere this does nothing and the parent's own handlers remain
the only way down.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A `preexec_fn`: runs in the child between fork and exec. The signal follows the
    thread that started the child, so start long-lived children from the main thread."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
