"""A node service in-process on port 0 behind a real channel, on each database backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from berth.v1 import node_pb2_grpc

from services.node.app import NodeService, start_node_service
from services.node.settings import NodeSettings
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
async def node_service(start_node) -> NodeService:
    return await start_node()


@pytest.fixture
async def node_channel(node_service) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(node_service.address) as channel:
        yield channel


@pytest.fixture
def nodes(node_channel) -> node_pb2_grpc.NodeServiceStub:
    return node_pb2_grpc.NodeServiceStub(node_channel)
