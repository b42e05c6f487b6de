"""Shared fixtures: a fresh database per test on SQLite, PostgreSQL and MariaDB.

PostgreSQL and MariaDB are found at BERTH_TEST_POSTGRES_URL / BERTH_TEST_MARIADB_URL
(defaults: the local servers). When one is not reachable its cases are skipped with the
reason, unless BERTH_TEST_REQUIRE lists it (CI sets `postgresql,mariadb`): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "BERTH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("BERTH_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
REQUIRED = {b.strip() for b in os.environ.get("BERTH_TEST_REQUIRE", "").split(",") if b.strip()}
BACKENDS = ["sqlite", "postgresql", "mariadb"]

_unreachable: dict[str, str] = {}


def _unavailable(backend: str, why: str) -> None:
    _unreachable[backend] = why
    if backend in REQUIRED:
        pytest.fail(f"{backend} is required (BERTH_TEST_REQUIRE) but {why}")
    pytest.skip(f"{backend} not reachable: {why}")


@dataclass
class Database:
    backend: str
    url: str


async def _create_postgres(name: str) -> str:
    import asyncpg

    admin = make_url(POSTGRES_URL)
    try:
        conn = await asyncpg.connect(
            host=admin.host,
            port=admin.port or 5432,
            user=admin.username,
            database=admin.database,
            timeout=3,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        _unavailable("postgresql", str(exc))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.set(database=name).render_as_string(hide_password=False)


async def _drop_postgres(name: str) -> None:
    import asyncpg

    admin = make_url(POSTGRES_URL)
    conn = await asyncpg.connect(
        host=admin.host, port=admin.port or 5432, user=admin.username, database=admin.database
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _mariadb(statement: str) -> None:
    import asyncmy
    from asyncmy.errors import MySQLError

    admin = make_url(MARIADB_URL)
    try:
        conn = await asyncio.wait_for(
            asyncmy.connect(
                host=admin.host,
                port=admin.port or 3306,
                user=admin.username,
                password=admin.password or "",
            ),
            timeout=3,
        )
    except (OSError, MySQLError, TimeoutError) as exc:
        _unavailable("mariadb", str(exc) or type(exc).__name__)
    try:
        async with conn.cursor() as cur:
            await cur.execute(statement)
    finally:
        conn.close()


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Database]:
    """A new, empty database on each backend; dropped afterwards."""
    backend = request.param
    name = f"berth_t_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        yield Database(backend, f"sqlite:///{tmp_path}/{name}.sqlite3")
    elif backend == "postgresql":
        url = await _create_postgres(name)
        try:
            yield Database(backend, url)
        finally:
            await _drop_postgres(name)
    else:
        await _mariadb(f"CREATE DATABASE `{name}`")
        try:
            yield Database(
                backend,
                make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False),
            )
        finally:
            await _mariadb(f"DROP DATABASE IF EXISTS `{name}`")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    for backend, why in sorted(_unreachable.items()):
        terminalreporter.write_line(f"SKIPPED backend {backend}: {why}", yellow=True)
