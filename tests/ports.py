"""Ports for test servers, picked below the kernel's ephemeral range.

A port picked by binding port 0 is an ephemeral one, and every client connection on the
machine takes its local port from that same range: between the pick and the server's
bind — or while a server is down and about to come back on its old port — a client
connection can take it, and the server cannot bind. Ports below the range are never
handed to clients, so only a server asked for one takes it.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_handed_out: set[int] = set()
_LOWEST = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def is_free(port: int) -> bool:
    """Nothing on this machine is bound to 127.0.0.1:`port` now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port nothing listens on, never handed out before by this process."""
    high = _ephemeral_low()
    if high <= _LOWEST + 1000:  # an unusual range: fall back to the kernel's pick
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    for _ in range(1000):
        port = random.randrange(_LOWEST, high)
        if port not in _handed_out and is_free(port):
            _handed_out.add(port)
            return port
    raise AssertionError("no free port below the ephemeral range")


def free_run(count: int) -> int:
    """The first of `count` consecutive free ports."""
    for _ in range(100):
        base = free_port()
        rest = range(base + 1, base + count)
        if base + count < _ephemeral_low() and all(
            port not in _handed_out and is_free(port) for port in rest
        ):
            _handed_out.update(rest)
            return base
    raise AssertionError(f"no {count} consecutive free ports")
