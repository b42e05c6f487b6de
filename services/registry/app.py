"""Assembles the registry process: storage, feed, heartbeats, sweeper, maintenance, servicers,
server."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from berth.v1 import host_pb2, host_pb2_grpc, registry_pb2, registry_pb2_grpc
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from services.common import auth, db
from services.common.metrics import register_collector
from services.common.process import Serving
from services.common.reporter import ServiceReporter
from services.common.server import ServiceSpec, build_server
from services.common.supervise import stop_tasks, supervised
from services.common.workers import reports_for_the_service
from services.registry import metrics
from services.registry.agent_link import AgentLink
from services.registry.aggregates import Aggregates
from services.registry.events import ServiceFeed, service_feed
from services.registry.heartbeats import HeartbeatBatcher
from services.registry.host_servicer import HostServicer
from services.registry.liveness import Clock, Liveness, utcnow
from services.registry.maintenance import Maintenance
from services.registry.moves import Links
from services.registry.node_link import NodeLink
from services.registry.scheduler_link import SchedulerLink
from services.registry.servicer import RegistryServicer
from services.registry.services_table import ServicesTable
from services.registry.settings import RegistrySettings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "store" / "migrations"
SERVICE_NAMES = [
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    host_pb2.DESCRIPTOR.services_by_name["HostService"].full_name,
]
_R = "/berth.v1.RegistryService/"
_H = "/berth.v1.HostService/"
POLICY = auth.MethodPolicy(
    read_methods=frozenset(
        {
            _R + m
            for m in (
                "ListServices",
                "GetService",
                "WatchServices",
                "ListAggregates",
                "GetAggregate",
            )
        }
        | {_H + "ListHosts", _H + "DescribeHost", _H + "ListMigrations"}
    ),
    agent_methods=frozenset({_R + "RegisterService", _R + "Heartbeat", _R + "HeartbeatStream"}),
)
QUIET = frozenset({_R + "Heartbeat", _R + "HeartbeatStream"})


@dataclass
class Registry(Serving):
    """A running registry; `stop()` undoes `start_registry()`."""

    server: aio.Server
    port: int
    engine: AsyncEngine
    feed: ServiceFeed
    heartbeats: HeartbeatBatcher
    services: ServicesTable
    liveness: Liveness
    health: object
    stopping: asyncio.Event
    node_link: NodeLink
    agent_link: AgentLink
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reporter: ServiceReporter | None = None
    maintenance: Maintenance | None = None
    scheduler_link: SchedulerLink | None = None

    async def drain(self) -> None:
        """Before the server drains: end long-lived streams and our own heartbeats."""
        self.stopping.set()
        await self.stop_reporting()

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.drain()
        await self.server.stop(grace_s)
        await stop_tasks(*self.tasks)
        if self.maintenance is not None:
            await self.maintenance.stop()  # before the links and the database close
        await self.feed.stop()
        await self.heartbeats.stop()
        await self.node_link.close()
        await self.agent_link.close()
        if self.scheduler_link is not None:
            await self.scheduler_link.close()
        await self.engine.dispose()


async def _sweep_forever(services: ServicesTable, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await services.sweep()
        except Exception as exc:
            log.warning("liveness sweep failed: %s", exc or type(exc).__name__)


async def start_registry(
    settings: RegistrySettings,
    *,
    clock: Clock = utcnow,
    report_self: bool = True,
    migrate: bool | None = None,
) -> Registry:
    """Migrate, wire and start a registry; tests call this with BERTH_LISTEN=127.0.0.1:0."""
    if settings.auto_migrate if migrate is None else migrate:
        await asyncio.to_thread(db.upgrade, MIGRATIONS, settings.database_url)
    engine = db.create_engine(settings.database_url, timeout_s=settings.database_timeout)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    liveness = Liveness(settings.service_down_time, clock)
    feed = service_feed(
        sessions, poll_interval_s=settings.watch_poll_interval, retention=settings.event_retention
    )
    node_link = NodeLink(settings, settings.node_url)

    async def delete_host_nodes(host: str) -> None:
        await node_link.delete_host_nodes(host)

    services = ServicesTable(
        sessions, liveness, feed, settings.default_availability_zone, delete_host_nodes
    )
    aggregates = Aggregates(sessions, liveness, feed, services)
    heartbeats = HeartbeatBatcher(engine, sessions, liveness, settings.report_interval)
    feed.add_listener(heartbeats.on_event)
    service_states = metrics.ServiceStates()
    feed.add_listener(service_states.latest.on_event)
    stopping = asyncio.Event()
    registry_servicer = RegistryServicer(
        sessions,
        services,
        aggregates,
        heartbeats,
        feed,
        settings.report_interval,
        settings.service_down_time,
        stopping,
    )
    agent_link = AgentLink(settings, services)
    scheduler_link = SchedulerLink(settings, settings.scheduler_url)
    maintenance = Maintenance(
        sessions,
        services,
        Links(agent_link, node_link, scheduler_link),
        settings,
        stopping,
        clock,
    )
    host_servicer = HostServicer(sessions, services, node_link, agent_link, maintenance)
    spec = ServiceSpec(
        registrars=[
            lambda s: registry_pb2_grpc.add_RegistryServiceServicer_to_server(registry_servicer, s),
            lambda s: host_pb2_grpc.add_HostServiceServicer_to_server(host_servicer, s),
        ],
        service_names=SERVICE_NAMES,
        policy=POLICY,
        quiet_methods=QUIET,
        translators=(db.unavailable_database,),
    )
    server, port, health = build_server(settings, spec)
    await feed.start()
    heartbeats.start()
    _, listed, _ = await registry_servicer.read_listing()
    service_states.latest.loaded(listed)
    register_collector("services", service_states)
    await server.start()
    registry = Registry(
        server,
        port,
        engine,
        feed,
        heartbeats,
        services,
        liveness,
        health,
        stopping,
        node_link,
        agent_link,
        maintenance=maintenance,
        scheduler_link=scheduler_link,
    )
    registry.tasks.append(
        supervised(
            "liveness-sweeper", functools.partial(_sweep_forever, services, settings.sweep_interval)
        )
    )
    registry.tasks.append(supervised("maintenance-resumer", maintenance.resume_forever))
    if report_self and reports_for_the_service():
        # The registry registers itself like any process, through its own front door.
        self_settings = settings.model_copy(update={"registry_url": f"127.0.0.1:{port}"})
        registry.reporter = ServiceReporter(self_settings, settings.endpoint(port))
        registry.reporter.start()
    log.info(
        "registry serving",
        extra={
            "address": settings.bound_address(port),
            "database": db.async_url(settings.database_url).render_as_string(hide_password=True),
        },
    )
    return registry
