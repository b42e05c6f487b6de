"""NodeService over gRPC: proto in, domain call, proto out. No rules live here."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from berth.client.errors import BerthError, Internal, InvalidArgument
from berth.v1 import node_pb2, node_pb2_grpc
from grpc import aio

from services.common import auth, changefeed, validation
from services.common.interceptors import Translator, as_berth_error
from services.common.streams import pipelined, until_stopped
from services.node.events import NodeFeed
from services.node.metrics import SNAPSHOTS
from services.node.nodes import Nodes
from services.node.reports import SnapshotWriter
from services.node.snapshots import Validator

log = logging.getLogger(__name__)

# Snapshots of one stream written at once: enough to fill a writer batch from a few
# streams, few enough that one stream cannot queue unbounded work.
STREAM_WINDOW = 256


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    def __init__(
        self,
        nodes: Nodes,
        writer: SnapshotWriter,
        feed: NodeFeed,
        stopping: asyncio.Event,
        translators: tuple[Translator, ...] = (),
    ) -> None:
        self._translators = translators  # the server's own (see ErrorInterceptor)
        self._nodes = nodes
        self._writer = writer
        self._feed = feed
        self._stopping = stopping
        self._validate = Validator()

    async def ReportSnapshot(self, request, context):
        return await self._report(request)

    async def ReportSnapshotStream(
        self,
        request_iterator: AsyncIterator[node_pb2.ReportSnapshotStreamRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[node_pb2.ReportSnapshotStreamResponse]:
        """One answer per snapshot, in order; a refused snapshot is answered with its error
        and the stream goes on (the next snapshot may well be fine). Up to STREAM_WINDOW
        snapshots of one stream are written at once, so an agent's nodes (or a simulator's
        thousands) share the writer's batches."""
        requests = until_stopped(self._stopping, request_iterator)
        async for answer in pipelined(requests, self._answer, STREAM_WINDOW):
            yield answer

    async def _answer(
        self, request: node_pb2.ReportSnapshotStreamRequest
    ) -> node_pb2.ReportSnapshotStreamResponse:
        answer = node_pb2.ReportSnapshotStreamResponse(
            nodename=request.snapshot.nodename, sequence=request.snapshot.sequence
        )
        try:
            answer.accepted.CopyFrom(await self._report(request))
        except Exception as exc:
            # Whatever one snapshot meets (a database gone for a moment included) is that
            # snapshot's answer: ending the stream would fail every other one in flight.
            error = as_berth_error(exc, self._translators)
            if isinstance(error, Internal) and not isinstance(exc, BerthError):
                log.error(
                    "unexpected error storing the snapshot of %s/%s",
                    request.snapshot.host,
                    request.snapshot.nodename,
                    exc_info=exc,
                )
            answer.error_code = error.code.value[0]
            answer.error_reason = error.reason
            answer.error_message = error.message
        return answer

    async def _report(
        self, request: node_pb2.ReportSnapshotRequest | node_pb2.ReportSnapshotStreamRequest
    ) -> node_pb2.ReportSnapshotResponse:
        try:
            if not request.HasField("snapshot"):
                raise InvalidArgument.field("snapshot", "must be set")
            report = self._validate(request.snapshot)
            auth.require_host(report.host)  # an agent reports only for its own host
            answer = await self._writer.submit(report)
        except Exception as exc:
            SNAPSHOTS.labels(as_berth_error(exc, self._translators).reason.lower()).inc()
            raise
        SNAPSHOTS.labels("changed" if answer.changed else "unchanged").inc()
        return answer

    async def ListComputeNodes(self, request, context):
        host = validation.name("host", request.host, required=False)
        nodes, token = await self._nodes.list_page(
            host=host, pattern="", page_size=request.page_size, page_token=request.page_token
        )
        return node_pb2.ListComputeNodesResponse(nodes=nodes, next_page_token=token)

    async def GetComputeNode(self, request, context):
        return node_pb2.GetComputeNodeResponse(node=await self._nodes.get(request.node))

    async def SearchComputeNodes(self, request, context):
        pattern = validation.name("nodename_pattern", request.nodename_pattern)
        nodes, token = await self._nodes.list_page(
            host="", pattern=pattern, page_size=request.page_size, page_token=request.page_token
        )
        return node_pb2.SearchComputeNodesResponse(nodes=nodes, next_page_token=token)

    async def GetStatistics(self, request, context):
        return await self._nodes.statistics()

    async def ListNodeInstances(self, request, context):
        instances, token = await self._nodes.instances_page(request)
        return node_pb2.ListNodeInstancesResponse(instances=instances, next_page_token=token)

    async def GetHostUsage(self, request, context):
        return await self._nodes.host_usage(request.host)

    async def DeleteComputeNode(self, request, context):
        await self._nodes.delete(request.node)
        return node_pb2.DeleteComputeNodeResponse()

    async def DeleteHostNodes(self, request, context):
        return node_pb2.DeleteHostNodesResponse(deleted=await self._nodes.delete_host(request.host))

    async def WatchComputeNodes(self, request, context):
        batch = changefeed.listing_batch(request.listing_batch)
        listing = functools.partial(self._nodes.listing, batch)
        stream = self._feed.watch(request.start_revision, listing, self._stopping)
        async for event in stream:
            yield event
