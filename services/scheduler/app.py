"""Assembles the scheduler: Redis, the mirror, the cache keeper, the selector, the server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from berth.v1 import scheduler_pb2, scheduler_pb2_grpc
from grpc import aio

from services.common import auth
from services.common.metrics import register_collector
from services.common.process import Serving
from services.common.reporter import ServiceReporter
from services.common.server import ServiceSpec, StartupError, build_server
from services.common.workers import reports_for_the_service, this_worker
from services.scheduler.filters import build_filters
from services.scheduler.groups import ServerGroups
from services.scheduler.keeper import CacheKeeper
from services.scheduler.metrics import CacheState
from services.scheduler.mirror import Mirror
from services.scheduler.selector import Selector
from services.scheduler.servicer import SchedulerServicer
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store import connection
from services.scheduler.store.placement import PlacementStore, unavailable_redis
from services.scheduler.weighers import build_weighers

log = logging.getLogger(__name__)

SERVICE_NAMES = [scheduler_pb2.DESCRIPTOR.services_by_name["SchedulerService"].full_name]
_S = "/berth.v1.SchedulerService/"
POLICY = auth.MethodPolicy(read_methods=frozenset({_S + "ListHostStates"}))


@dataclass
class Scheduler(Serving):
    """A running scheduler; `stop()` undoes `start_scheduler()`."""

    server: aio.Server
    port: int
    health: object
    keeper: CacheKeeper
    store: PlacementStore
    mirror: Mirror
    selector: Selector
    reporter: ServiceReporter | None = None

    async def drain(self) -> None:
        await self.stop_reporting()

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.drain()
        await self.server.stop(grace_s)
        await self.keeper.stop()
        await self.store.close()


async def start_scheduler(
    settings: SchedulerSettings, *, report_self: bool = True, wait_ready_s: float | None = None
) -> Scheduler:
    """Connect Redis, follow the registry and node service, serve. Tests pass
    `wait_ready_s` to return only once the HostState cache is built."""
    try:
        filters = build_filters(settings)
    except ValueError as exc:
        raise StartupError(f"BERTH_ENABLED_FILTERS: {exc}") from None
    weighers = build_weighers(settings)
    redis = connection.connect(settings.redis_url)
    store = PlacementStore(redis, settings.redis_prefix, settings.claim_ttl)
    mirror = Mirror()
    keeper = CacheKeeper(settings, mirror, store)
    groups = ServerGroups(settings, store, keeper.node_channel)
    selector = Selector(settings, mirror, store, filters, weighers, keeper.repair, groups)
    servicer = SchedulerServicer(settings, mirror, store, keeper, selector)
    spec = ServiceSpec(
        registrars=[
            lambda s: scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(servicer, s)
        ],
        service_names=SERVICE_NAMES,
        policy=POLICY,
        translators=(unavailable_redis,),
    )
    server, port, health = build_server(settings, spec)
    register_collector("scheduler-cache", CacheState(keeper))
    await keeper.start()
    await server.start()
    scheduler = Scheduler(server, port, health, keeper, store, mirror, selector)
    worker = this_worker()
    if report_self and reports_for_the_service():
        scheduler.reporter = ServiceReporter(settings, settings.endpoint(port))
        scheduler.reporter.start()
    log.info(
        "scheduler serving",
        extra={
            "address": settings.bound_address(port),
            "redis": redis.get_connection_kwargs().get("host", "?"),
            "filters": ",".join(f.name for f in filters),
            **({"worker": str(worker)} if worker else {}),
        },
    )
    if wait_ready_s is not None:
        await keeper.wait_ready(wait_ready_s)
    return scheduler
