"""A registration whose caller left before its batch began is not written: agents retry
after their deadline, and a registry writing what nobody waits for any more (a cold start
larger than the database keeps up with) only puts their retries further back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from berth.v1 import registry_pb2, registry_pb2_grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from services.common import db
from services.common.metrics import RPC_HANDLED
from services.registry.metrics import REGISTRATIONS_ABANDONED
from tests.integration.registry.support import until

GONE = [f"gone-{i}" for i in range(5)]


def _cancelled_registrations() -> float:
    """RegisterService calls whose handler ended because the caller left."""
    return sum(
        s.value
        for s in RPC_HANDLED.collect()[0].samples
        if s.name.endswith("_total")
        and s.labels["grpc_method"] == "RegisterService"
        and s.labels["grpc_code"] == "CANCELLED"
    )


def _abandoned() -> float:
    return REGISTRATIONS_ABANDONED.collect()[0].samples[0].value


async def _waiting_on_a_lock(conn: AsyncConnection, backend: str) -> int:
    """Sessions of this database waiting for a lock another holds."""
    if backend == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    else:  # MariaDB: the statement on the counter in progress (while it is held: waiting)
        query = (
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = DATABASE() AND info LIKE 'UPDATE registry_revision%'"
        )
    return int((await conn.execute(text(query))).scalar_one())


@contextlib.asynccontextmanager
async def counter_held(url: str) -> AsyncIterator[AsyncConnection]:
    """Another transaction holds the registry's change-log counter: a batch of registrations
    waits at its end (when it records its events) until the block ends. Yields a second
    connection to watch the waiting from."""
    engine = create_async_engine(db.async_url(url))
    try:
        async with engine.connect() as holder, engine.connect() as watcher:
            await holder.execute(text("SELECT revision FROM registry_revision FOR UPDATE"))
            yield watcher
            await holder.rollback()
    finally:
        await engine.dispose()


async def test_registrations_whose_callers_left_are_dropped_unwritten(start, database):
    if database.backend == "sqlite":
        pytest.skip(
            "every SQLite transaction of the registry begins IMMEDIATE: a held lock stops a "
            "batch before it starts, so none can be caught waiting at its end"
        )
    registry = await start(database_timeout=60)
    async with grpc.aio.insecure_channel(registry.address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)

        def register(host: str, timeout: float) -> asyncio.Future:
            request = registry_pb2.RegisterServiceRequest(host=host, binary="berth-compute")
            return asyncio.ensure_future(stub.RegisterService(request, timeout=timeout))

        cancelled, abandoned = _cancelled_registrations(), _abandoned()
        async with counter_held(database.url) as watcher:
            first = register("kept-1", timeout=60)
            async with asyncio.timeout(30):  # its batch is written, waiting on the counter
                while not await _waiting_on_a_lock(watcher, database.backend):  # noqa: ASYNC110 - polls the database
                    await asyncio.sleep(0.02)
            # Queued behind it, these callers give up before their turn.
            for gone in await asyncio.gather(
                *(register(h, timeout=0.5) for h in GONE), return_exceptions=True
            ):
                assert isinstance(gone, grpc.aio.AioRpcError), gone
                assert gone.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            await until(
                lambda: _cancelled_registrations() >= cancelled + len(GONE),
                30,
                "the registry to see its callers leave",
            )
            late = register("kept-2", timeout=60)
        assert (await first).created and (await late).created

    listed = await stub_list(registry.address)
    assert "kept-1" in listed and "kept-2" in listed
    assert not set(GONE) & set(listed), "a registration nobody waited for was written"
    assert _abandoned() == abandoned + len(GONE)


async def stub_list(address: str) -> list[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        listed = await stub.ListServices(registry_pb2.ListServicesRequest())
    return [s.host for s in listed.services]
