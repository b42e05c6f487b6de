"""The node service's change feed: compute node events (see services/common/changefeed.py)."""

from __future__ import annotations

from berth.v1 import node_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.changefeed import EventFeed
from services.common.store import EventColumns
from services.node.store import repository as repo

NodeFeed = EventFeed[node_pb2.WatchComputeNodesResponse]


def decode(event: EventColumns) -> node_pb2.WatchComputeNodesResponse:
    response = node_pb2.WatchComputeNodesResponse(type=event.type, revision=event.revision)
    response.node.ParseFromString(event.payload)
    return response


def node_feed(
    sessions: async_sessionmaker[AsyncSession], *, poll_interval_s: float, retention: int
) -> NodeFeed:
    return EventFeed(
        sessions, repo.CHANGES, decode, poll_interval_s=poll_interval_s, retention=retention
    )
