"""What the benchmarks share: scratch databases, a Berth service as a subprocess, figures.

The benchmark scripts run as `python bench/<name>.py`, so this module is imported as
`support` (the script's directory is first on sys.path).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from berth.cli.children import dies_with_parent
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_MARIADB = "mysql://root@127.0.0.1:3306/test"


def log(message: str, *, end: str = "\n") -> None:
    print(message, file=sys.stderr, end=end, flush=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def sorted_latencies(chunks: Sequence[bytes]) -> array.array:
    """Latencies (seconds, array('d').tobytes() from each worker) merged and sorted."""
    latencies = array.array("d")
    for chunk in chunks:
        latencies.frombytes(chunk)
    return array.array("d", sorted(latencies))


# --------------------------------------------------------------------------- databases


class Database:
    """A fresh database for one backend; `url` is what the service gets."""

    name: str
    url: str

    async def create(self) -> None: ...

    async def drop(self) -> None: ...


class SqliteDatabase(Database):
    name = "sqlite"

    def __init__(self, workdir: Path, filename: str = "registry-bench.sqlite3") -> None:
        self.path = workdir / filename
        self.url = f"sqlite:///{self.path}"

    async def create(self) -> None:
        await self.drop()

    async def drop(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{self.path}{suffix}")


def with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class PostgresDatabase(Database):
    name = "postgresql"

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.db = f"berth_bench_{uuidlib.uuid4().hex[:10]}"
        self.url = with_database(admin_url, self.db)

    async def _admin(self):  # type: ignore[no-untyped-def]
        import asyncpg

        return await asyncpg.connect(self.admin_url, timeout=5)

    async def reachable(self) -> str | None:
        try:
            conn = await self._admin()
        except Exception as exc:  # any failure to connect means "skip"
            return f"{type(exc).__name__}: {exc}".strip()
        await conn.close()
        return None

    async def create(self) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'CREATE DATABASE "{self.db}"')
        finally:
            await conn.close()

    async def drop(self) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        finally:
            await conn.close()

    async def commits(self) -> int | None:
        """Transactions committed in the bench database so far (the batches, roughly)."""
        conn = await self._admin()
        try:
            return await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", self.db
            )
        finally:
            await conn.close()


class MariadbDatabase(Database):
    name = "mariadb"

    def __init__(self, admin_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.admin = make_url(admin_url)
        self.db = f"berth_bench_{uuidlib.uuid4().hex[:10]}"
        self.url = with_database(admin_url, self.db)

    async def _admin(self):  # type: ignore[no-untyped-def]
        import asyncmy  # the MySQL/MariaDB driver Berth installs

        return await asyncio.wait_for(
            asyncmy.connect(
                host=self.admin.host or "127.0.0.1",
                port=self.admin.port or 3306,
                user=self.admin.username or "root",
                password=self.admin.password or "",
                autocommit=True,
            ),
            timeout=5,
        )

    async def reachable(self) -> str | None:
        try:
            conn = await self._admin()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}".strip()
        conn.close()
        return None

    async def _execute(self, sql: str) -> None:
        conn = await self._admin()
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql)
        finally:
            conn.close()

    async def create(self) -> None:
        await self._execute(f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4")

    async def drop(self) -> None:
        await self._execute(f"DROP DATABASE IF EXISTS `{self.db}`")


# --------------------------------------------------------------------------- processes


async def open_database(backend: str, args: Any, workdir: Path, sqlite_name: str) -> Database | str:
    """The scratch database for `backend` (from --postgres-url / --mariadb-url), or the
    line saying why it is skipped (its server does not answer)."""
    if backend == "sqlite":
        return SqliteDatabase(workdir, sqlite_name)
    if backend == "postgresql":
        admin, database = args.postgres_url, PostgresDatabase(args.postgres_url)
    elif backend == "mariadb":
        admin, database = args.mariadb_url, MariadbDatabase(args.mariadb_url)
    else:
        raise SystemExit(f"unknown backend {backend!r}: use sqlite, postgresql, mariadb")
    problem = await database.reachable()
    if problem is not None:
        return f"{backend}: skipped (not reachable at {hide_password(admin)}: {problem})"
    return database


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Runs a service module unchanged except for extra gRPC server options: for trying a
# server setting before changing services/common/server.py.
_LAUNCHER = """
import json, runpy, sys
from grpc import aio
module, extra = sys.argv[1], [tuple(kv) for kv in json.loads(sys.argv[2])]
original = aio.server
def server(*args, options=None, **kwargs):
    return original(*args, options=[*(options or ()), *extra], **kwargs)
aio.server = server
sys.argv = [sys.argv[0]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


class ServiceProcess:
    """`python -m <module>` on a loopback port, logs to a file in the workdir."""

    def __init__(
        self,
        module: str,
        database_url: str,
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        server_options: list[tuple[str, int | str]] | None = None,
    ) -> None:
        self.module = module
        self.label = module.rsplit(".", 1)[-1]  # "registry", "node"
        self.server_options = server_options or []
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.database_url = database_url
        self.workdir = workdir
        self.extra_env = env or {}
        self.log_path = workdir / f"{self.label}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(
            BERTH_LISTEN=self.target,
            BERTH_DATABASE_URL=self.database_url,
            BERTH_HOST=f"bench-{self.label}",
            BERTH_DATA_DIR=str(self.workdir / "data"),
            BERTH_LOG_LEVEL="WARNING",
            BERTH_SHUTDOWN_GRACE="2",
            PYTHONFAULTHANDLER="1",  # a crash of the server leaves a traceback in its log
        )
        env.update(self.extra_env)
        # BERTH_BENCH_SERVER_WORKERS=N: the service runs as N processes on its port
        # (BERTH_WORKERS); its CPU is counted over all of them.
        if workers := os.environ.get("BERTH_BENCH_SERVER_WORKERS"):
            env["BERTH_WORKERS"] = workers
        command = [sys.executable, "-m", self.module]
        if self.server_options:
            command = [
                sys.executable,
                "-c",
                _LAUNCHER,
                self.module,
                json.dumps(self.server_options),
            ]
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                dies_with_parent(command),  # an interrupted bench leaves no server behind
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_serving(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aio.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the {self.label} exited with {self.proc.returncode}:\n{self.log_tail()}"
                    )
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the {self.label} was not SERVING after {timeout_s:.0f} s:\n"
                        f"{self.log_tail()}"
                    )
                await asyncio.sleep(0.2)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"the {self.label} exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def cpu_seconds(self) -> float:
        """User + system CPU time the service used so far (Linux /proc)."""
        if self.proc is None:
            return 0.0
        return sum(map(_cpu_seconds, [self.proc.pid, *_children(self.proc.pid)]))

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (Linux /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The process's children (a server's BERTH_WORKERS), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def client_channel(target: str, index: int) -> aio.Channel:
    # A local subchannel pool gives every channel its own TCP connection.
    return aio.insecure_channel(
        target,
        options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", index)],
    )
