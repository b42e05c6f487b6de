"""BERTH_WORKERS=N: N server processes on one port, so one address uses every core.

Python runs one request at a time per process; a server whose work is CPU-bound (the
scheduler weighing a fleet) gets more cores by more processes. The parent binds the port
first and holds it (SO_REUSEPORT, never listening itself), then starts N workers that bind
the same port with SO_REUSEPORT: the kernel spreads new connections among them, as in
grpc's own multiprocessing example. Each worker is a whole server (its own cache,
connections and Redis claims); they share what replicas share, so everything that holds
across replicas holds across workers.

The parent only supervises: a worker that dies is started again (after a backoff); one that
cannot start (exit 2, a bad setting) stops them all; SIGTERM/SIGINT go to every worker, and
workers die with the parent (PR_SET_PDEATHSIG), even when it is killed outright.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from berth.cli.children import dies_with_parent

from services.common.backoff import Backoff
from services.common.listeners import require_free
from services.common.settings import split_host_port

log = logging.getLogger(__name__)

# Set by the parent in each worker's environment: "index/count".
WORKER_ENV = "BERTH_WORKER"
# A worker that exits with this status could not start (a bad setting, a taken port):
# starting it again would fail again.
STARTUP_FAILED = 2


@dataclass(frozen=True)
class Worker:
    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index + 1}/{self.count}"

    def own_port(self, address: str) -> str:
        """A per-worker address (metrics): the configured port plus the worker's index."""
        host, port = split_host_port(address)
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{port + self.index if port else 0}"


def this_worker() -> Worker | None:
    """Which worker this process is, or None when it runs alone (or is the parent)."""
    value = os.environ.get(WORKER_ENV)
    if not value:
        return None
    index, _, count = value.partition("/")
    return Worker(int(index), int(count))


def reports_for_the_service() -> bool:
    """Whether this process heartbeats for its (host, binary): one service, however many
    workers, so only the first worker (or a process running alone) does."""
    worker = this_worker()
    return worker is None or worker.index == 0


def reserve_port(address: str, setting: str) -> tuple[socket.socket, str]:
    """Bind `address` with SO_REUSEPORT and hold it (not listening: no connection comes
    here), so the workers bind the same port and no other program takes it meanwhile.
    Port 0 picks a free port for all of them. -> (the socket to keep open, address)."""
    require_free(address, setting)
    host, port = split_host_port(address)
    family, kind, proto, _, sockaddr = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    holder = socket.socket(family, kind, proto)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(sockaddr)
    bound_host = f"[{host}]" if ":" in host else host
    return holder, f"{bound_host}:{holder.getsockname()[1]}"


class Supervisor:
    """Runs `count` workers of this program (the same command line) and keeps them up."""

    def __init__(self, binary: str, count: int, address: str) -> None:
        self.binary = binary
        self.count = count
        self.address = address
        self._workers: dict[int, subprocess.Popen[bytes]] = {}  # index -> process
        self._stopping = False
        self._status = 0

    def run(self) -> int:
        """Until signalled (exit 0) or a worker cannot start (exit 2)."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        backoffs = {index: Backoff(1.0, 30.0) for index in range(self.count)}
        for index in range(self.count):
            self._start(index)
        log.info(
            "%s serving with %d workers on one port",
            self.binary,
            self.count,
            extra={"address": self.address, "pids": [p.pid for p in self._workers.values()]},
        )
        while self._workers:
            pid, status = _wait_any()
            if pid == 0:
                break
            found = next((i for i, p in self._workers.items() if p.pid == pid), None)
            if found is None:
                continue
            index = found
            code = os.waitstatus_to_exitcode(status)
            del self._workers[index]
            if self._stopping:
                continue
            if code == STARTUP_FAILED:
                log.error(
                    "worker %d/%d could not start; stopping the others", index + 1, self.count
                )
                self._status = STARTUP_FAILED
                self._stop_all()
                continue
            delay = backoffs[index].next_delay()
            log.warning(
                "worker %d/%d (pid %d) exited with status %d; starting it again in %.1f s",
                index + 1,
                self.count,
                pid,
                code,
                delay,
            )
            time.sleep(delay)
            if not self._stopping:
                self._start(index)
        return self._status

    def _start(self, index: int) -> None:
        env = os.environ | {WORKER_ENV: f"{index}/{self.count}", "BERTH_LISTEN": self.address}
        self._workers[index] = subprocess.Popen(
            dies_with_parent([sys.executable, *sys.orig_argv[1:]]), env=env
        )

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stopping:
            log.info("stopping %d workers (%s)", len(self._workers), signal.Signals(signum).name)
        self._stop_all()

    def _stop_all(self) -> None:
        self._stopping = True
        for process in self._workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)


def _wait_any() -> tuple[int, int]:
    while True:
        try:
            return os.wait()
        except ChildProcessError:
            return 0, 0
