"""Chaos fixtures: a fleet of real processes on PostgreSQL and the tests' Redis, and the
invariants every fault-injection test checks once the fault is over."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import _create_postgres, _drop_postgres
from tests.e2e.fleet import Fleet

# Chaos fleets judge hosts down after DOWN_TIME s without a heartbeat (beats every 0.5 s).
DOWN_TIME = 4.0


@pytest.fixture
def pg_databases() -> Iterator[tuple[str, str]]:
    """Two new PostgreSQL databases (registry, node), dropped afterwards."""
    names = [f"berth_chaos_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    urls = [asyncio.run(_create_postgres(name)) for name in names]
    try:
        yield urls[0], urls[1]
    finally:
        for name in names:
            asyncio.run(_drop_postgres(name))


@pytest.fixture
def chaos_fleet(tmp_path, redis_url, redis_prefix, pg_databases) -> Iterator[Fleet]:
    """Registry and node service on PostgreSQL, serving; agents and schedulers are the
    test's to start."""
    fleet = Fleet(tmp_path, redis_url=redis_url, redis_prefix=redis_prefix)
    try:
        fleet.services(down_time=DOWN_TIME, databases=pg_databases)
        yield fleet
    finally:
        fleet.close()
