"""Checks before a process listens anywhere: credentials beyond loopback, and a free address.

Each failure is a StartupError whose message is the one line the process prints.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from services.common.settings import split_host_port


class StartupError(Exception):
    """The process cannot start as configured; the message says why and what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_credentials(address: str, has_credentials: bool, what: str, setting: str) -> None:
    """Refuse to serve `what` beyond loopback when no credentials are configured."""
    host, _ = split_host_port(address)
    if not has_credentials and not is_loopback(host):
        raise StartupError(
            f"refusing to serve {what} on {address} ({setting}) without credentials: anyone "
            "who can reach it could use it. Set BERTH_AUTH_FILE to a tokens file, or listen "
            "on 127.0.0.1."
        )


def bind_problem(address: str, setting: str) -> str | None:
    """Why `address` cannot be listened on, found by binding it as servers do; None if it can.

    Asked before a server binds, so that a taken port is one line, not a library's log and
    traceback. Port 0 (any free port) always can.
    """
    host, port = split_host_port(address)
    if port == 0:
        return None
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        return f"cannot listen on {address} ({setting}): {exc.strerror}"
    with socket.socket(family, kind, proto) as probe:
        # As servers bind: a port left in TIME_WAIT by a process that just stopped is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (
                    f"cannot listen on {address} ({setting}): the address is already in use "
                    "by another process; stop it or choose another port"
                )
            return f"cannot listen on {address} ({setting}): {exc.strerror}"
    return None


def require_free(address: str, setting: str) -> None:
    problem = bind_problem(address, setting)
    if problem is not None:
        raise StartupError(problem)
