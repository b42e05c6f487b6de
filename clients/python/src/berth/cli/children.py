"""Child processes that end with their parent, however the parent ends.

`berth up` stops its children in order on Ctrl-C or SIGTERM; a SIGKILL (or a crash) gives
it no chance to. On Linux the kernel then sends each child SIGTERM itself
(PR_SET_PDEATHSIG, set in the child before its program runs), so no registry, agent or
Redis is left holding ports and files. Elsewhere this does nothing and the parent's own
handlers remain the only way down.

The child sets the signal itself, in a small launcher that then execs the program: no
Python runs in the parent's forked copy (no `preexec_fn`). A parent that has used gRPC
cannot afford one: gRPC's fork handlers abort such a child now and then (1 to 2 starts in
20 to 60 measured, with grpcio 1.85.3), and `berth up`, the tests and the benchmarks all
start processes while their gRPC clients run. Without a preexec_fn, Python starts the
child by vfork, and no fork handler runs at all.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Sequence

# Runs in the child, in place of the program: PR_SET_PDEATHSIG (1) to SIGTERM (15), then
# the program, which keeps the setting. If the parent died before the setting took, the
# signal will never come: stop now instead. Isolated (-I -S): nothing of the environment
# (PYTHONPATH, site-packages) is loaded, and the program still gets the whole environment.
_ARM_THEN_EXEC = """\
import ctypes, os, sys
parent = int(sys.argv[1])
try:
    prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    pass
else:
    prctl(1, 15)
    if os.getppid() != parent:
        os.kill(os.getpid(), 15)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def dies_with_parent(argv: Sequence[str]) -> list[str]:
    """The command line that runs `argv` so that it gets SIGTERM when this process ends.

    Give it to subprocess.Popen, with no preexec_fn, from the main thread: the signal follows
    the thread that started the child. The child's pid is the program's (the launcher execs
    it). A program that cannot be found raises FileNotFoundError here, as Popen would."""
    argv = [str(arg) for arg in argv]
    _require_program(argv[0])
    if not sys.platform.startswith("linux"):
        return argv
    return [sys.executable, "-I", "-S", "-c", _ARM_THEN_EXEC, str(os.getpid()), *argv]


def _require_program(program: str) -> None:
    """Raise what Popen would for a program it cannot run (the launcher would only fail)."""
    if os.sep not in program:
        if shutil.which(program) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    elif not os.path.exists(program):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
    elif os.path.isdir(program) or not os.access(program, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
