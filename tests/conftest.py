"""Shared fixtures: a fresh database per test on SQLite, PostgreSQL and MariaDB, and a Redis
key prefix of the test's own.

PostgreSQL and MariaDB are found at BERTH_TEST_POSTGRES_URL / BERTH_TEST_MARIADB_URL
(defaults: the local servers). When one is not reachable its cases are skipped with the
reason, unless BERTH_TEST_REQUIRE lists it (CI sets `postgresql,mariadb,redis`): then they
fail. Redis is BERTH_TEST_REDIS_URL if set, else one redis-server the run starts for itself
(see berth.cli.embedded_redis): a Redis already running on the machine holds somebody else's
data and is never written. Either way the tests write only under their own key prefix
(`redis_prefix`) and delete only those keys: no test empties a database.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from berth.cli.embedded_redis import EmbeddedRedis, EmbeddedRedisError, find_redis_server
from berth.cli.up import hide_password
from sqlalchemy.engine import make_url

from tests import processes
from tests.redis_keys import delete_keys, new_prefix

POSTGRES_URL = os.environ.get(
    "BERTH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("BERTH_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
REQUIRED = {b.strip() for b in os.environ.get("BERTH_TEST_REQUIRE", "").split(",") if b.strip()}
BACKENDS = ["sqlite", "postgresql", "mariadb"]
REDIS_URL = os.environ.get("BERTH_TEST_REDIS_URL", "")

_unreachable: dict[str, str] = {}
_used: dict[str, str] = {}  # backend -> which server the tests used (for the summary)
_left_running: list[int] = []  # pids of processes no fixture stopped (for the summary)


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


def _redis_answers(url: str, timeout: float = 1.0) -> str | None:
    """None if the Redis at `url` answers PING within `timeout` seconds, else why not."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"{hide_password(url)}: {exc or type(exc).__name__}"
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def _redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Decided once per run: (url, "") of the Redis the tests use, or ("", why there is none).
    An embedded server it starts runs until the end of the run."""
    if REDIS_URL:
        why = _redis_answers(REDIS_URL, timeout=3.0)
        yield (REDIS_URL, "") if why is None else ("", why)
        return
    # A server of the run's own: a Redis already running on this machine (6379) holds
    # somebody else's data.
    binary = find_redis_server()
    if binary is None:
        yield "", "no redis-server was found (set BERTH_TEST_REDIS_URL to a Redis of your own)"
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), binary=binary, appendonly=False)
    try:
        server.start()
    except EmbeddedRedisError as exc:
        yield "", f"the embedded redis-server did not start: {exc}"
        return
    try:
        yield server.url, f"embedded {binary}"
    finally:
        server.stop()


@pytest.fixture
def redis_url(_redis_server: tuple[str, str]) -> str:
    """The URL of the tests' Redis. It may hold other data (BERTH_TEST_REDIS_URL): write only
    under `redis_prefix`."""
    url, note = _redis_server
    if not url:
        _unavailable("redis", note)
    _used.setdefault("redis", f"{hide_password(url)} ({note})" if note else hide_password(url))
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own (the scheduler's BERTH_REDIS_PREFIX); every key under
    it is deleted afterwards, and no other."""
    prefix = new_prefix()
    yield prefix
    delete_keys(redis_url, prefix)


@pytest.hookimpl(trylast=True)  # after every fixture's own teardown
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The net under failed or interrupted teardowns: no process a test started (nor what
    it started in turn) outlives the run."""
    _left_running.extend(processes.kill_all())


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if _left_running:
        terminalreporter.write_line(
            f"killed {len(_left_running)} process groups no fixture stopped: {_left_running}",
            red=True,
        )
    for backend, why in sorted(_unreachable.items()):
        terminalreporter.write_line(f"SKIPPED backend {backend}: {why}", yellow=True)
    for backend, how in sorted(_used.items()):
        if backend not in _unreachable:
            terminalreporter.write_line(f"backend {backend}: {how}")
