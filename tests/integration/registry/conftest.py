"""A registry (see ../conftest.py) behind a real channel, on each database backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from berth.v1 import host_pb2_grpc, registry_pb2_grpc

from services.registry.app import Registry


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
