"""Compute agents in-process on port 0 behind real channels, and a fake node service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from berth.v1 import compute_pb2_grpc

from services.compute.app import Agent, start_agent
from services.compute.settings import ComputeSettings
from tests.integration.compute.support import FakeNodeService, agent_stub, serve_fake_node_service

CLOSED = "127.0.0.1:1"  # nothing listens: pushes retry, which these tests do not wait for


@pytest.fixture
async def start_compute(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Start agents (default: fake driver, host kvm-1, data in tmp_path); all are stopped at
    the end (stopping one earlier, to restart it, is fine)."""
    running: list[Agent] = []

    async def _start(*, report_self: bool = False, **overrides: object) -> Agent:
        values: dict[str, object] = {
            "host": "kvm-1",
            "listen": "127.0.0.1:0",
            "data_dir": tmp_path / "agent",
            "registry_url": CLOSED,
            "node_url": CLOSED,
            "update_resources_interval": 3600,  # tests refresh by hand
        }
        settings = ComputeSettings(**(values | overrides))
        agent = await start_agent(settings, report_self=report_self)
        running.append(agent)
        return agent

    yield _start
    for agent in running:
        await agent.stop(0)


@pytest.fixture
async def agent(start_compute) -> Agent:
    return await start_compute()


@pytest.fixture
async def compute(agent: Agent) -> AsyncIterator[compute_pb2_grpc.ComputeAgentServiceStub]:
    async with agent_stub(agent) as stub:
        yield stub


@pytest.fixture
async def node_service() -> AsyncIterator[FakeNodeService]:
    async with serve_fake_node_service() as fake:
        yield fake
