"""Services in-process on port 0, on the test's database: the registry, with a real node
service beside it (host-describe and service deletion ask it), and node services."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.node.app import NodeService, start_node_service
from services.node.settings import NodeSettings
from services.registry.app import Registry, start_registry
from services.registry.settings import RegistrySettings
from tests.integration.registry.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start_node(database, clock, tmp_path: Path):
    """Start node services on the test's database; all are stopped at the end."""
    started: list[NodeService] = []

    async def _start(**overrides) -> NodeService:
        values = {
            "listen": "127.0.0.1:0",
            "database_url": database.url,
            "data_dir": tmp_path,
            "watch_poll_interval": 0.05,
            "registry_url": "127.0.0.1:1",  # nothing listens: liveness is UNAVAILABLE
        }
        service = await start_node_service(
            NodeSettings(**(values | overrides)), clock=clock, report_self=False
        )
        started.append(service)
        return service

    yield _start
    for service in started:
        await service.stop(0)


@pytest.fixture
async def start(database, clock, start_node, tmp_path: Path):
    """Start registries on the test's database, each beside a node service unless the test
    names one (`node_url`); all are stopped at the end."""
    started: list[Registry] = []

    async def _start(clock=clock, **overrides) -> Registry:
        values = {
            "listen": "127.0.0.1:0",
            "database_url": database.url,
            "data_dir": tmp_path,
            "report_interval": 10,
            "sweep_interval": 3600,  # tests sweep by hand
            "watch_poll_interval": 0.05,
        }
        if "node_url" not in overrides:
            values["node_url"] = (await start_node()).address
        settings = RegistrySettings(**(values | overrides))
        registry = await start_registry(settings, clock=clock, report_self=False)
        started.append(registry)
        return registry

    yield _start
    for registry in started:
        await registry.stop(0)
