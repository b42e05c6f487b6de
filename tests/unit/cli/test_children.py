"""Children die with their parent, however it ends: real processes, waited on by pidfd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests import processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")

# A parent that starts a long sleep the way `berth up` starts its services (a session of the
# child's own, so no signal to the parent's group reaches it), says its pid, and waits.
_PARENT = """
import subprocess, sys
from berth.cli.children import die_with_parent
child = subprocess.Popen(
    [sys.executable, "-c", "import time; time.sleep(600)"],
    start_new_session=True,
    preexec_fn=die_with_parent(),
)
print(child.pid, flush=True)
child.wait()
"""


def test_a_child_in_a_session_of_its_own_ends_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert processes.descendants(parent.pid) == [child]

        parent.kill()  # SIGKILL: no handler of the parent's runs

        assert processes.wait_all_exit([child], within_s=60) == []
    finally:
        processes.kill(parent)


def test_a_fixtures_kill_takes_the_whole_process_group():
    # A stand-in for a scheduler and its workers: the grandchild shares the child's group.
    proc = processes.spawn(
        [sys.executable, "-c", "import subprocess, sys, time; " + _GRANDCHILD],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    assert os.getpgid(grandchild) == proc.pid

    assert processes.kill(proc) == -signal.SIGKILL

    assert processes.wait_all_exit([grandchild], within_s=60) == []


_GRANDCHILD = (
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
    "print(g.pid, flush=True); time.sleep(600)"
)
