"""The node service's change feed: compute node events (see services/common/changefeed.py)."""

from __future__ import annotations

from typing import cast

from berth.v1 import common_pb2, node_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.changefeed import EventFeed
from services.common.store import EventColumns
from services.node.store import repository as repo

NodeFeed = EventFeed[node_pb2.WatchComputeNodesResponse]


def decode(event: EventColumns) -> node_pb2.WatchComputeNodesResponse:
    kind = cast("common_pb2.EventType.ValueType", event.type)
    response = node_pb2.WatchComputeNodesResponse(type=kind, revision=event.revision)
    response.node.ParseFromString(event.payload)
    return response


def node_feed(
    sessions: async_sessionmaker[AsyncSession], *, poll_interval_s: float, retention: int
) -> NodeFeed:
    return EventFeed(
        sessions, repo.CHANGES, decode, poll_interval_s=poll_interval_s, retention=retention
    )
