"""A registry in-process on port 0 behind a real channel, on each database backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from berth.v1 import host_pb2_grpc, registry_pb2_grpc

from services.registry.app import Registry, start_registry
from services.registry.settings import RegistrySettings
from tests.integration.registry.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def start(database, clock, tmp_path: Path):
    """Start registries on the test's database; all are stopped at the end."""
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
        settings = RegistrySettings(**(values | overrides))
        registry = await start_registry(settings, clock=clock, report_self=False)
        started.append(registry)
        return registry

    yield _start
    for registry in started:
        await registry.stop(0)


@pytest.fixture
async def registry(start) -> Registry:
    return await start()


@pytest.fixture
async def channel(registry) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(registry.address) as channel:
        yield channel


@pytest.fixture
def stub(channel) -> registry_pb2_grpc.RegistryServiceStub:
    return registry_pb2_grpc.RegistryServiceStub(channel)


@pytest.fixture
def hosts(channel) -> host_pb2_grpc.HostServiceStub:
    return host_pb2_grpc.HostServiceStub(channel)
