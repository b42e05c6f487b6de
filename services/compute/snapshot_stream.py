"""Every node of an agent reports over one ReportSnapshotStream: a streamed message costs
the node service far less than a unary call. The stream opens on first use and again
after it fails; its answers come in the order the snapshots went, so each send awaits its
own place in line. A node service of an older release (no stream: UNIMPLEMENTED) gets
unary calls instead.

Failures look like the unary call's: an aio.AioRpcError with the code the node service
gave the snapshot (ABORTED for a stale one, ...) or that the stream ended with
(UNAVAILABLE, DEADLINE_EXCEEDED): the pusher retries the same way either way."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import grpc
from berth.v1 import node_pb2, node_pb2_grpc
from grpc import aio

from services.common.supervise import stop_tasks

log = logging.getLogger(__name__)

_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _error(code: grpc.StatusCode, details: str) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(), details=details)


class SnapshotStream:
    def __init__(
        self,
        stub: node_pb2_grpc.NodeServiceAsyncStub,
        metadata: tuple[tuple[str, str], ...],
        *,
        timeout_s: float,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._timeout_s = timeout_s
        self._call: aio.StreamStreamCall | None = None
        self._reader: asyncio.Task[None] | None = None
        # The sends waiting for their answers, oldest first (answers come in that order).
        self._waiting: deque[asyncio.Future[node_pb2.ReportSnapshotStreamResponse]] = deque()
        self._write_lock = asyncio.Lock()
        self.unary = False  # the node service has no stream: unary calls

    async def report(self, snapshot: node_pb2.ResourceSnapshot) -> node_pb2.ReportSnapshotResponse:
        """The node service's answer to `snapshot`; aio.AioRpcError when it refused it or
        could not be asked."""
        if not self.unary:
            try:
                return await self._streamed(snapshot)
            except aio.AioRpcError:
                if not self.unary:
                    raise
                # The node service has no stream (it said so just now): the unary call.
        return await self._stub.ReportSnapshot(
            node_pb2.ReportSnapshotRequest(snapshot=snapshot),
            metadata=self._metadata,
            timeout=self._timeout_s,
        )

    async def _streamed(
        self, snapshot: node_pb2.ResourceSnapshot
    ) -> node_pb2.ReportSnapshotResponse:
        answer: asyncio.Future[node_pb2.ReportSnapshotStreamResponse]
        answer = asyncio.get_running_loop().create_future()
        # Its error is read here even if its sender is gone by then.
        answer.add_done_callback(lambda done: done.cancelled() or done.exception())
        async with self._write_lock:  # a write and its place in line go together
            call = self._open()
            self._waiting.append(answer)
            try:
                await call.write(node_pb2.ReportSnapshotStreamRequest(snapshot=snapshot))
            except Exception as exc:  # the stream ended under the write: the reader says how
                self._end(call, _error(grpc.StatusCode.UNAVAILABLE, f"snapshot stream: {exc!r}"))
        try:
            # Awaited directly: a stopping pusher cancels its own place in line, and the
            # reader passes over a cancelled place when that answer comes.
            async with asyncio.timeout(self._timeout_s):
                response = await answer
        except TimeoutError:
            # Later answers would come out of line: end this stream, start a new one.
            self._end(call, _error(grpc.StatusCode.DEADLINE_EXCEEDED, "no answer in time"))
            raise _error(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the node service did not answer a snapshot within {self._timeout_s:g} s",
            ) from None
        if response.error_code:
            code = _CODES.get(response.error_code, grpc.StatusCode.UNKNOWN)
            raise _error(code, response.error_message)
        return response.accepted

    def _open(self) -> aio.StreamStreamCall:
        if self._call is None:
            self._call = self._stub.ReportSnapshotStream(metadata=self._metadata)
            self._reader = asyncio.create_task(self._read(self._call), name="snapshot-stream")
        return self._call

    async def _read(self, call: aio.StreamStreamCall) -> None:
        """Hand each answer to the oldest waiting send; when the stream ends, fail the rest."""
        try:
            async for response in call:
                if self._waiting:
                    future = self._waiting.popleft()
                    if not future.done():
                        future.set_result(response)
            ended = _error(grpc.StatusCode.UNAVAILABLE, "the node service ended the stream")
        except aio.AioRpcError as exc:
            ended = exc
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                log.info("the node service has no snapshot stream; reporting with unary calls")
                self.unary = True
        except asyncio.CancelledError:
            ended = _error(grpc.StatusCode.UNAVAILABLE, "snapshot stream closed")
        self._end(call, ended)

    def _end(self, call: aio.StreamStreamCall, error: aio.AioRpcError) -> None:
        """This stream is done: every send still waiting on it fails with `error`."""
        if self._call is not call:
            return
        self._call = None
        call.cancel()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        if self._call is not None:
            self._end(self._call, _error(grpc.StatusCode.CANCELLED, "the agent is stopping"))
        await stop_tasks(self._reader)
        self._reader = None
