"""A Redis server that restarts empty (a new process, no data): pending claims survive."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from berth.cli.embedded_redis import EmbeddedRedis, find_redis_server
from berth.v1 import scheduler_pb2
from grpc import aio

from tests.integration.scheduler.cloud import Cloud, eventually, spec
from tests.ports import free_port


@pytest.fixture
def redis_server(tmp_path: Path):
    """A redis-server of this test's own, on a free port, with nothing on disk."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server to start")
    # Below the ephemeral range: while the server is down, the schedulers' reconnects take
    # ephemeral ports, and one could take its port (or connect to itself on it).
    server = EmbeddedRedis(tmp_path / "redis-1", free_port(), binary=binary, appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _restarted_empty(server: EmbeddedRedis, tmp_path: Path) -> EmbeddedRedis:
    """`server` dies and a new one starts on its port with no data at all."""
    server.stop()
    restarted = EmbeddedRedis(
        tmp_path / "redis-2", server.port, binary=server.binary, appendonly=False
    )
    return restarted.start()


async def _claim_counts(stub) -> list[int]:
    states = await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest())
    return [len(s.pending_claims) for s in states.host_states]


async def test_claims_survive_a_redis_that_restarts_empty(
    start, start_node, redis_server, tmp_path: Path
):
    node_service = await start_node()
    registry = await start(node_url=node_service.address)
    cloud = Cloud(registry, node_service.address, redis_server.url, tmp_path)
    try:
        await cloud.add_host("c1", memory_mb=4 * 2048 + 512, ram_allocation_ratio=1.0)
        _, first = await cloud.start_scheduler(max_attempts=1)
        _, second = await cloud.start_scheduler(max_attempts=1)
        await first.SelectDestinations(spec("m1.small", count=2))
        await second.SelectDestinations(spec("m1.small"))

        for stub in (first, second):
            await eventually(lambda stub=stub: _holds(stub, 3), what="3 claims held")

        restarted = _restarted_empty(redis_server, tmp_path)
        try:
            for stub in (first, second):
                try:
                    await eventually(lambda stub=stub: _holds(stub, 3))
                except AssertionError:
                    log = restarted.log_path.read_text(errors="replace")[-1500:]
                    raise AssertionError(
                        f"the 3 pending claims were not written back into the new Redis "
                        f"(running: {restarted.running()}; claims seen: "
                        f"{await _claim_counts(stub)}); its log ends:\n{log}"
                    ) from None
            # They still hold the room: one m1.small fits, a second one does not.
            await first.SelectDestinations(spec("m1.small"))
            with pytest.raises(aio.AioRpcError) as err:
                await second.SelectDestinations(spec("m1.small"))
            assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            restarted.stop()
    finally:
        await cloud.close()


async def test_claims_survive_when_another_replica_rebuilds_the_empty_redis_first(
    start, start_node, redis_server, tmp_path: Path
):
    """A replica that knows none of the claims (it started after Redis came back empty)
    builds the cache first: the replicas that hold the claims still put them back."""
    node_service = await start_node()
    registry = await start(node_url=node_service.address)
    cloud = Cloud(registry, node_service.address, redis_server.url, tmp_path)
    try:
        await cloud.add_host("c1", memory_mb=4 * 2048 + 512, ram_allocation_ratio=1.0)
        # They notice a lost cache late: the newcomer rebuilds it first.
        _, first = await cloud.start_scheduler(max_attempts=1, cache_check_interval=2.0)
        _, second = await cloud.start_scheduler(max_attempts=1, cache_check_interval=2.0)
        await first.SelectDestinations(spec("m1.small", count=2))
        await second.SelectDestinations(spec("m1.small"))
        await eventually(lambda: _holds(first, 3), what="3 claims held")

        restarted = _restarted_empty(redis_server, tmp_path)
        try:
            _, newcomer = await cloud.start_scheduler(max_attempts=1)
            for stub in (first, second, newcomer):
                await eventually(
                    lambda stub=stub: _holds(stub, 3),
                    within_s=60,
                    what="the 3 pending claims written back by the replicas that hold them",
                )
            with pytest.raises(aio.AioRpcError) as err:  # one room is left, not four
                await newcomer.SelectDestinations(spec("m1.small", count=2))
            assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            restarted.stop()
    finally:
        await cloud.close()


async def _holds(stub, count: int) -> bool:
    try:
        return await _claim_counts(stub) == [count]
    except aio.AioRpcError:
        return False  # Redis is away: ListHostStates reads it
