"""2,000 idle WatchServices streams on a real registry: its memory grows by a bounded
amount, its threads do not grow with the streams, other callers are served promptly, a
change reaches every watcher, and closing them all leaves the server well."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import grpc
import pytest
from berth.v1 import common_pb2, registry_pb2, registry_pb2_grpc
from grpc import aio

from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.chaos

WATCHES = 2_000
CHANNELS = 4  # HTTP/2 connections the watches share: the client side stays cheap
OPENING = 50  # watches opening (listing) at once
HOSTS = 20
# Measured (grpcio 1.85, Python 3.11, PostgreSQL): the registry's RSS grew 72-73 MB with
# the 2,000 watches open (about 36 KB a watch), its threads not at all, and its CPU while
# they sat idle went from 4.8 % to 6.2 % of a core. The bounds leave room for noise, not
# for a thread, a buffer or a busy loop per watch.
RSS_BOUND_MB = 150
IDLE_CPU_BOUND_PCT = 20  # added by 2,000 idle watches, in % of one core
PROMPT_S = 2.0  # other callers' deadline while the watches are open
IDLE_S = 5.0  # how long the registry's CPU is measured idle, before and with the watches


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def _rss_mb(pid: int) -> float:
    return _status(pid, "VmRSS") / 1024


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def _open(stub, opening: asyncio.Semaphore):
    """A watch read up to SYNCED, then left idle."""
    async with opening:
        call = stub.WatchServices(registry_pb2.WatchServicesRequest())
        while (event := await call.read()) is not aio.EOF:  # read(): the call stays open
            if event.type == common_pb2.EVENT_TYPE_SYNCED:
                return call, event.revision
    raise AssertionError("a watch ended before SYNCED")


async def _event_of(call, uuid: str) -> registry_pb2.WatchServicesResponse:
    """The first event about service `uuid` (others, such as a liveness change, pass)."""
    async with asyncio.timeout(30):
        while (event := await call.read()) is not aio.EOF:
            if event.service.uuid == uuid:
                return event
    raise AssertionError("a watch ended before the change")


async def _scenario(fleet: Fleet, pid: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    channels = [aio.insecure_channel(fleet.registry) for _ in range(CHANNELS)]
    stubs = [registry_pb2_grpc.RegistryServiceStub(channel) for channel in channels]
    other = aio.insecure_channel(fleet.registry)  # another client, on its own connection
    caller = registry_pb2_grpc.RegistryServiceStub(other)
    try:
        await caller.ListServices(registry_pb2.ListServicesRequest(), timeout=10)
        figures["rss_before_mb"] = _rss_mb(pid)
        figures["threads_before"] = _status(pid, "Threads")
        cpu = _cpu_s(pid)
        await asyncio.sleep(IDLE_S)
        figures["idle_cpu_pct_before"] = 100 * (_cpu_s(pid) - cpu) / IDLE_S

        started = time.monotonic()
        opening = asyncio.Semaphore(OPENING)
        opened = await asyncio.gather(
            *(_open(stubs[i % CHANNELS], opening) for i in range(WATCHES))
        )
        figures["open_s"] = time.monotonic() - started
        calls = [call for call, _ in opened]

        await asyncio.sleep(1)  # let the opening settle before measuring
        cpu = _cpu_s(pid)
        await asyncio.sleep(IDLE_S)
        figures["idle_cpu_pct"] = 100 * (_cpu_s(pid) - cpu) / IDLE_S
        figures["rss_open_mb"] = _rss_mb(pid)
        figures["threads_open"] = _status(pid, "Threads")

        # Other callers are served within their deadline while the watches are open.
        started = time.monotonic()
        listing = await caller.ListServices(registry_pb2.ListServicesRequest(), timeout=PROMPT_S)
        figures["list_s"] = time.monotonic() - started
        assert len(listing.services) >= HOSTS
        started = time.monotonic()
        registered = await caller.RegisterService(
            registry_pb2.RegisterServiceRequest(host="idle-new", binary="berth-compute"),
            timeout=PROMPT_S,
        )
        figures["register_s"] = time.monotonic() - started

        # The change reaches every idle watcher.
        started = time.monotonic()
        uuid = registered.service.uuid
        events = await asyncio.gather(*(_event_of(call, uuid) for call in calls))
        figures["fan_out_s"] = time.monotonic() - started
        assert all(event.type == common_pb2.EVENT_TYPE_ADDED for event in events)

        for call in calls:
            call.cancel()
        await asyncio.sleep(2)  # the server ends 2,000 handlers
        figures["rss_closed_mb"] = _rss_mb(pid)
        figures["threads_closed"] = _status(pid, "Threads")
        started = time.monotonic()
        await caller.ListServices(registry_pb2.ListServicesRequest(), timeout=PROMPT_S)
        figures["list_after_s"] = time.monotonic() - started
        call, _ = await asyncio.wait_for(_open(caller, asyncio.Semaphore(1)), PROMPT_S)
        call.cancel()
    finally:
        for channel in [*channels, other]:
            await channel.close()
    return figures


def test_two_thousand_idle_watches_cost_little_and_block_nobody(chaos_fleet):
    fleet = chaos_fleet
    with grpc.insecure_channel(fleet.registry) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)
        for i in range(HOSTS):
            stub.RegisterService(
                registry_pb2.RegisterServiceRequest(host=f"idle-{i}", binary="berth-compute"),
                timeout=10,
            )
    pid = fleet.procs["registry"].pid

    figures = asyncio.run(_scenario(fleet, pid))
    print({key: round(value, 3) for key, value in figures.items()})

    growth = figures["rss_open_mb"] - figures["rss_before_mb"]
    assert growth < RSS_BOUND_MB, figures
    assert figures["idle_cpu_pct"] - figures["idle_cpu_pct_before"] < IDLE_CPU_BOUND_PCT, figures
    # No thread per stream: grpc's pollers and the database driver's, whatever the count.
    assert figures["threads_open"] - figures["threads_before"] < 10, figures
    assert figures["threads_closed"] <= figures["threads_open"], figures
    assert figures["rss_closed_mb"] <= figures["rss_open_mb"] + 10, (
        figures
    )  # ending them costs nothing
    assert figures["list_s"] < PROMPT_S and figures["register_s"] < PROMPT_S, figures

    assert fleet.procs["registry"].poll() is None, fleet.tail("registry")
    fleet.wait_serving("registry")
    log = fleet.log("registry")
    assert "Traceback" not in log and " ERROR " not in log, fleet.tail("registry", 60)
