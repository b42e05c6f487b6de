"""SQLAlchemy async engines from plain URLs, and Alembic migrations per owning service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from berth.client.errors import BerthError, Unavailable
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

log = logging.getLogger(__name__)

T = TypeVar("T")

# Plain scheme -> the async driver Berth uses for it.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}


def async_url(url: str | URL) -> URL:
    """`postgresql://…` -> `postgresql+asyncpg://…`; explicit drivers are kept."""
    parsed = make_url(url)
    if "+" not in parsed.drivername:
        driver = _ASYNC_DRIVERS.get(parsed.drivername)
        if driver is None:
            raise ValueError(
                f"unsupported database {parsed.drivername!r}: use sqlite, postgresql or mysql/mariadb"
            )
        parsed = parsed.set(drivername=driver)
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


# Seconds any one database operation may take (BERTH_DATABASE_TIMEOUT): connecting, waiting
# for a pooled connection, one statement. Past it the call answers UNAVAILABLE (see
# unavailable_database) instead of hanging on a database that stopped answering.
DEFAULT_TIMEOUT_S = 5.0


def create_engine(
    url: str | URL, *, timeout_s: float | None = DEFAULT_TIMEOUT_S, **kwargs: Any
) -> AsyncEngine:
    """An async engine with sane defaults for each backend.

    `timeout_s` bounds each connect, pool checkout and statement, by the driver's own
    timeouts so that a timed-out connection is closed, never reused half-read. None keeps
    the drivers' defaults (migrations, which may run one long statement).
    """
    parsed = async_url(url)
    backend = parsed.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A locked SQLite file is its one way to hang: wait this long for the lock.
        busy_s = timeout_s if timeout_s is not None else 30.0
        connect_args["timeout"] = busy_s
    else:
        if backend == "mysql":
            # REPEATABLE READ's gap locks make racing get-or-create inserts deadlock.
            kwargs.setdefault("isolation_level", "READ COMMITTED")
            if timeout_s is not None:
                # asyncmy closes a connection whose read timed out (OperationalError 2013).
                connect_args |= {"connect_timeout": timeout_s, "read_timeout": timeout_s}
        elif backend == "postgresql" and timeout_s is not None:
            # asyncpg: `timeout` bounds connecting, `command_timeout` every statement.
            connect_args |= {"timeout": timeout_s, "command_timeout": timeout_s}
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 10)
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_timeout", timeout_s if timeout_s is not None else 10)
    if connect_args:
        kwargs["connect_args"] = connect_args | dict(kwargs.get("connect_args") or {})
    engine = create_async_engine(parsed, **kwargs)
    if backend == "sqlite":
        busy_ms = int(busy_s * 1000)
        event.listen(
            engine.sync_engine, "connect", lambda conn, record: _sqlite_pragmas(conn, busy_ms)
        )
        event.listen(engine.sync_engine, "begin", _sqlite_begin_immediate)
    return engine


def _sqlite_begin_immediate(connection: Connection) -> None:
    # A deferred transaction that reads and then writes fails at once with "database is
    # locked" when another writer got in between; taking the write lock up front makes
    # it wait (busy_timeout) instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, busy_ms: int) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (the driver's own BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.close()


def alembic_config(migrations_dir: Path, url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["url"] = async_url(url)
    return config


def upgrade(migrations_dir: Path, url: str | URL, revision: str = "head") -> None:
    """Walk the service's migrations up to `revision` (synchronous: run it before serving)."""
    command.upgrade(alembic_config(migrations_dir, url), revision)


# Deadlocks and serialization failures: the transaction may simply be run again.
_RETRYABLE_CODES = {"40P01", "40001", 1213, 1205}


def is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return False
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is None and getattr(orig, "args", None):
        code = orig.args[0]
    return code in _RETRYABLE_CODES or "deadlock" in str(orig).lower()


def unavailable_database(exc: BaseException) -> BerthError | None:
    """Error translator: a database that cannot be reached is UNAVAILABLE, not INTERNAL."""
    if isinstance(exc, TimeoutError | PoolTimeout):
        return Unavailable(
            "the database did not answer in time (BERTH_DATABASE_TIMEOUT); try again shortly",
            reason="DATABASE_UNAVAILABLE",
        )
    if isinstance(exc, OperationalError | InterfaceError | ConnectionError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return Unavailable(
            "the database is unavailable; try again shortly", reason="DATABASE_UNAVAILABLE"
        )
    return None


async def uncancelled(work: Awaitable[T]) -> T:
    """Run database `work` to its end even when the caller is cancelled meanwhile (a client
    that cancels its call, a deadline that passes), then let the cancellation through.

    Cut short mid-query, the driver drops its connection instead of returning it to the
    pool (asyncpg then logs "unexpected connection_lost()" as a never-retrieved error), and
    the next call pays for a new one. The work is bounded by BERTH_DATABASE_TIMEOUT.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})
        if not task.cancelled():
            task.exception()  # retrieved: its failure belongs to nobody now
        raise
