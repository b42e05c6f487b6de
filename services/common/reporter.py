"""Every Berth process registers `(host, binary)` in the registry and heartbeats from then on.

The reporter never gives up: while the registry is unreachable it retries with backoff and
logs each failure once per attempt; when the registry forgets the service (deleted), it
registers again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import berth
import grpc
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

from services.common.backoff import Backoff, stopping
from services.common.channels import aio_channel, call_metadata
from services.common.settings import CommonSettings
from services.common.supervise import stop_tasks, supervised

log = logging.getLogger(__name__)

_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED,
}


class ServiceReporter:
    """Registers this process and keeps its heartbeat stream going, in a background task."""

    def __init__(self, settings: CommonSettings, endpoint: str) -> None:
        self._settings = settings
        self._binary = settings.binary
        self._endpoint = endpoint
        self._task: asyncio.Task[None] | None = None
        self.service_uuid: str | None = None
        self.registered = asyncio.Event()
        self.heartbeats = 0
        # The registry's service_down_time, as it said when this process registered.
        self.service_down_time_s: float | None = None
        self._call: Any = None

    def start(self) -> None:
        self._task = supervised(f"reporter:{self._binary}", self._run)

    async def stop(self) -> None:
        # End the heartbeat stream first, so the task's read ends at once.
        if self._call is not None:
            self._call.cancel()
        await stop_tasks(self._task)

    async def _run(self) -> None:
        target = self._settings.registry_url
        metadata = call_metadata(self._settings, target)
        # Retries never wait longer than a report interval: once the registry is back, every
        # process beats again within one interval, well inside its service_down_time.
        longest = self._settings.report_interval
        backoff = Backoff(min(0.5, longest), longest)
        async with aio_channel(target, self._settings) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            while True:
                try:
                    interval = await self._register(stub, metadata)
                    backoff.reset()
                    await self._beat(stub, metadata, interval)
                except Exception as exc:
                    # Whatever ended the stream — an RPC error, a write to a call that had
                    # already finished (InvalidStateError, after a registry restart), a
                    # reset connection — a new stream starts after the backoff.
                    if stopping():
                        raise
                    delay = backoff.next_delay()
                    self._retry_later(exc, target, delay)
                    await asyncio.sleep(delay)

    def _retry_later(self, exc: Exception, target: str, delay: float) -> None:
        if isinstance(exc, aio.AioRpcError):
            code, error = exc.code().name, exc.details()
            retryable = exc.code() in _RETRYABLE
        else:
            code, error, retryable = type(exc).__name__, str(exc) or repr(exc), True
        log.log(
            logging.WARNING if retryable else logging.ERROR,
            "cannot report to the registry; retrying",
            extra={"registry": target, "code": code, "error": error, "retry_in_s": round(delay, 1)},
        )

    async def _register(
        self,
        stub: registry_pb2_grpc.RegistryServiceAsyncStub,
        metadata: tuple[tuple[str, str], ...],
    ) -> float:
        request = registry_pb2.RegisterServiceRequest(
            host=self._settings.host,
            binary=self._binary,
            endpoint=self._endpoint,
            build_version=berth.__version__,
        )
        response = await stub.RegisterService(request, metadata=metadata, timeout=10)
        self.service_uuid = response.service.uuid
        if response.HasField("service_down_time"):
            self.service_down_time_s = response.service_down_time.ToTimedelta().total_seconds()
        self.registered.set()
        log.info(
            "registered",
            extra={
                "binary": self._binary,
                "host": self._settings.host,
                "uuid": self.service_uuid,
                "version": response.service.version,
            },
        )
        return (
            response.report_interval.ToTimedelta().total_seconds() or self._settings.report_interval
        )

    async def _beat(
        self,
        stub: registry_pb2_grpc.RegistryServiceAsyncStub,
        metadata: tuple[tuple[str, str], ...],
        interval: float,
    ) -> None:
        """Heartbeat over one stream until it fails; NOT_FOUND (deleted) returns to re-register."""
        interval = min(interval, self._settings.report_interval)
        call = self._call = stub.HeartbeatStream(metadata=metadata)
        try:
            while True:
                await call.write(
                    registry_pb2.HeartbeatStreamRequest(service_uuid=self.service_uuid or "")
                )
                async with asyncio.timeout(max(interval, 5.0)):
                    response = await call.read()
                if response is aio.EOF:
                    raise aio.AioRpcError(
                        grpc.StatusCode.UNAVAILABLE, None, None, details="heartbeat stream closed"
                    )
                self.heartbeats += 1
                await asyncio.sleep(interval)
        except aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                log.warning("the registry no longer knows this service; registering again")
                return
            raise
        except TimeoutError:
            raise aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED, None, None, details="no heartbeat answer"
            ) from None
        finally:
            call.cancel()
            self._call = None
