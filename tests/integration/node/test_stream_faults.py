"""ReportSnapshotStream when the database stalls: through an outage the snapshots it hits
are answered UNAVAILABLE one by one and the same stream goes on; a node's newer snapshot
that arrives while its creation waits on the database waits for it, then is judged."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator

import grpc
import pytest
from berth.v1 import node_pb2, node_pb2_grpc
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.common import db
from services.node.metrics import FIRST_REPORTS
from tests.integration.node.support import by_key, snapshot
from tests.integration.registry.support import until

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


@contextlib.asynccontextmanager
async def _sqlite_held(database, begin: str) -> AsyncIterator[None]:
    holder = sqlite3.connect(
        make_url(database.url).database, isolation_level=None, timeout=30, check_same_thread=False
    )
    # In a thread: the service's own commits, on this loop, must go on while it waits.
    await asyncio.to_thread(holder.execute, begin)
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextlib.asynccontextmanager
async def nodes_table_held(database) -> AsyncIterator[None]:
    """Another session holds the nodes table: the node service can neither read nor write
    it until the block ends (a database that stopped answering, as far as it can tell)."""
    if database.backend == "sqlite":
        async with _sqlite_held(database, "BEGIN EXCLUSIVE"):
            yield
        return
    engine = create_async_engine(db.async_url(database.url))
    try:
        async with engine.connect() as holder:
            if database.backend == "postgresql":
                await holder.execute(text("LOCK TABLE compute_nodes IN ACCESS EXCLUSIVE MODE"))
                yield
                await holder.rollback()
            else:
                await holder.execute(text("LOCK TABLES compute_nodes WRITE"))
                yield
                await holder.execute(text("UNLOCK TABLES"))
    finally:
        await engine.dispose()


async def test_a_database_outage_is_answered_per_snapshot_and_the_stream_goes_on(
    start_node, database
):
    service = await start_node(database_timeout=1.0)
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = node_pb2_grpc.NodeServiceStub(channel)
        call = stub.ReportSnapshotStream()

        async def report(
            *sent: node_pb2.ResourceSnapshot,
        ) -> list[node_pb2.ReportSnapshotStreamResponse]:
            for one in sent:  # all in flight at once, as an agent's nodes are
                await call.write(node_pb2.ReportSnapshotStreamRequest(snapshot=one))
            answers = []
            async with asyncio.timeout(60):
                for one in sent:
                    answer = await call.read()
                    assert (answer.nodename, answer.sequence) == (one.nodename, one.sequence)
                    answers.append(answer)
            return answers

        (first,) = await report(snapshot("f1", sequence=1, vcpus=8))
        assert first.error_code == 0 and first.accepted.node_uuid
        async with nodes_table_held(database):
            # A known node's change and a new node's first report.
            hits = await report(snapshot("f1", sequence=2, vcpus=12), snapshot("f2", sequence=1))
            for hit in hits:
                assert hit.error_code == UNAVAILABLE, hit
                assert hit.error_reason == "DATABASE_UNAVAILABLE"
                assert "try again" in hit.error_message
        after = await report(snapshot("f1", sequence=3, vcpus=16), snapshot("f2", sequence=2))
        assert [a.error_code for a in after] == [0, 0], after
        assert after[0].accepted.node_uuid == first.accepted.node_uuid
        await call.done_writing()
        assert await call.read() == grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        node = (await stub.GetComputeNode(node_pb2.GetComputeNodeRequest(node=by_key("f1")))).node
        assert node.total.vcpus == 16


@contextlib.asynccontextmanager
async def change_log_held(database) -> AsyncIterator[None]:
    """Another transaction holds the node service's change-log counter: a transaction that
    records an event (a node's creation) waits at its end until the block ends."""
    engine = create_async_engine(db.async_url(database.url))
    try:
        async with engine.connect() as holder:
            await holder.execute(text("SELECT revision FROM node_revision FOR UPDATE"))
            yield
            await holder.rollback()
    finally:
        await engine.dispose()


async def test_a_snapshot_arriving_while_its_node_is_created_waits_and_keeps_its_order(
    start_node, database
):
    if database.backend == "sqlite":
        pytest.skip(
            "every SQLite transaction of the service begins IMMEDIATE: a held lock stops the "
            "batch before it reads, so no creation can be caught half-way"
        )
    service = await start_node()
    held = service.writer._creating  # the writer's nodes being created, and what waits
    batched_before, single_before = _first_reports("batch"), _first_reports("single")
    async with grpc.aio.insecure_channel(service.address) as channel:
        call = node_pb2_grpc.NodeServiceStub(channel).ReportSnapshotStream()
        async with change_log_held(database):
            await call.write(node_pb2.ReportSnapshotStreamRequest(snapshot=snapshot("t1")))
            await until(lambda: ("t1", "t1") in held, 30, "the creation to start")
            newer = snapshot("t1", sequence=2, vcpus=32)
            await call.write(node_pb2.ReportSnapshotStreamRequest(snapshot=newer))
            await until(lambda: len(held.get(("t1", "t1"), ())) == 1, 30, "the newer to wait")
        first, second = await call.read(), await call.read()
        await call.done_writing()
    assert (first.error_code, second.error_code) == (0, 0), (first, second)
    assert first.accepted.node_uuid == second.accepted.node_uuid
    assert (first.accepted.generation, second.accepted.generation) == (1, 2)
    # One creation, in the batch path: the newer snapshot was judged as a known node's.
    assert _first_reports("batch") - batched_before == 1
    assert _first_reports("single") == single_before
    assert not held


def _first_reports(path: str) -> float:
    return FIRST_REPORTS.labels(path)._value.get()
