"""A cold start of 10,000 agents: every one sends its node's first snapshot at the same
moment, each over its own ReportSnapshotStream, through the agent's own SnapshotPusher
(its deadline, REPORT_TIMEOUT_S, and its backoff after a failure). The node service runs
as an operator sizing for such a fleet would run it (a real process on PostgreSQL,
BERTH_WORKERS=2). Every node must be created exactly once, every agent must learn its
node's uuid (with its next periodic snapshot at the latest, as after a lost answer), and
the node service must keep nothing it did not answer for. How long the cold start takes is
a benchmark's figure (bench/fleet.py, bench/snapshots.py's create phase); it is printed
here for the log only."""

from __future__ import annotations

import asyncio
import time

import pytest
from berth.v1 import node_pb2, node_pb2_grpc
from grpc import aio

from services.compute.pusher import REPORT_TIMEOUT_S, SnapshotPusher
from services.compute.snapshot_stream import SnapshotStream
from tests.e2e.fleet import Fleet
from tests.integration.node.support import snapshot

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

AGENTS = 10_000
CONNECTIONS = 100  # agents each have their own; 100 keep the test process's own cost down


async def cold_start(fleet: Fleet) -> tuple[dict[str, SnapshotPusher], float]:
    """Every agent's first report at once, then (once every node exists) its next periodic
    one. -> (host: its pusher, seconds until every node existed)."""
    channels = [
        aio.insecure_channel(fleet.node, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]
    streams = [
        SnapshotStream(
            node_pb2_grpc.NodeServiceStub(channels[i % CONNECTIONS]), (), timeout_s=REPORT_TIMEOUT_S
        )
        for i in range(AGENTS)
    ]
    pushers = {
        f"cold-{i:05d}": SnapshotPusher(stream, node_service=fleet.node)
        for i, stream in enumerate(streams)
    }
    try:
        started = time.monotonic()
        for i, (host, pusher) in enumerate(pushers.items()):
            pusher.offer(snapshot(host, vcpus=16 + i % 3))
            pusher.start(host)
        # The node service is another process: its count is polled (it has no event).
        while await asyncio.to_thread(node_count, fleet) < AGENTS:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        created_s = time.monotonic() - started
        for i, (host, pusher) in enumerate(pushers.items()):
            pusher.offer(snapshot(host, sequence=2, vcpus=16 + i % 3))
        await asyncio.gather(*(p.wait_reported(2) for p in pushers.values()))
    finally:
        for pusher in pushers.values():
            await pusher.stop()
        for stream in streams:
            await stream.close()
        for channel in channels:
            await channel.close()
    return pushers, created_s


def node_count(fleet: Fleet) -> int:
    with fleet.stubs() as (_, stub):
        return stub.GetStatistics(node_pb2.GetStatisticsRequest(), timeout=30).count


def stored_nodes(fleet: Fleet) -> list[node_pb2.ComputeNode]:
    nodes: list[node_pb2.ComputeNode] = []
    token = ""
    with fleet.stubs() as (_, stub):
        while True:
            page = stub.ListComputeNodes(
                node_pb2.ListComputeNodesRequest(page_size=1000, page_token=token), timeout=60
            )
            nodes.extend(page.nodes)
            token = page.next_page_token
            if not token:
                return nodes


def test_ten_thousand_agents_starting_at_once_each_get_their_node_once(tmp_path, pg_databases):
    fleet = Fleet(tmp_path)
    try:
        fleet.services(databases=pg_databases, node_env={"BERTH_WORKERS": "2"})
        pushers, created_s = asyncio.run(cold_start(fleet))
        retried = sum(p.failures for p in pushers.values())
        print(f"{AGENTS} nodes created in {created_s:.1f} s; {retried} reports retried")

        answered = {host: p.last_response.node_uuid for host, p in pushers.items()}
        assert len(set(answered.values())) == AGENTS, "two agents were given one node"
        nodes = stored_nodes(fleet)
        keys = [(n.host, n.nodename) for n in nodes]
        assert len(keys) == len(set(keys)) == AGENTS, "a node is missing or was created twice"
        assert {n.host: n.uuid for n in nodes} == answered
        assert all(n.total.vcpus == 16 + int(n.host[5:]) % 3 for n in nodes)
        assert "Traceback" not in fleet.log("node")
    finally:
        fleet.close()
