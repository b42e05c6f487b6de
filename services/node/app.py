"""Assembles the node service: storage, feed, snapshot writer, servicer, server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from berth.v1 import node_pb2, node_pb2_grpc
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.common import auth, db
from services.common.metrics import register_collector
from services.common.process import Serving
from services.common.reporter import ServiceReporter
from services.common.server import ServiceSpec, build_server
from services.common.workers import reports_for_the_service
from services.node.events import NodeFeed, node_feed
from services.node.metrics import NodeResources
from services.node.nodes import Nodes
from services.node.ownership import ComputeLiveness
from services.node.reports import Clock, SnapshotWriter
from services.node.servicer import NodeServicer
from services.node.settings import NodeSettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "store" / "migrations"
SERVICE_NAMES = [node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name]
_N = "/berth.v1.NodeService/"
POLICY = auth.MethodPolicy(
    read_methods=frozenset(
        _N + m
        for m in (
            "ListComputeNodes",
            "GetComputeNode",
            "SearchComputeNodes",
            "GetStatistics",
            "ListNodeInstances",
            "GetHostUsage",
            "WatchComputeNodes",
        )
    ),
    # Agents report and delete only their own host's nodes (checked per request).
    agent_methods=frozenset(
        {_N + "ReportSnapshot", _N + "ReportSnapshotStream", _N + "DeleteComputeNode"}
    ),
)
QUIET = frozenset({_N + "ReportSnapshot", _N + "ReportSnapshotStream"})


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class NodeService(Serving):
    """A running node service; `stop()` undoes `start_node_service()`."""

    server: aio.Server
    port: int
    engine: AsyncEngine
    feed: NodeFeed
    writer: SnapshotWriter
    liveness: ComputeLiveness
    health: object
    stopping: asyncio.Event
    reporter: ServiceReporter | None = None

    async def drain(self) -> None:
        """Before the server drains: end watch streams and our own heartbeats."""
        self.stopping.set()
        await self.stop_reporting()

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.drain()
        await self.server.stop(grace_s)
        await self.writer.stop()
        await self.feed.stop()
        await self.liveness.close()
        await self.engine.dispose()


async def start_node_service(
    settings: NodeSettings,
    *,
    clock: Clock = utcnow,
    report_self: bool = True,
    migrate: bool | None = None,
) -> NodeService:
    """Migrate, wire and start the node service; tests use BERTH_LISTEN=127.0.0.1:0."""
    if settings.auto_migrate if migrate is None else migrate:
        await asyncio.to_thread(db.upgrade, MIGRATIONS, settings.database_url)
    engine = db.create_engine(settings.database_url, timeout_s=settings.database_timeout)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    feed = node_feed(
        sessions, poll_interval_s=settings.watch_poll_interval, retention=settings.event_retention
    )
    liveness = ComputeLiveness(settings)
    writer = SnapshotWriter(
        sessions,
        feed,
        liveness,
        clock,
        max_batch=settings.snapshot_batch,
        lanes=settings.snapshot_writers,
    )
    stopping = asyncio.Event()
    nodes = Nodes(sessions, feed, clock)
    translators = (db.unavailable_database,)
    servicer = NodeServicer(nodes, writer, feed, stopping, translators)
    resources = NodeResources()
    feed.add_listener(resources.latest.on_event)
    spec = ServiceSpec(
        registrars=[lambda s: node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, s)],
        service_names=SERVICE_NAMES,
        policy=POLICY,
        quiet_methods=QUIET,
        translators=translators,
    )
    server, port, health = build_server(settings, spec)
    await feed.start()
    writer.start()
    _, listed = await nodes.read_listing()
    resources.latest.loaded(listed)
    register_collector("nodes", resources)
    await server.start()
    service = NodeService(server, port, engine, feed, writer, liveness, health, stopping)
    if report_self and reports_for_the_service():
        service.reporter = ServiceReporter(settings, settings.endpoint(port))
        service.reporter.start()
    log.info(
        "node service serving",
        extra={
            "address": settings.bound_address(port),
            "database": db.async_url(settings.database_url).render_as_string(hide_password=True),
        },
    )
    return service
