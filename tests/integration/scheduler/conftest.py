"""A small cloud in-process: registry, node service and schedulers on a real Redis.

The scheduler owns no SQL, so these tests run on SQLite only (the registry and node
service are tested on every backend elsewhere)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Database
from tests.integration.scheduler.cloud import Cloud


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database("sqlite", f"sqlite:///{tmp_path / 'scheduler-test.sqlite3'}")


@pytest.fixture
async def cloud(start, start_node, redis_url, redis_prefix, tmp_path: Path):
    node_service = await start_node()
    registry = await start(node_url=node_service.address)
    world = Cloud(registry, node_service.address, redis_url, tmp_path, redis_prefix=redis_prefix)
    try:
        yield world
    finally:
        await world.close()
