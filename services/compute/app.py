"""Assembles the compute agent: state, driver, manager (trackers + pushers), server, reporter."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from berth.v1 import compute_pb2, compute_pb2_grpc, node_pb2_grpc
from grpc import aio
from grpc_health.v1 import health

from services.common import auth
from services.common.channels import aio_channel, call_metadata
from services.common.process import Serving
from services.common.reporter import ServiceReporter
from services.common.server import ServiceSpec, StartupError, build_server
from services.compute.drivers import build_driver
from services.compute.drivers.base import Driver
from services.compute.manager import ComputeManager
from services.compute.servicer import ComputeAgentServicer
from services.compute.settings import ComputeSettings
from services.compute.state import AgentState
from services.compute.tracker import CapacityPolicy, reserve_misfit

log = logging.getLogger(__name__)

SERVICE_NAMES = [compute_pb2.DESCRIPTOR.services_by_name["ComputeAgentService"].full_name]
_C = "/berth.v1.ComputeAgentService/"
# Building and deleting are admin-only; nothing here is an agent method.
POLICY = auth.MethodPolicy(read_methods=frozenset({_C + "ListInstances", _C + "GetMaintenance"}))


@dataclass
class Agent(Serving):
    """A running compute agent; `stop()` undoes `start_agent()`.

    Tests reach the trackers through `agent.manager.trackers[nodename]`; after a change,
    `await tracker.wait_reported()` waits until the node service accepted the newest snapshot.
    """

    server: aio.Server
    port: int
    manager: ComputeManager
    state: AgentState
    health: health.aio.HealthServicer
    node_channel: aio.Channel | None
    reporter: ServiceReporter | None = None
    stopped: bool = False

    async def drain(self) -> None:
        """Before the server drains: stop our own heartbeats."""
        await self.stop_reporting()

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop serving, reporting and pushing, and release the data directory; idempotent."""
        if self.stopped:
            return
        self.stopped = True
        await self.drain()
        await self.server.stop(grace_s)
        await self.manager.stop()
        if self.node_channel is not None:
            await self.node_channel.close()
        self.state.close()


async def _check_reserved_fits(settings: ComputeSettings, driver: Driver) -> None:
    policy = CapacityPolicy.from_settings(settings)
    for node in await driver.nodes():
        if node.whole_machine:
            continue  # nothing is reserved on bare metal
        misfit = reserve_misfit(policy, node.nodename, node.total)
        if misfit:
            raise StartupError(misfit)


async def start_agent(settings: ComputeSettings, *, report_self: bool = True) -> Agent:
    """Load the state, start trackers and the server; tests use BERTH_LISTEN=127.0.0.1:0."""
    state = AgentState.load(settings.data_dir, settings.host)
    channel: aio.Channel | None = None
    server: aio.Server | None = None
    manager: ComputeManager | None = None
    try:
        driver = build_driver(settings)
        await _check_reserved_fits(settings, driver)
        stub = None
        metadata: tuple[tuple[str, str], ...] = ()
        if settings.node_url:
            channel = aio_channel(settings.node_url, settings)
            stub = node_pb2_grpc.NodeServiceStub(channel)
            metadata = call_metadata(settings, settings.node_url)
        manager = ComputeManager(settings, driver, state, stub, metadata)
        servicer = ComputeAgentServicer(manager)
        spec = ServiceSpec(
            registrars=[
                lambda s: compute_pb2_grpc.add_ComputeAgentServiceServicer_to_server(servicer, s)
            ],
            service_names=SERVICE_NAMES,
            policy=POLICY,
        )
        server, port, health_servicer = build_server(settings, spec)
        await manager.start()
        await server.start()
    except BaseException:  # undo whatever started, and free the data directory
        if server is not None:
            await server.stop(0)
        if manager is not None:
            await manager.stop()
        if channel is not None:
            await channel.close()
        state.close()
        raise
    agent = Agent(server, port, manager, state, health_servicer, channel)
    endpoint = settings.endpoint(port)
    if report_self:
        agent.reporter = ServiceReporter(settings, endpoint)
        agent.reporter.start()
    log.info(
        "compute agent serving",
        extra={
            "address": endpoint,
            "driver": driver.name,
            "nodes": len(manager.trackers),
            "instances": sum(1 for _ in state.all_instances()),
        },
    )
    return agent
