"""SchedulerService over gRPC: proto in, domain call, proto out. No rules live here."""

from __future__ import annotations

import bisect
from typing import Any

from berth.client.errors import InvalidArgument, ResourceExhausted, Unavailable
from berth.v1 import scheduler_pb2, scheduler_pb2_grpc

from services.common import paging, validation
from services.scheduler import convert
from services.scheduler.keeper import CacheKeeper
from services.scheduler.metrics import FILTER_REJECTIONS, PLACEMENTS
from services.scheduler.mirror import Mirror
from services.scheduler.request import Request
from services.scheduler.selector import NO_VALID_HOST, Selector
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store.placement import PlacementStore
from services.scheduler.validate import claim_ids, request_from_spec

_PLACED = PLACEMENTS.labels("placed")
# How long a request naming a zone this replica has not heard of waits for the registry's
# next events: a zone created a moment ago is then known (read your writes), and a zone
# that does not exist is refused after this wait.
ZONE_WAIT_S = 2.0


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServiceServicer):
    def __init__(
        self,
        settings: SchedulerSettings,
        mirror: Mirror,
        store: PlacementStore,
        keeper: CacheKeeper,
        selector: Selector,
    ) -> None:
        self._settings = settings
        self._mirror = mirror
        self._store = store
        self._keeper = keeper
        self._selector = selector

    def _require_ready(self) -> None:
        if not self._keeper.ready.is_set():
            raise Unavailable(
                "the scheduler is still building its HostState cache from the registry and "
                "the node service; try again shortly",
                reason="CACHE_NOT_READY",
            )

    async def _request(self, message: Any) -> Request:
        """The validated RequestSpec of a SelectDestinations or ClaimAlternate request."""
        if not message.HasField("spec"):
            raise InvalidArgument.field("spec", "must be set")
        if zone := message.spec.availability_zone:
            await self._keeper.learn_zone(zone, ZONE_WAIT_S)  # at once when already known
        return request_from_spec(
            message.spec,
            max_instances=self._settings.max_instances_per_request,
            zones=self._mirror.zones,
        )

    async def SelectDestinations(self, request, context):
        spec = await self._request(request)
        self._require_ready()
        try:
            placements = await self._selector.select(spec)
        except ResourceExhausted as exc:
            if exc.reason == NO_VALID_HOST:
                PLACEMENTS.labels("no_valid_host").inc()
                for name, count in exc.metadata.items():
                    if name not in ("nodes", "placed"):
                        FILTER_REJECTIONS.labels(name).inc(int(count))
            raise
        _PLACED.inc(len(placements))
        return scheduler_pb2.SelectDestinationsResponse(
            selections=[
                scheduler_pb2.Selection(
                    instance_uuid=p.instance_uuid,
                    primary=convert.claim_proto(
                        p.primary[1], p.primary[0].host, p.primary[0].nodename
                    ),
                    alternates=[
                        convert.alternate_proto(s, p.instance_uuid, spec.resources)
                        for s in p.alternates
                    ],
                )
                for p in placements
            ]
        )

    async def ClaimAlternate(self, request, context):
        spec = await self._request(request)
        instance_uuid = validation.uuid("instance_uuid", request.instance_uuid)
        node_uuid = validation.uuid("node_uuid", request.node_uuid)
        if request.spec.instance_uuids and instance_uuid not in spec.instance_uuids:
            raise InvalidArgument.field("instance_uuid", "must be one of spec.instance_uuids")
        self._require_ready()
        state, claim = await self._selector.claim_alternate(spec, instance_uuid, node_uuid)
        return scheduler_pb2.ClaimAlternateResponse(
            claim=convert.claim_proto(claim, state.host, state.nodename)
        )

    async def ReleaseClaims(self, request, context):
        ids = claim_ids(request.claim_ids)
        released = await self._store.release(ids)
        self._mirror.remove_claims(ids)
        return scheduler_pb2.ReleaseClaimsResponse(released=released)

    async def ListHostStates(self, request, context):
        host = validation.name("host", request.host, required=False)
        query = ("host-states", host)
        page = paging.read_page(request.page_size, request.page_token, query)
        order = sorted(self._mirror.node_uuids_of(host)) if host else self._mirror.order()
        start = 0 if page.after is None else bisect.bisect_right(order, str(page.after))
        chunk = order[start : start + page.size + 1]
        stored = await self._store.read_states(chunk[: page.size])
        states = [convert.merge_stored(s, facts, claims) for _, s, facts, claims in stored]
        token = paging.encode_token(chunk[page.size - 1], query) if len(chunk) > page.size else ""
        return scheduler_pb2.ListHostStatesResponse(host_states=states, next_page_token=token)

    async def Resync(self, request, context):
        result = await self._keeper.resync()
        return scheduler_pb2.ResyncResponse(
            nodes=result.nodes,
            services=result.services,
            duration_ms=int(result.duration_s * 1000),
        )
