"""What the agent tells the node service: each node's snapshots, and nodes that are gone.

Only the newest pending snapshot matters (each is the tracker's whole view), so a snapshot
taken while an older one waits replaces it. While the node service is unreachable the
pusher backs off and then sends whatever is newest at that moment; it never gives up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
from berth.v1 import node_pb2, node_pb2_grpc
from grpc import aio

from services.common.backoff import Backoff, stopping
from services.common.supervise import stop_tasks, supervised

log = logging.getLogger(__name__)

REPORT_TIMEOUT_S = 10.0
# Codes that mean "the node service is not there right now", as opposed to "it said no".
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

NodeUuidListener = Callable[[str], Awaitable[None]]


class SnapshotSender(Protocol):
    """How a snapshot reaches the node service (snapshot_stream.SnapshotStream): its
    answer, or aio.AioRpcError as a unary ReportSnapshot would raise it."""

    async def report(
        self, snapshot: node_pb2.ResourceSnapshot
    ) -> node_pb2.ReportSnapshotResponse: ...


class SnapshotPusher:
    """One node's background reporter. `offer()` a snapshot; `wait_reported(seq)` waits
    until the node service accepted a snapshot with at least that sequence."""

    def __init__(
        self,
        sender: SnapshotSender,
        *,
        node_service: str,
        on_node_uuid: NodeUuidListener | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self._sender = sender
        self._node_service = node_service
        self._on_node_uuid = on_node_uuid
        self._backoff = backoff or Backoff()
        self._pending: node_pb2.ResourceSnapshot | None = None
        self._wake = asyncio.Event()
        self._reported = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        # The sequence of the newest snapshot the node service accepted, and its answer.
        self.reported_sequence = 0
        self.last_response: node_pb2.ReportSnapshotResponse | None = None
        self.failures = 0
        # Whether the last send failed (until one succeeds): the node service is down or
        # refusing, so waiting for it to accept a snapshot would only delay the caller.
        self.failing = False

    def offer(self, snapshot: node_pb2.ResourceSnapshot) -> None:
        """Queue `snapshot` for sending, replacing any older one not yet sent."""
        self._pending = snapshot
        self._wake.set()

    def start(self, name: str) -> None:
        self._task = supervised(f"snapshot-pusher:{name}", self._run)

    async def stop(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    async def wait_reported(self, min_sequence: int, timeout_s: float | None = None) -> None:
        """Return once a snapshot with sequence >= `min_sequence` has been accepted;
        TimeoutError after `timeout_s` (None: wait as long as it takes)."""
        async with asyncio.timeout(timeout_s), self._reported:
            await self._reported.wait_for(lambda: self.reported_sequence >= min_sequence)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            snapshot, self._pending = self._pending, None
            if snapshot is None:
                continue
            delay = await self._send(snapshot)
            if delay is not None:
                if self._pending is None:  # nothing newer arrived: this one is still the truth
                    self._pending = snapshot
                await asyncio.sleep(delay)
                self._wake.set()

    async def _send(self, snapshot: node_pb2.ResourceSnapshot) -> float | None:
        """Send one snapshot; the delay before trying again, or None when done with it."""
        try:
            response = await self._sender.report(snapshot)
        except aio.AioRpcError as exc:
            if stopping():
                raise
            return self._failed(snapshot, exc.code(), exc.details() or "")
        except Exception as exc:  # a bug must not end the reporting of this node
            log.exception("cannot send a snapshot", extra={"node": snapshot.nodename})
            return self._failed(snapshot, grpc.StatusCode.UNKNOWN, str(exc))
        self._backoff.reset()
        self.failing = False
        await self._accepted(snapshot, response)
        return None

    def _failed(
        self, snapshot: node_pb2.ResourceSnapshot, code: grpc.StatusCode, details: str
    ) -> float | None:
        fields = {"node": snapshot.nodename, "sequence": snapshot.sequence, "code": code.name}
        if code is grpc.StatusCode.ABORTED:
            log.debug("snapshot refused as stale: a newer one already landed", extra=fields)
            return None
        self.failures += 1
        self.failing = True
        delay = self._backoff.next_delay()
        fields |= {
            "node_service": self._node_service,
            "error": details,
            "retry_in_s": round(delay, 1),
        }
        if code in _UNREACHABLE:
            log.warning("node service unreachable; retrying", extra=fields)
        elif code is grpc.StatusCode.FAILED_PRECONDITION:
            log.error(
                "node service refused the snapshot (node owned by another host?)", extra=fields
            )
        else:
            log.error("node service refused the snapshot; retrying", extra=fields)
        return delay

    async def _accepted(
        self, snapshot: node_pb2.ResourceSnapshot, response: node_pb2.ReportSnapshotResponse
    ) -> None:
        if response.node_uuid and response.node_uuid != snapshot.node_uuid and self._on_node_uuid:
            await self._on_node_uuid(response.node_uuid)
        async with self._reported:
            self.reported_sequence = max(self.reported_sequence, snapshot.sequence)
            self.last_response = response
            self._reported.notify_all()


async def delete_node(
    stub: node_pb2_grpc.NodeServiceAsyncStub,
    metadata: tuple[tuple[str, str], ...],
    nodename: str,
    node_uuid: str,
) -> None:
    """Tell the node service a node is gone, retrying while it is unreachable; a node it
    does not know is already what we want."""
    request = node_pb2.DeleteComputeNodeRequest(node=node_pb2.ComputeNodeRef(uuid=node_uuid))
    backoff = Backoff()
    fields: dict[str, object] = {"node": nodename, "node_uuid": node_uuid}
    while True:
        try:
            await stub.DeleteComputeNode(request, metadata=metadata, timeout=REPORT_TIMEOUT_S)
        except aio.AioRpcError as exc:
            if stopping():
                raise
            code = exc.code()
            if code is grpc.StatusCode.NOT_FOUND:
                return
            fields |= {"code": code.name, "error": exc.details()}
            if code not in _UNREACHABLE:
                log.error("the node service refused to delete the node", extra=fields)
                return
            delay = backoff.next_delay()
            log.warning(
                "cannot delete the node: node service unreachable; retrying",
                extra=fields | {"retry_in_s": round(delay, 1)},
            )
            await asyncio.sleep(delay)
        else:
            log.info("node deleted from the node service", extra=fields)
            return
