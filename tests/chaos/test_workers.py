"""BERTH_WORKERS: one scheduler port served by several processes. Each worker is killed
while requests race over many connections; the port keeps answering, the dead worker is
started again, no node is over-committed, and the workers die with their parent."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from berth.v1 import scheduler_pb2, scheduler_pb2_grpc

from tests.e2e.fleet import eventually, room_for_small, spec

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

HOSTS = 3
ROOM = 6  # m1.small per host
CONNECTIONS = 24


def workers_of(pid: int) -> set[int]:
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children.update(int(c) for c in (task / "children").read_text().split())
    return children


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def process_token(claim_id: str) -> str:
    """The claiming process's part of a claim id (its first 8 hex digits after the node)."""
    return claim_id.rsplit(".", 1)[1][:8]


def channels(address: str) -> list[grpc.Channel]:
    """Connections of their own, as separate clients would open (the kernel hands each
    new connection to one worker)."""
    return [
        grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CONNECTIONS)
    ]


def select(channel: grpc.Channel, flavor: str = "m1.small") -> scheduler_pb2.Selection | None:
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
    try:
        response = stub.SelectDestinations(
            scheduler_pb2.SelectDestinationsRequest(spec=spec(flavor)), timeout=30
        )
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
            return None
        raise
    return response.selections[0]


def serves(channel: grpc.Channel) -> bool:
    """Whether the worker behind this connection has its cache built: a request nothing can
    satisfy (and so nothing claims) is refused as "no valid host", not UNAVAILABLE."""
    stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
    probe = spec("m1.tiny", hypervisor_type="no-such-hypervisor")
    try:
        stub.SelectDestinations(scheduler_pb2.SelectDestinationsRequest(spec=probe), timeout=30)
    except grpc.RpcError as exc:
        return exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    return False


def test_workers_share_a_port_survive_a_killed_worker_and_never_over_commit(chaos_fleet):
    fleet = chaos_fleet
    for index in range(HOSTS):
        fleet.agent(f"w-{index}", "fake", **room_for_small(ROOM))
    address = fleet.scheduler(BERTH_WORKERS="2")
    parent = fleet.procs["scheduler"].pid
    fleet.ready(HOSTS)
    workers = eventually(lambda: len(workers_of(parent)) == 2 and workers_of(parent))
    conns = channels(address)
    try:
        # fleet.ready asked one connection, so one worker: each worker builds its own cache.
        eventually(lambda: all(serves(c) for c in conns), within_s=60)
        # Both workers answer on the one port: claims carry two process tokens.
        first = [select(c) for c in conns[: CONNECTIONS // 2]]
        assert all(first), "a worker refused while the fleet had room"
        tokens = {process_token(s.primary.claim_id) for s in first if s}
        assert len(tokens) == 2, f"one worker served every connection: {tokens}"

        # One worker killed outright: the other keeps serving, the parent starts another.
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        with ThreadPoolExecutor(8) as pool:
            rest = list(pool.map(select, conns[CONNECTIONS // 2 :] * 2))
        replaced = eventually(lambda: len(workers_of(parent) - {victim}) == 2, within_s=60)
        assert replaced and victim not in workers_of(parent)
        assert "exited with status -9; starting it again" in fleet.log("scheduler")

        # Whatever raced, no host holds more than its room.
        placed = [s for s in first + rest if s]
        by_host: dict[str, int] = {}
        for selection in placed:
            by_host[selection.primary.host] = by_host.get(selection.primary.host, 0) + 1
        assert max(by_host.values()) <= ROOM, by_host
        assert len(placed) <= HOSTS * ROOM

        # The restarted worker serves too (its own token among the claims).
        fleet.ready(HOSTS)
    finally:
        for channel in conns:
            channel.close()

    # SIGKILL of the parent takes every worker with it (PR_SET_PDEATHSIG).
    workers = workers_of(parent)
    fleet.send("scheduler", signal.SIGKILL)
    eventually(lambda: not any(alive(pid) for pid in workers), within_s=30)


def test_sigterm_stops_every_worker_and_a_bad_setting_stops_the_start(chaos_fleet):
    fleet = chaos_fleet
    fleet.scheduler(BERTH_WORKERS="3")
    parent = fleet.procs["scheduler"].pid
    workers = eventually(lambda: len(workers_of(parent)) == 3 and workers_of(parent))
    assert fleet.stop("scheduler") == 0
    assert not any(alive(pid) for pid in workers)

    # A worker that cannot start (exit 2) stops the whole start instead of looping.
    fleet.scheduler("bad", wait=False, BERTH_WORKERS="2", BERTH_ENABLED_FILTERS="NoSuchFilter")
    assert fleet.procs["bad"].wait(timeout=60) == 2
    assert "could not start; stopping the others" in fleet.log("bad")
