"""Watch streams cancelled at every point of their life, by many readers at once, while
the watched tables change: the servers keep serving and log no error."""

from __future__ import annotations

import contextlib
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from berth.v1 import common_pb2, node_pb2, registry_pb2, registry_pb2_grpc
from berth.v1.node_pb2 import WatchComputeNodesRequest
from berth.v1.registry_pb2 import WatchServicesRequest

from tests.e2e.fleet import Fleet
from tests.integration.node.support import snapshot

pytestmark = pytest.mark.chaos

HOSTS = 40  # a listing long enough to be cut anywhere: 40 services, 40 nodes
WATCHES = 300  # per service, from 4 readers at once


def _populate(fleet: Fleet) -> None:
    with fleet.stubs() as (registry, nodes):
        for i in range(HOSTS):
            host = f"storm-{i}"
            registry.RegisterService(
                registry_pb2.RegisterServiceRequest(
                    host=host, binary="berth-compute", endpoint=f"127.0.0.1:{20000 + i}"
                )
            )
            nodes.ReportSnapshot(node_pb2.ReportSnapshotRequest(snapshot=snapshot(host)))


def _churn(fleet: Fleet, stop: threading.Event) -> None:
    """Changes for the live phase: services disabled and enabled, snapshots reported."""
    with fleet.stubs() as (registry, nodes):
        sequence = 1
        while not stop.is_set():
            sequence += 1
            host = f"storm-{sequence % HOSTS}"
            with contextlib.suppress(grpc.RpcError):  # a busy database: the next change
                _change(registry, nodes, host, sequence)


def _change(registry, nodes, host: str, sequence: int) -> None:
    registry.UpdateService(
        registry_pb2.UpdateServiceRequest(
            service=registry_pb2.ServiceRef(
                key=registry_pb2.ServiceKey(host=host, binary="berth-compute")
            ),
            disabled=sequence % 2 == 0,
            disabled_reason="storm" if sequence % 2 == 0 else "",
        )
    )
    report = snapshot(host, sequence=sequence, vcpus=16 + sequence % 3)
    nodes.ReportSnapshot(node_pb2.ReportSnapshotRequest(snapshot=report), timeout=10)


def _cut_short(open_watch, rng: random.Random) -> str:
    """Open one watch and end it at a random point: before reading, mid-listing, right
    after SYNCED, or some events into the live phase; by cancel or by deadline."""
    read = rng.choice([0, 1, rng.randrange(HOSTS), HOSTS + 1, HOSTS + rng.randrange(1, 6)])
    # A short deadline ends some calls by itself; the long one only bounds the test.
    timeout = rng.choice([30.0, 30.0, 30.0, rng.uniform(0.01, 0.3)])
    call = open_watch(timeout)
    try:
        for _ in range(read):
            next(call)
    except grpc.RpcError as exc:
        assert exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED and timeout < 1, exc
        return "deadline"
    call.cancel()
    return "cancelled"


def _storm(address: str, method: str, request_type, seed: int) -> None:
    rng = random.Random(seed)
    with grpc.insecure_channel(address) as channel:
        watch = channel.unary_stream(
            method,
            request_serializer=request_type.SerializeToString,
            response_deserializer=lambda b: b,
        )
        for _ in range(WATCHES // 4):
            _cut_short(lambda timeout: watch(request_type(), timeout=timeout), rng)


def test_watches_cancelled_anywhere_never_crash_a_server(chaos_fleet):
    fleet = chaos_fleet
    _populate(fleet)
    watched = [
        (fleet.registry, "/berth.v1.RegistryService/WatchServices", WatchServicesRequest),
        (fleet.node, "/berth.v1.NodeService/WatchComputeNodes", WatchComputeNodesRequest),
    ]
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=9) as pool:
        churn = pool.submit(_churn, fleet, stop)
        storms = [
            pool.submit(_storm, address, method, request, seed)
            for address, method, request in watched
            for seed in range(4)
        ]
        try:
            for storm in storms:
                storm.result()
        finally:
            stop.set()
        churn.result()

    for name in ("registry", "node"):
        assert fleet.procs[name].poll() is None, f"{name} died:\n{fleet.tail(name)}"
    fleet.wait_serving("registry", "node")
    with grpc.insecure_channel(fleet.registry) as channel:  # still lists everything
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        listing = stub.WatchServices(WatchServicesRequest(), timeout=10)
        hosts = set()
        for event in listing:
            if event.type == common_pb2.EVENT_TYPE_SYNCED:
                break
            hosts.add(event.service.host)
        listing.cancel()
    assert {f"storm-{i}" for i in range(HOSTS)} <= hosts
    for name in ("registry", "node"):
        log = fleet.log(name)
        assert "Traceback" not in log and " ERROR " not in log, fleet.tail(name, 60)
