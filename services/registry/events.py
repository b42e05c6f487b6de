"""The registry's change feed: service and aggregate events (see services/common/changefeed.py)."""

from __future__ import annotations

from typing import cast

from berth.v1 import common_pb2, registry_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.changefeed import EventFeed
from services.common.store import EventColumns
from services.registry.store import repository as repo

ServiceFeed = EventFeed[registry_pb2.WatchServicesResponse]


def decode(event: EventColumns) -> registry_pb2.WatchServicesResponse:
    kind = cast("common_pb2.EventType.ValueType", event.type)
    response = registry_pb2.WatchServicesResponse(type=kind, revision=event.revision)
    if event.kind == "service":
        response.service.ParseFromString(event.payload)
    else:
        response.aggregate.ParseFromString(event.payload)
    return response


def service_feed(
    sessions: async_sessionmaker[AsyncSession], *, poll_interval_s: float, retention: int
) -> ServiceFeed:
    return EventFeed(
        sessions, repo.CHANGES, decode, poll_interval_s=poll_interval_s, retention=retention
    )
