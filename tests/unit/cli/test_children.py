"""Children die with their parent, however it ends: real processes, waited on by pidfd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from berth.cli.children import dies_with_parent

from tests import processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")

# A parent that starts a long sleep the way `berth up` starts its services (a session of the
# child's own, so no signal to the parent's group reaches it), says its pid, and waits.
_PARENT = """
import subprocess, sys
from berth.cli.children import dies_with_parent
child = subprocess.Popen(
    dies_with_parent([sys.executable, "-c", "import time; time.sleep(600)"]),
    start_new_session=True,
)
print(child.pid, flush=True)
child.wait()
"""

# A parent that serves gRPC (as `berth up`, the tests and the benchmarks do while they start
# processes) starts short children one after another and counts those that did not exit 0.
# Forked with a preexec_fn, 1 to 2 in 20 to 60 were aborted by gRPC's fork handlers.
_GRPC_PARENT = """
import asyncio, subprocess, sys
from grpc import aio
from berth.cli.children import dies_with_parent

async def main():
    server = aio.server()
    server.add_insecure_port("127.0.0.1:0")
    await server.start()
    codes = [
        subprocess.Popen(dies_with_parent(["true"]), stderr=subprocess.DEVNULL).wait()
        for _ in range(150)
    ]
    print(sum(code != 0 for code in codes), flush=True)
    await server.stop(None)

asyncio.run(main())
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


def test_a_parent_that_uses_grpc_starts_every_child():
    done = subprocess.run(
        [sys.executable, "-c", _GRPC_PARENT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", "children that did not exit 0: " + done.stdout


def test_a_program_that_cannot_run_is_refused_as_popen_would(tmp_path):
    with pytest.raises(FileNotFoundError):
        dies_with_parent(["no-such-program-berth"])
    with pytest.raises(FileNotFoundError):
        dies_with_parent([str(tmp_path / "missing")])
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        dies_with_parent([str(plain)])


def test_the_child_runs_the_program_under_its_own_pid_with_the_whole_environment():
    env = os.environ | {"BERTH_TEST_MARK": "kept"}
    script = "import os; print(os.getpid(), os.environ['BERTH_TEST_MARK'])"
    child = subprocess.Popen(
        dies_with_parent([sys.executable, "-c", script]), env=env, stdout=subprocess.PIPE, text=True
    )
    out, _ = child.communicate(timeout=60)
    assert out.split() == [str(child.pid), "kept"]


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
