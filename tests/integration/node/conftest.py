"""A node service (see ../conftest.py) behind a real channel, on each database backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from berth.v1 import node_pb2_grpc

from services.node.app import NodeService


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
