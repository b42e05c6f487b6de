"""A database that hangs (frozen, not stopped): calls answer UNAVAILABLE within the database
timeout, and no service is reported down for a silence that was the registry's own."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

from services.registry.liveness import utcnow
from tests.frozen_proxy import FrozenProxy
from tests.integration.registry.support import register, until

DOWN_TIME = 2.0  # seconds
REPORT_INTERVAL = 0.2
DATABASE_TIMEOUT = 0.5
# Each step is bounded by the timeout; on a pooled connection the ping and its rollback
# are two (measured: 1.0 s with 0.5 s, on PostgreSQL and MariaDB).
ANSWER_WITHIN = 2 * DATABASE_TIMEOUT + 0.5


@pytest.fixture
def proxy(database):
    if database.backend == "sqlite":
        pytest.skip("a SQLite file cannot hang like a server; its busy timeout is the setting")
    proxy = FrozenProxy(database.url)
    yield proxy
    proxy.close()


class Observer:
    """Heartbeats for each service like its agent, and watches and lists like a scheduler,
    noting every report of one of them as down."""

    def __init__(self, stub: registry_pb2_grpc.RegistryServiceStub, uuids: set[str]) -> None:
        self.stub = stub
        self.uuids = uuids
        self.beats = dict.fromkeys(uuids, 0)
        self.down: list[tuple[str, str]] = []
        self.tasks = [asyncio.create_task(self._beat(u)) for u in uuids]
        self.tasks += [asyncio.create_task(self._watch()), asyncio.create_task(self._list())]

    def _note(self, how: str, service: registry_pb2.Service) -> None:
        if service.uuid in self.uuids and not service.up:
            self.down.append((how, service.host))

    async def _beat(self, uuid: str) -> None:
        while True:
            try:
                await self.stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=uuid))
                self.beats[uuid] += 1
            except aio.AioRpcError:
                pass
            await asyncio.sleep(REPORT_INTERVAL)

    async def _watch(self) -> None:
        revision = 0
        while True:
            try:
                request = registry_pb2.WatchServicesRequest(start_revision=revision)
                async for event in self.stub.WatchServices(request):
                    revision = max(revision, event.revision)
                    if event.HasField("service"):
                        self._note("watch", event.service)
            except aio.AioRpcError:
                await asyncio.sleep(0.1)

    async def _list(self) -> None:
        while True:
            try:
                listed = await self.stub.ListServices(registry_pb2.ListServicesRequest())
                for service in listed.services:
                    self._note("list", service)
            except aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _timed(call) -> tuple[grpc.StatusCode | None, float, str]:
    """(code, seconds, details) of a call; code None if it had not answered after 10 s."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(call, 10)
    except aio.AioRpcError as err:
        return err.code(), time.monotonic() - started, err.details() or ""
    except TimeoutError:
        return None, time.monotonic() - started, "no answer"
    return grpc.StatusCode.OK, time.monotonic() - started, ""


async def test_a_frozen_database_answers_unavailable_and_reports_nobody_down(start, proxy):
    registry = await start(
        clock=utcnow,
        database_url=proxy.url,
        node_url="127.0.0.1:1",
        service_down_time=DOWN_TIME,
        report_interval=REPORT_INTERVAL,
        sweep_interval=0.1,
        database_timeout=DATABASE_TIMEOUT,
    )
    sweeps: list[float] = []
    sweep = registry.services.sweep

    async def counted_sweep() -> int:
        flipped = await sweep()
        sweeps.append(time.monotonic())
        return flipped

    registry.services.sweep = counted_sweep  # type: ignore[method-assign]
    async with aio.insecure_channel(registry.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        uuids = {(await register(stub, f"compute-{i}")).uuid for i in range(6)}
        observer = Observer(stub, uuids)
        try:
            await until(lambda: min(observer.beats.values()) >= 2, 10, "first heartbeats")

            proxy.freeze()
            frozen_at = time.monotonic()
            # Calls without a client deadline: each answers UNAVAILABLE, with a sentence.
            for call in (
                stub.ListServices(registry_pb2.ListServicesRequest()),
                stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=min(uuids))),
                stub.RegisterService(
                    registry_pb2.RegisterServiceRequest(host="late", binary="berth-compute")
                ),
            ):
                code, took, details = await _timed(call)
                assert code is grpc.StatusCode.UNAVAILABLE, (code, details)
                assert "database" in details
                assert took < ANSWER_WITHIN, f"answered after {took:.2f} s"
            # Frozen for longer than service_down_time, while everyone keeps heartbeating.
            await until(lambda: time.monotonic() - frozen_at > 1.5 * DOWN_TIME, 10, "time")
            proxy.thaw()

            beats = dict(observer.beats)
            await until(
                lambda: all(observer.beats[u] > beats[u] for u in uuids), 10, "beats after thaw"
            )
            # The registration that failed is taken once asked again: nothing was left stuck.
            assert (await register(stub, "late")).host == "late"
            # Judge only after the registry has listened a whole down time again and swept.
            await until(lambda: not registry.liveness.in_grace(utcnow()), 10, "the grace")
            judged = time.monotonic()
            await until(lambda: len([s for s in sweeps if s > judged]) >= 3, 10, "sweeps")
        finally:
            await observer.stop()
    assert observer.down == []
