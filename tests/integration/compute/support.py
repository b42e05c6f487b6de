"""Helpers for the compute agent's tests: a channel to an agent, and a stand-in NodeService
on a real server that records what agents send and answers as told."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from berth.v1 import compute_pb2_grpc, node_pb2, node_pb2_grpc
from grpc import aio

from services.compute.app import Agent


@contextlib.asynccontextmanager
async def agent_stub(agent: Agent) -> AsyncIterator[compute_pb2_grpc.ComputeAgentServiceStub]:
    """A stub on a fresh channel to `agent`, closed on exit."""
    async with aio.insecure_channel(agent.address) as channel:
        yield compute_pb2_grpc.ComputeAgentServiceStub(channel)


class FakeNodeService(node_pb2_grpc.NodeServiceServicer):
    """Accepts every snapshot (unless `refuse_with` is set) and remembers it, over the
    stream agents use, or (with `streams` False, as a node service of an older release)
    only over the unary call."""

    def __init__(self) -> None:
        self.streams = True
        self.streamed = 0  # snapshots that came over a stream
        self.snapshots: list[node_pb2.ResourceSnapshot] = []
        self.deleted: list[str] = []
        self.refuse_with: grpc.StatusCode | None = None
        self.refused = 0
        self.node_uuids: dict[str, str] = {}  # nodename -> the uuid to answer with
        self.changed = asyncio.Condition()
        self.address = ""

    async def ReportSnapshot(self, request, context):
        answer = await self._answer(request.snapshot)
        if answer is None:
            await context.abort(self.refuse_with, "refused by the test")
        return answer

    async def ReportSnapshotStream(self, request_iterator, context):
        if not self.streams:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        async for request in request_iterator:
            self.streamed += 1
            answer = await self._answer(request.snapshot)
            reply = node_pb2.ReportSnapshotStreamResponse(
                nodename=request.snapshot.nodename, sequence=request.snapshot.sequence
            )
            if answer is None:
                assert self.refuse_with is not None
                reply.error_code = self.refuse_with.value[0]
                reply.error_message = "refused by the test"
            else:
                reply.accepted.CopyFrom(answer)
            yield reply

    async def _answer(
        self, snapshot: node_pb2.ResourceSnapshot
    ) -> node_pb2.ReportSnapshotResponse | None:
        """The answer to `snapshot`, None when the test has it refused."""
        if self.refuse_with is not None:
            async with self.changed:
                self.refused += 1
                self.changed.notify_all()
            return None
        async with self.changed:
            self.snapshots.append(snapshot)
            self.changed.notify_all()
        node_uuid = self.node_uuids.get(snapshot.nodename, snapshot.node_uuid)
        return node_pb2.ReportSnapshotResponse(node_uuid=node_uuid, generation=1, changed=True)

    async def DeleteComputeNode(self, request, context):
        async with self.changed:
            self.deleted.append(request.node.uuid)
            self.changed.notify_all()
        return node_pb2.DeleteComputeNodeResponse()

    def latest(self, nodename: str) -> node_pb2.ResourceSnapshot:
        return [s for s in self.snapshots if s.nodename == nodename][-1]

    async def wait_for(self, predicate, timeout_s: float = 10.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), timeout_s)


@contextlib.asynccontextmanager
async def serve_fake_node_service(address: str = "127.0.0.1:0") -> AsyncIterator[FakeNodeService]:
    fake = FakeNodeService()
    server = aio.server()
    node_pb2_grpc.add_NodeServiceServicer_to_server(fake, server)
    port = server.add_insecure_port(address)
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await server.stop(0)
