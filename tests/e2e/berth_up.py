"""`berth up` as a test fixture: the whole stack on free ports, its banner read for the
address of every server (agents included), stopped with Ctrl-C afterwards."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import processes
from tests.ports import free_port

BIN = Path(sys.executable).parent
BERTH = str(BIN / "berth")
READY_LINE = "Ctrl-C stops everything."
# "  registry   127.0.0.1:50051    log: data/logs/registry.log", "  agent kvm-1  127.0.0.1:…"
_SERVER_LINE = re.compile(r"^  (agent )?(?P<name>\S+)\s+(?P<address>127\.0\.0\.1:\d+)\s+log: ")


@dataclass
class Stack:
    proc: subprocess.Popen[str]
    banner: str
    servers: dict[str, str]  # name (registry, node, scheduler, or an agent's host) -> address

    @property
    def registry(self) -> str:
        return self.servers["registry"]

    @property
    def compute_api(self) -> str:
        """The OpenStack Compute API's endpoint (`--os-endpoint`)."""
        return f"http://{self.servers['api']}/v2.1"

    @property
    def endpoints(self) -> list[str]:
        """Global options that point the CLI at this stack."""
        return [
            "--registry",
            self.registry,
            "--node",
            self.servers["node"],
            "--scheduler",
            self.servers["scheduler"],
        ]


@contextmanager
def berth_up(data_dir: Path, *args: str, within_s: float = 120) -> Iterator[Stack]:
    """Run `berth up` on free ports until its banner says it is ready; Ctrl-C at the end."""
    command = [
        BERTH,
        "up",
        "--data-dir",
        str(data_dir),
        "--registry-port",
        str(free_port()),
        "--node-port",
        str(free_port()),
        "--scheduler-port",
        str(free_port()),
        "--api-port",
        str(free_port()),
        *args,
    ]
    proc = processes.spawn(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        deadline = time.monotonic() + within_s
        assert proc.stdout is not None
        while READY_LINE not in "".join(lines[-1:]):
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                raise AssertionError("berth up never said it was ready:\n" + "".join(lines))
            lines.append(line)
        banner = "".join(lines)
        servers = {m["name"]: m["address"] for m in map(_SERVER_LINE.match, lines) if m is not None}
        yield Stack(proc, banner, servers)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=120)  # bounds a hang only
            except subprocess.TimeoutExpired:
                processes.kill(proc)  # its children die with it (PR_SET_PDEATHSIG)
