"""A fleet simulator: how many nodes does this deployment keep in steady state?

For each `--nodes N` this script starts a real registry, node service and scheduler
(`python -m services.<name>`) on fresh databases (PostgreSQL by default) and a redis-server
of its own, then runs N simulated compute agents (one KVM-like node per host) in
`--client-procs` worker processes, each agent doing over real gRPC what berth-compute does:

* RegisterService(host, "berth-compute"), then one HeartbeatStream message per report
  interval (the interval the registry answers; each wait jittered by --jitter);
* its node's first snapshot at start, then one every update_resources_interval (jittered),
  through the agent's own SnapshotPusher and SnapshotStream (services/compute/): one
  ReportSnapshotStream per agent by default, as a real agent has;
* builds and deletes: --churn of the nodes per minute change (one instance more, or one
  less), each change pushed at once, so the node service records it and the scheduler's
  HostState must follow.

Agents start over --ramp seconds (the cold start, reported on its own); once every agent
has registered, beaten and had its first snapshot accepted, the steady state is measured
for --duration seconds: heartbeat gaps (the registry's clock) against service_down_time,
ListServices (no compute service down), snapshot latency and lag, the scheduler's cache
lag (ListHostStates polled for a sample of changed nodes), and the CPU of every service.
Each N gets a verdict, and the largest N that held is named at the end.

    .venv/bin/python bench/fleet_sim.py --nodes 1000 --nodes 5000
    .venv/bin/python bench/fleet_sim.py --nodes 200 --duration 30 --ramp 10
    .venv/bin/python bench/fleet_sim.py --nodes 2000 --workers-node 2 --client-procs 2 --json

See bench/README.md.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import json
import logging
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from berth.cli.embedded_redis import EmbeddedRedis
from berth.v1 import (
    node_pb2,
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from grpc import aio
from snapshots import base_instances, claim_id, describe, host_of, machine, snapshot
from support import (
    DEFAULT_POSTGRES,
    Database,
    ServiceProcess,
    _cpu_seconds,
    client_channel,
    log,
    machine_busy_seconds,
    open_database,
    percentile,
)

from services.common.backoff import Backoff, stopping
from services.common.settings import COMPUTE_BINARY, CommonSettings
from services.compute.pusher import REPORT_TIMEOUT_S, SnapshotPusher
from services.compute.settings import ComputeSettings
from services.compute.snapshot_stream import SnapshotStream
from services.registry.settings import RegistrySettings


def setting_default(settings: type[Any], name: str) -> float:
    return float(settings.model_fields[name].default)


# Berth's defaults, from the settings classes (not copied here, so they cannot drift).
REPORT_INTERVAL_S = setting_default(CommonSettings, "report_interval")
SERVICE_DOWN_TIME_S = setting_default(RegistrySettings, "service_down_time")
SNAPSHOT_INTERVAL_S = setting_default(ComputeSettings, "update_resources_interval")
PROBE_TIMEOUT_S = 60.0  # a change the scheduler has not shown by then counts as missed
MAX_ERRORS_KEPT = 2000  # per client process; the counts are always complete


# --------------------------------------------------------------------------- the agents


@dataclass
class ClientSpec:
    name: str
    indexes: list[int]  # the agents of this process (global numbers: host_of(i))
    nodes: int
    registry: str
    node: str
    scheduler: str
    report_interval: float
    snapshot_interval: float
    jitter: float
    churn_per_min: float
    ramp_s: float
    agents_per_channel: int
    agents_per_stream: int
    probe_concurrency: int
    probe_interval: float
    seed: int


class Series:
    """Observations as (time, value) pairs; the parent keeps those inside its window."""

    def __init__(self) -> None:
        self.at = array.array("d")
        self.value = array.array("d")

    def add(self, at: float, value: float) -> None:
        self.at.append(at)
        self.value.append(value)


class Recorder:
    """What one client process saw. Times are time.monotonic() (the same clock in every
    process), except heartbeats: the registry's last_seen_up, a wall clock."""

    # "sched_down": a probe saw the host's service_up false in the scheduler's HostState.
    NAMES = (
        "beat",
        "snapshot",
        "changed",
        "lag",
        "first",
        "cache",
        "missed",
        "skipped",
        "sched_down",
    )

    def __init__(self) -> None:
        self.series = {name: Series() for name in self.NAMES}
        self.errors: list[tuple[float, str, str]] = []
        self.error_count = 0

    def error(self, what: str, exc: BaseException) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append((time.monotonic(), what, code_of(exc)))

    def dump(self) -> dict[str, Any]:
        series = {n: (s.at.tobytes(), s.value.tobytes()) for n, s in self.series.items()}
        return {"series": series, "errors": self.errors, "error_count": self.error_count}


def code_of(exc: BaseException) -> str:
    if isinstance(exc, aio.AioRpcError):
        return exc.code().name
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"  # no answer within the agent's own timeout
    return type(exc).__name__


class Agent:
    __slots__ = (
        "changes",
        "first_offer",
        "index",
        "last_seen",
        "node_uuid",
        "pusher",
        "registered",
        "reported",
        "sequence",
        "service_uuid",
        "state",
    )

    def __init__(self, index: int, node_uuid: str) -> None:
        self.index = index
        self.node_uuid = node_uuid  # the agent makes its node's uuid, as the real one does
        self.service_uuid = ""
        self.state = 0  # 0: its base instances, 1: one more (snapshots.py's fleet)
        self.sequence = 0
        self.pusher: SnapshotPusher | None = None
        # Changes offered and not yet accepted: (sequence, when offered).
        self.changes: collections.deque[tuple[int, float]] = collections.deque()
        self.first_offer = 0.0
        self.last_seen = 0.0  # the registry's last_seen_up of the last answered heartbeat
        self.registered = False
        self.reported = False  # its first snapshot was accepted


class TimedSender:
    """The agent's SnapshotStream, timing each snapshot and noting what its answer means
    for the measurements (the pusher above it is the agent's own)."""

    def __init__(self, stream: SnapshotStream, agent: Agent, client: Client) -> None:
        self.stream = stream
        self.agent = agent
        self.client = client

    async def report(self, snap: node_pb2.ResourceSnapshot) -> node_pb2.ReportSnapshotResponse:
        rec, agent = self.client.rec, self.agent
        sent = time.monotonic()
        try:
            answer = await self.stream.report(snap)
        except aio.AioRpcError as exc:
            if not stopping():
                rec.error("snapshot", exc)
            raise
        now = time.monotonic()
        rec.series["snapshot"].add(now, now - sent)
        if answer.changed:
            rec.series["changed"].add(now, 1.0)
        if not agent.reported:
            agent.reported = True
            rec.series["first"].add(now, now - agent.first_offer)
        resolved = False
        while agent.changes and agent.changes[0][0] <= snap.sequence:
            _, offered = agent.changes.popleft()
            rec.series["lag"].add(offered, now - offered)
            resolved = True
        if resolved and answer.changed:
            self.client.probe(host_of(agent.index), answer.generation, now)
        return answer


class Client:
    """One client process: its agents, their channels, streams and pushers."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.rec = Recorder()
        self.rng = random.Random(spec.seed)
        per_channel = max(1, spec.agents_per_channel)
        count = max(1, math.ceil(len(spec.indexes) / per_channel))
        # Real agents have a connection each; a few dozen agents share one here. Servers
        # with BERTH_WORKERS get connections spread by the kernel, so there are many.
        self.registry_channels = [client_channel(spec.registry, n) for n in range(count)]
        self.node_channels = [client_channel(spec.node, count + n) for n in range(count)]
        self.scheduler_channel = client_channel(spec.scheduler, 2 * count)
        self.registry_stubs = [
            registry_pb2_grpc.RegistryServiceStub(c) for c in self.registry_channels
        ]
        self.scheduler_stub = scheduler_pb2_grpc.SchedulerServiceStub(self.scheduler_channel)
        self.agents = [
            Agent(i, str(uuidlib.UUID(int=self.rng.getrandbits(128), version=4)))
            for i in spec.indexes
        ]
        self.down_time = 0.0  # service_down_time, as the registry answers RegisterService
        self.streams: list[SnapshotStream] = []
        for position, agent in enumerate(self.agents):
            if position % max(1, spec.agents_per_stream) == 0:
                channel = self.node_channels[position // per_channel]
                stub = node_pb2_grpc.NodeServiceStub(channel)
                self.streams.append(SnapshotStream(stub, (), timeout_s=REPORT_TIMEOUT_S))
            agent.pusher = SnapshotPusher(
                TimedSender(self.streams[-1], agent, self), node_service=spec.node
            )
        self.probing = 0
        self.probes: set[asyncio.Task[None]] = set()
        self.tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        channels = [*self.registry_channels, *self.node_channels, self.scheduler_channel]
        await asyncio.gather(*(asyncio.wait_for(c.channel_ready(), 30) for c in channels))

    def start(self, go_at: float) -> None:
        for position, agent in enumerate(self.agents):
            # Agent i starts at its place in the ramp, anywhere inside its slot.
            slot = self.spec.ramp_s / self.spec.nodes
            start_at = go_at + agent.index * slot + self.rng.uniform(0, slot)
            stub = self.registry_stubs[position // max(1, self.spec.agents_per_channel)]
            self.tasks.append(asyncio.create_task(self.run_agent(agent, stub, start_at)))

    def jittered(self, seconds: float) -> float:
        return seconds * self.rng.uniform(1 - self.spec.jitter, 1 + self.spec.jitter)

    async def run_agent(self, agent: Agent, stub: Any, start_at: float) -> None:
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        assert agent.pusher is not None
        agent.pusher.start(host_of(agent.index))
        # The reporter and the resource tracker start together in a real agent.
        agent.first_offer = time.monotonic()
        self.offer(agent, change=False)
        await asyncio.gather(self.heartbeats(agent, stub), self.refresh_and_churn(agent))

    def offer(self, agent: Agent, *, change: bool) -> None:
        """The tracker's whole view with the next sequence, to the agent's pusher."""
        agent.sequence += 1
        snap = snapshot(agent.index, agent.state, agent.node_uuid, agent.sequence)
        if change and agent.state == 0:  # a delete: the instance's claim is released
            snap.released_claim_ids.append(claim_id(agent.index, base_instances(agent.index)))
        if change:
            agent.changes.append((agent.sequence, time.monotonic()))
        assert agent.pusher is not None
        agent.pusher.offer(snap)

    async def refresh_and_churn(self, agent: Agent) -> None:
        """Every update_resources_interval a snapshot (usually unchanged: only its sequence
        is stored); at random moments (Poisson, --churn) a build or delete, pushed at once."""
        rate = self.spec.churn_per_min / 60.0
        now = time.monotonic()
        next_refresh = now + self.jittered(self.spec.snapshot_interval)
        next_change = now + self.rng.expovariate(rate) if rate > 0 else math.inf
        while True:
            await asyncio.sleep(max(0.0, min(next_refresh, next_change) - time.monotonic()))
            now = time.monotonic()
            if now >= next_change:
                agent.state ^= 1
                self.offer(agent, change=True)
                next_change = now + self.rng.expovariate(rate)
            if now >= next_refresh:
                self.offer(agent, change=False)
                next_refresh += self.jittered(self.spec.snapshot_interval)

    async def heartbeats(self, agent: Agent, stub: Any) -> None:
        """services/common/reporter.py's loop: register, then one stream until it fails;
        retries wait at most one report interval."""
        interval = self.spec.report_interval
        backoff = Backoff(min(0.5, interval), interval)
        while True:
            try:
                if not agent.service_uuid:
                    interval = await self.register(agent, stub)
                await self.beat(agent, stub, interval, backoff)
                agent.service_uuid = ""  # NOT_FOUND: the registry forgot it; register again
            except Exception as exc:
                if stopping():
                    raise
                self.rec.error("heartbeat" if agent.service_uuid else "register", exc)
                await asyncio.sleep(backoff.next_delay())

    async def register(self, agent: Agent, stub: Any) -> float:
        i = agent.index
        request = registry_pb2.RegisterServiceRequest(
            host=host_of(i),
            binary=COMPUTE_BINARY,
            endpoint=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:50054",
        )
        reply = await stub.RegisterService(request, timeout=10)
        agent.service_uuid = reply.service.uuid
        agent.registered = True
        self.down_time = reply.service_down_time.ToTimedelta().total_seconds()
        told = reply.report_interval.ToTimedelta().total_seconds()
        return min(told or self.spec.report_interval, self.spec.report_interval)

    async def beat(self, agent: Agent, stub: Any, interval: float, backoff: Backoff) -> None:
        call = stub.HeartbeatStream()
        request = registry_pb2.HeartbeatStreamRequest(service_uuid=agent.service_uuid)
        beats = self.rec.series["beat"]
        try:
            while True:
                await call.write(request)
                async with asyncio.timeout(max(interval, 5.0)):
                    reply = await call.read()
                if reply is aio.EOF:
                    raise ConnectionError("the registry ended the heartbeat stream")
                seen = reply.result.last_seen_up
                seen_s = seen.seconds + seen.nanos / 1e9
                # The gap as the registry saw it (-1: the agent's first heartbeat).
                beats.add(seen_s, seen_s - agent.last_seen if agent.last_seen else -1.0)
                agent.last_seen = seen_s
                backoff.reset()
                await asyncio.sleep(self.jittered(interval))
        except aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
        finally:
            call.cancel()

    def probe(self, host: str, generation: int, accepted: float) -> None:
        """Follow this change into the scheduler's HostState, if a probe slot is free (a
        sample: probes cost the scheduler calls too)."""
        if self.probing >= self.spec.probe_concurrency:
            self.rec.series["skipped"].add(accepted, 0.0)
            return
        self.probing += 1
        task = asyncio.create_task(self._probe(host, generation, accepted))
        self.probes.add(task)
        task.add_done_callback(self.probes.discard)

    async def _probe(self, host: str, generation: int, accepted: float) -> None:
        request = scheduler_pb2.ListHostStatesRequest(host=host)
        try:
            while True:
                try:
                    reply = await self.scheduler_stub.ListHostStates(request, timeout=5)
                except aio.AioRpcError as exc:
                    self.rec.error("probe", exc)
                    reply = None
                now = time.monotonic()
                states = (
                    [s for s in reply.host_states if s.generation >= generation] if reply else []
                )
                if states:
                    self.rec.series["cache"].add(accepted, now - accepted)
                    if not all(s.service_up for s in states):
                        self.rec.series["sched_down"].add(accepted, 1.0)
                    return
                if now - accepted > PROBE_TIMEOUT_S:
                    self.rec.series["missed"].add(accepted, 0.0)
                    return
                await asyncio.sleep(self.spec.probe_interval)
        except asyncio.CancelledError:  # still waiting at the end: at least this long
            self.rec.series["cache"].add(accepted, time.monotonic() - accepted)
            raise
        finally:
            self.probing -= 1

    def progress(self) -> dict[str, int]:
        return {
            "registered": sum(a.registered for a in self.agents),
            "beating": sum(a.last_seen > 0 for a in self.agents),
            "reported": sum(a.reported for a in self.agents),
        }

    def at_end(self, end: float, end_wall: float) -> tuple[list[float], int]:
        """Per agent, the silence from its last heartbeat to the end of the window, and how
        many agents never had a heartbeat answered. Changes still unaccepted go into the
        lag figures as what they waited so far (a lower bound)."""
        for agent in self.agents:
            for _, offered in agent.changes:
                self.rec.series["lag"].add(offered, end - offered)
        gaps = [end_wall - a.last_seen for a in self.agents if a.last_seen]
        return gaps, sum(not a.last_seen for a in self.agents)

    async def close(self) -> None:
        for task in [*self.tasks, *self.probes]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.probes, return_exceptions=True)
        await asyncio.gather(
            *(a.pusher.stop() for a in self.agents if a.pusher is not None),
            *(s.close() for s in self.streams),
            return_exceptions=True,
        )
        for channel in [*self.registry_channels, *self.node_channels, self.scheduler_channel]:
            await channel.close(grace=None)


async def _client_main(spec: ClientSpec, conn: Connection) -> dict[str, Any]:
    # The agents' own classes log every failure; the figures count them instead.
    logging.getLogger("services").setLevel(logging.CRITICAL)
    client = Client(spec)
    loop = asyncio.get_running_loop()
    try:
        await client.connect()
        conn.send({"ready": True})
        go_at = (await loop.run_in_executor(None, conn.recv))["go"]
        client.start(go_at)
        window = loop.run_in_executor(None, conn.recv)  # {"window": ...} once cold start is over
        while not window.done():
            conn.send({"progress": client.progress()})
            await asyncio.wait([window], timeout=1.0)
        start, end, end_wall = window.result()["window"]
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu_from = time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu_s = time.process_time() - cpu_from
        open_gaps, never_beat = client.at_end(end, end_wall)
        summary = client.progress()
    finally:
        await client.close()
    return {
        **client.rec.dump(),
        "cpu_s": cpu_s,
        "open_gaps": open_gaps,
        "never_beat": never_beat,
        "agents": len(spec.indexes),
        "down_time": client.down_time,
        **summary,
    }


def client_entry(spec: ClientSpec, conn: Connection) -> None:
    """A client worker process: run its agents until the window ends, report, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        outcome = {"result": asyncio.run(_client_main(spec, conn))}
    except BaseException as exc:
        outcome = {"crash": f"{type(exc).__name__}: {exc}"}
    with contextlib.suppress(OSError):
        conn.send(outcome)
    conn.close()


class Clients:
    """The client processes of one run, and what they last said."""

    def __init__(self, specs: list[ClientSpec]) -> None:
        ctx = mp.get_context("spawn")
        self.procs: list[tuple[mp.process.BaseProcess, Connection]] = []
        self.progress: list[dict[str, int]] = [{} for _ in specs]
        self.results: list[asyncio.Future[dict[str, Any]]] = []
        for spec in specs:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=client_entry, args=(spec, child_end), daemon=True)
            proc.start()
            child_end.close()
            self.procs.append((proc, parent_end))
        self.readers: list[asyncio.Task[None]] = []

    async def ready(self, timeout_s: float = 120.0) -> None:
        loop = asyncio.get_running_loop()
        for n, (_, conn) in enumerate(self.procs):
            if not await loop.run_in_executor(None, conn.poll, timeout_s):
                raise RuntimeError("a client process did not connect in time")
            answer = conn.recv()
            if "crash" in answer:
                raise RuntimeError(f"client {n + 1} crashed: {answer['crash']}")
            future = loop.create_future()
            self.results.append(future)
            self.readers.append(asyncio.create_task(self._read(n, conn, future)))

    async def _read(self, n: int, conn: Connection, result: asyncio.Future[Any]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await loop.run_in_executor(None, conn.recv)
            except (EOFError, OSError):
                message = {"crash": "the client process ended without a result"}
            if "progress" in message:
                self.progress[n] = message["progress"]
                continue
            if "crash" in message:
                result.set_exception(RuntimeError(f"client {n + 1} crashed: {message['crash']}"))
            else:
                result.set_result(message["result"])
            return

    def crashed(self) -> BaseException | None:
        return next((f.exception() for f in self.results if f.done() and f.exception()), None)

    def send(self, message: dict[str, Any]) -> None:
        for _, conn in self.procs:
            conn.send(message)

    def total(self, key: str) -> int:
        return sum(p.get(key, 0) for p in self.progress)

    async def gather(self, timeout_s: float) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout_s):
            return list(await asyncio.gather(*self.results))

    def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for n, (proc, conn) in enumerate(self.procs):
            if n >= len(self.results) or not self.results[n].done():
                proc.terminate()  # interrupted: its result will not be read
            proc.join(timeout=15)
            if proc.is_alive():
                proc.kill()  # only the client processes this script started
                proc.join(timeout=5)
            conn.close()


# --------------------------------------------------------------------------- the services


def make_services(
    args: argparse.Namespace, workdir: Path, dbs: tuple[Database, Database], redis_url: str
) -> tuple[ServiceProcess, ServiceProcess, ServiceProcess]:
    """Registry, node service and scheduler, each told where the others are."""
    for name in ("registry", "node", "scheduler"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    registry = ServiceProcess("services.registry", dbs[0].url, workdir / "registry")
    node = ServiceProcess("services.node", dbs[1].url, workdir / "node")
    scheduler = ServiceProcess("services.scheduler", "", workdir / "scheduler")
    common = {"BERTH_REGISTRY_URL": registry.target}  # every service registers itself
    if args.report_interval is not None:
        common["BERTH_REPORT_INTERVAL"] = str(args.report_interval)
    registry.extra_env |= common | {
        "BERTH_NODE_URL": node.target,
        "BERTH_SCHEDULER_URL": scheduler.target,
    }
    if args.service_down_time is not None:
        registry.extra_env["BERTH_SERVICE_DOWN_TIME"] = str(args.service_down_time)
    node.extra_env |= common
    scheduler.extra_env |= common | {
        "BERTH_NODE_URL": node.target,
        "BERTH_REDIS_URL": redis_url,
        "BERTH_REDIS_PREFIX": "fleet",
    }
    # Passed even where a service does not read it yet (it is being added).
    for service, workers in ((registry, args.workers_registry), (node, args.workers_node)):
        if workers:
            service.extra_env["BERTH_WORKERS"] = str(workers)
    return registry, node, scheduler


async def scheduler_ready(target: str, timeout_s: float = 120.0) -> None:
    """The scheduler answers ListHostStates once its cache is loaded (UNAVAILABLE before)."""
    deadline = time.monotonic() + timeout_s
    async with aio.insecure_channel(target) as channel:
        stub = scheduler_pb2_grpc.SchedulerServiceStub(channel)
        while True:
            try:
                await stub.ListHostStates(
                    scheduler_pb2.ListHostStatesRequest(page_size=1), timeout=5
                )
                return
            except aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)


async def list_compute_services(stub: Any) -> list[registry_pb2.Service]:
    services: list[registry_pb2.Service] = []
    token = ""
    while True:
        request = registry_pb2.ListServicesRequest(
            binary=COMPUTE_BINARY, page_size=1000, page_token=token
        )
        reply = await stub.ListServices(request, timeout=30)
        services.extend(reply.services)
        token = reply.next_page_token
        if not token:
            return services


async def list_host_states(stub: Any) -> list[scheduler_pb2.HostState]:
    states: list[scheduler_pb2.HostState] = []
    token = ""
    while True:
        request = scheduler_pb2.ListHostStatesRequest(page_size=1000, page_token=token)
        reply = await stub.ListHostStates(request, timeout=30)
        states.extend(reply.host_states)
        token = reply.next_page_token
        if not token:
            return states


class Listings:
    """ListServices every --list-interval: how many compute services the registry lists,
    and how many of them it says are down."""

    def __init__(self, target: str, every_s: float) -> None:
        self.channel = aio.insecure_channel(target)
        self.stub = registry_pb2_grpc.RegistryServiceStub(self.channel)
        self.every_s = every_s
        self.seen: list[tuple[float, int, int, list[str]]] = []  # (at, listed, down, hosts)
        self.failures: list[tuple[float, str]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                services = await list_compute_services(self.stub)
                down = [s.host for s in services if not s.up]
                self.seen.append((time.monotonic(), len(services), len(down), down[:5]))
            except aio.AioRpcError as exc:
                self.failures.append((time.monotonic(), exc.code().name))
            await asyncio.sleep(self.every_s)

    def last(self) -> tuple[int, int]:
        return self.seen[-1][1:3] if self.seen else (0, 0)

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.channel.close()


# --------------------------------------------------------------------------- one size


@dataclass
class SizeResult:
    nodes: int
    verdict: str = "does not hold"
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cold: dict[str, Any] = field(default_factory=dict)
    heartbeats: dict[str, Any] = field(default_factory=dict)
    listing: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # "what CODE" -> count, steady state
    cold_errors: dict[str, int] = field(default_factory=dict)
    cpu_cores: dict[str, float] = field(default_factory=dict)  # steady state, 1.0 = one core
    cold_cpu_cores: dict[str, float] = field(default_factory=dict)
    end_check: dict[str, Any] = field(default_factory=dict)
    window_s: float = 0.0


class Merged:
    """The client processes' series together, cut to a window."""

    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.series: dict[str, tuple[array.array, array.array]] = {}
        for result in results:
            for name, (at, value) in result["series"].items():
                times, values = self.series.setdefault(name, (array.array("d"), array.array("d")))
                times.frombytes(at)
                values.frombytes(value)

    def values(self, name: str, start: float, end: float) -> list[float]:
        times, values = self.series[name]
        return sorted(v for t, v in zip(times, values, strict=True) if start <= t < end)


def figures(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """count, p50, p99 and max of sorted values (in ms by default)."""
    return {
        "count": len(values),
        "p50": round(percentile(values, 50) * scale, 1),
        "p99": round(percentile(values, 99) * scale, 1),
        "max": round((values[-1] if values else 0.0) * scale, 1),
    }


def count_errors(results: list[dict[str, Any]], start: float, end: float) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for result in results:
        counts.update(f"{what} {code}" for at, what, code in result["errors"] if start <= at < end)
    return dict(counts)


class CpuMeter:
    """CPU seconds of each service (its BERTH_WORKERS children included), Redis and the
    whole machine, between two samples."""

    def __init__(self, services: dict[str, ServiceProcess], redis_pid: int | None) -> None:
        self.services = services
        self.redis_pid = redis_pid

    def sample(self) -> dict[str, float]:
        taken = {name: s.cpu_seconds() for name, s in self.services.items()}
        taken["redis"] = _cpu_seconds(self.redis_pid) if self.redis_pid else 0.0
        taken["machine"] = machine_busy_seconds()
        return taken

    @staticmethod
    def cores(
        before: dict[str, float], after: dict[str, float], seconds: float
    ) -> dict[str, float]:
        return {k: round((after[k] - before[k]) / max(seconds, 1e-9), 3) for k in before}


async def run_size(nodes: int, args: argparse.Namespace, workdir: Path) -> SizeResult:
    log(f"\n== {nodes:,} nodes ==")
    async with contextlib.AsyncExitStack() as stack:
        dbs = []
        for name in ("registry", "node"):
            db = await open_database(args.backend, args, workdir, f"{name}.sqlite3")
            if isinstance(db, str):
                raise SystemExit(db)
            await db.create()
            stack.push_async_callback(_drop, db)
            dbs.append(db)
        redis = EmbeddedRedis(workdir, appendonly=False)  # ours alone: never a shared one
        stack.callback(redis.stop)
        redis.start()
        services = make_services(args, workdir, (dbs[0], dbs[1]), redis.url)
        for service in services:
            stack.callback(service.stop)
            service.start()
            await service.wait_serving()
        await scheduler_ready(services[2].target)
        log(
            f"  registry pid {services[0].pid}, node pid {services[1].pid}, scheduler pid "
            f"{services[2].pid}, redis pid {redis.pid}; {args.backend}"
        )
        clients = Clients(client_specs(nodes, args, services))
        stack.callback(clients.close)
        await clients.ready()
        listings = Listings(services[0].target, args.list_interval)
        stack.push_async_callback(listings.close)
        meter = CpuMeter(
            dict(zip(("registry", "node", "scheduler"), services, strict=True)), redis.pid
        )
        return await measure(nodes, args, services, clients, listings, meter)


async def _drop(db: Database) -> None:
    with contextlib.suppress(Exception):
        await db.drop()


def client_specs(
    nodes: int, args: argparse.Namespace, services: tuple[ServiceProcess, ...]
) -> list[ClientSpec]:
    procs = max(1, min(args.client_procs, nodes))
    return [
        ClientSpec(
            name=f"client {n + 1}/{procs}",
            indexes=list(range(n, nodes, procs)),
            nodes=nodes,
            registry=services[0].target,
            node=services[1].target,
            scheduler=services[2].target,
            report_interval=args.report_interval or REPORT_INTERVAL_S,
            snapshot_interval=args.snapshot_interval,
            jitter=args.jitter,
            churn_per_min=args.churn,
            ramp_s=args.ramp,
            agents_per_channel=args.agents_per_channel,
            agents_per_stream=args.agents_per_stream,
            probe_concurrency=args.probe_concurrency,
            probe_interval=args.probe_interval,
            seed=args.seed * 1000 + n,
        )
        for n in range(procs)
    ]


async def measure(
    nodes: int,
    args: argparse.Namespace,
    services: tuple[ServiceProcess, ...],
    clients: Clients,
    listings: Listings,
    meter: CpuMeter,
) -> SizeResult:
    go_at = time.monotonic() + 1.0
    clients.send({"go": go_at})
    cpu_go = meter.sample()
    await asyncio.sleep(max(0.0, go_at - time.monotonic()))
    cold_deadline = go_at + args.ramp + args.cold_timeout
    last_log = 0.0
    while True:  # the cold start: until every agent registered, beat and reported
        done = all(clients.total(k) >= nodes for k in ("registered", "beating", "reported"))
        if done or time.monotonic() > cold_deadline:
            break
        for service in services:
            service.check_alive()
        if crash := clients.crashed():
            raise crash
        if time.monotonic() - last_log >= 5:
            last_log = time.monotonic()
            listed, down = listings.last()
            log(
                f"  +{time.monotonic() - go_at:5.0f} s: registered {clients.total('registered')}, "
                f"beating {clients.total('beating')}, first snapshot accepted "
                f"{clients.total('reported')} of {nodes}; ListServices {listed} listed, {down} down"
            )
        await asyncio.sleep(0.25)
    cold_end = time.monotonic()
    start = max(cold_end, go_at + args.ramp) + args.settle
    end = start + args.duration
    start_wall = time.time() + (start - time.monotonic())
    end_wall = start_wall + args.duration
    clients.send({"window": (start, end, end_wall)})
    log(f"  cold start over after {cold_end - go_at:.1f} s; steady state for {args.duration:g} s")
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    cpu_start = meter.sample()
    await asyncio.sleep(max(0.0, end - time.monotonic()))
    cpu_end = meter.sample()
    for service in services:
        service.check_alive()
    end_check = await check_end(services, nodes)
    results = await clients.gather(timeout_s=120)
    result = summarize(
        nodes, args, results, listings, (go_at, cold_end, start, end, start_wall, end_wall)
    )
    result.cold_cpu_cores = CpuMeter.cores(cpu_go, cpu_start, start - go_at)
    result.cpu_cores = CpuMeter.cores(cpu_start, cpu_end, end - start)
    result.cpu_cores["clients"] = round(sum(r["cpu_s"] for r in results) / args.duration, 3)
    result.end_check = end_check
    judge(result, args)
    log(f"  {result.verdict}" + "".join(f"; {r}" for r in result.reasons))
    return result


async def check_end(services: tuple[ServiceProcess, ...], nodes: int) -> dict[str, Any]:
    """Right at the end of the window: what each service holds for the fleet."""
    async with (
        aio.insecure_channel(services[0].target) as registry,
        aio.insecure_channel(services[1].target) as node,
        aio.insecure_channel(services[2].target) as scheduler,
    ):
        listed = await list_compute_services(registry_pb2_grpc.RegistryServiceStub(registry))
        stats = await node_pb2_grpc.NodeServiceStub(node).GetStatistics(
            node_pb2.GetStatisticsRequest(), timeout=30
        )
        states = await list_host_states(scheduler_pb2_grpc.SchedulerServiceStub(scheduler))
    return {
        "services_listed": len(listed),
        "services_down": sum(not s.up for s in listed),
        "nodes_stored": stats.count,
        "host_states": len(states),
        "host_states_service_down": sum(not s.service_up for s in states),
        "expected": nodes,
    }


def summarize(
    nodes: int,
    args: argparse.Namespace,
    results: list[dict[str, Any]],
    listings: Listings,
    times: tuple[float, float, float, float, float, float],
) -> SizeResult:
    go_at, cold_end, start, end, start_wall, end_wall = times
    merged = Merged(results)
    r = SizeResult(nodes=nodes, window_s=args.duration)
    first = merged.values("first", go_at, math.inf)
    first_at = merged.series["first"][0]
    r.cold = {
        "ramp_s": args.ramp,
        "seconds": round(max(first_at, default=go_at) - go_at, 1),
        "complete": len(first) >= nodes and sum(x["beating"] for x in results) >= nodes,
        "registered": sum(x["registered"] for x in results),
        "reported": len(first),
        "first_snapshot_ms": figures(first),
        "over_s": round(cold_end - go_at, 1),
    }
    r.cold_errors = count_errors(results, go_at, start)
    gaps = [g for g in merged.values("beat", start_wall, end_wall) if g >= 0]
    open_gaps = [g for x in results for g in x["open_gaps"]]
    told = [x["down_time"] for x in results if x["down_time"]]
    down_time = max(told) if told else args.service_down_time or SERVICE_DOWN_TIME_S
    largest = max([*gaps, *open_gaps], default=0.0)
    r.heartbeats = {
        "per_s": round(len(merged.values("beat", start_wall, end_wall)) / args.duration, 1),
        "gap_s": figures(gaps, scale=1.0),
        "largest_gap_s": round(largest, 2),
        "service_down_time_s": down_time,
        "gap_of_down_time": round(largest / down_time, 3),
        "never_answered": sum(x["never_beat"] for x in results),
    }
    seen = [s for s in listings.seen if start <= s[0] < end + 1]
    r.listing = {
        "listings": len(seen),
        "fewest_listed": min((s[1] for s in seen), default=0),
        "most_down": max((s[2] for s in seen), default=0),
        "down_hosts": next((s[3] for s in seen if s[2]), []),
        "failed_listings": len([f for f in listings.failures if start <= f[0] < end]),
    }
    answered = merged.values("snapshot", start, end)
    r.snapshots = {
        "per_s": round(len(answered) / args.duration, 1),
        "changed_per_s": round(len(merged.values("changed", start, end)) / args.duration, 2),
        "latency_ms": figures(answered),
        "lag_ms": figures(merged.values("lag", start, end)),
    }
    r.cache = {
        "lag_ms": figures(merged.values("cache", start, end)),
        "missed": len(merged.values("missed", start, end)),
        "skipped": len(merged.values("skipped", start, end)),
        "service_down_seen": len(merged.values("sched_down", start, end)),
        "probe_interval_ms": round(args.probe_interval * 1000),
    }
    r.errors = count_errors(results, start, end)
    if any(x["error_count"] > len(x["errors"]) for x in results):
        r.notes.append(f"over {MAX_ERRORS_KEPT} failed calls in a client: only those itemized")
    return r


def judge(r: SizeResult, args: argparse.Namespace) -> None:
    """The verdict: every limit below must hold; `reasons` names those that did not."""
    fail = r.reasons.append
    n = r.nodes
    if not r.cold["complete"]:
        fail(
            f"cold start unfinished: {r.cold['reported']} of {n} first snapshots accepted, "
            f"{r.cold['registered']} registered, {args.ramp + args.cold_timeout:g} s after the start"
        )
    hb = r.heartbeats
    if hb["never_answered"]:
        fail(f"{hb['never_answered']} agents never had a heartbeat answered")
    if hb["gap_of_down_time"] >= args.max_gap_ratio:
        fail(
            f"largest heartbeat gap {hb['largest_gap_s']} s = {hb['gap_of_down_time']:.2f} of "
            f"service_down_time {hb['service_down_time_s']:g} s (limit {args.max_gap_ratio:g})"
        )
    ls = r.listing
    if ls["most_down"] or r.end_check.get("services_down"):
        fail(
            f"ListServices reported compute services down (up to {ls['most_down']}: {ls['down_hosts']})"
        )
    if ls["fewest_listed"] < n or r.end_check.get("services_listed", n) < n:
        fail(f"ListServices listed only {ls['fewest_listed']} of {n} compute services")
    if r.errors:
        fail(f"failed calls in the steady state: {r.errors}")
    if ls["failed_listings"]:
        fail(f"{ls['failed_listings']} ListServices calls failed")
    snap_p99 = r.snapshots["latency_ms"]["p99"] / 1000
    if snap_p99 > args.max_snapshot_p99:
        fail(f"snapshot answer p99 {snap_p99:.2f} s > {args.max_snapshot_p99:g} s")
    lag_p99 = r.snapshots["lag_ms"]["p99"] / 1000
    if lag_p99 > args.max_snapshot_lag:
        fail(f"snapshot lag after a change p99 {lag_p99:.2f} s > {args.max_snapshot_lag:g} s")
    cache = r.cache
    if cache["missed"]:
        fail(
            f"{cache['missed']} changes not in the scheduler's HostState after {PROBE_TIMEOUT_S:g} s"
        )
    if cache["lag_ms"]["p99"] / 1000 > args.max_cache_lag:
        fail(
            f"scheduler cache lag p99 {cache['lag_ms']['p99'] / 1000:.2f} s > {args.max_cache_lag:g} s"
        )
    if cache["service_down_seen"] or r.end_check.get("host_states_service_down"):
        fail("the scheduler's HostState showed compute services down")
    if r.end_check.get("nodes_stored", n) < n or r.end_check.get("host_states", n) < n:
        fail(
            f"at the end: {r.end_check['nodes_stored']} nodes stored, {r.end_check['host_states']} HostStates, of {n}"
        )
    cores = os.cpu_count() or 1
    workers = {"registry": args.workers_registry, "node": args.workers_node, "scheduler": 1}
    for name, processes in workers.items():
        limit = args.max_cpu * min(processes or 1, cores)
        if r.cpu_cores.get(name, 0.0) > limit:
            fail(f"{name} used {r.cpu_cores[name]:.2f} cores (limit {limit:.2f}: saturated)")
    if not cache["lag_ms"]["count"]:
        r.notes.append("no scheduler cache lag measured (no change probed in the window)")
    if r.cpu_cores.get("machine", 0.0) >= 0.9 * cores:
        r.notes.append(
            f"the machine was full ({r.cpu_cores['machine']:.2f} of {cores} cores): the clients "
            "and the database compete with the services; on separate machines it would do better"
        )
    if r.cpu_cores.get("clients", 0.0) >= 0.85 * args.client_procs:
        r.notes.append("the client processes were nearly saturated: try --client-procs 2")
    r.verdict = "does not hold" if r.reasons else "holds"


# --------------------------------------------------------------------------- report


def print_size(r: SizeResult, args: argparse.Namespace) -> None:
    cold, hb, snap, cache, ls, cpu = (
        r.cold,
        r.heartbeats,
        r.snapshots,
        r.cache,
        r.listing,
        r.cpu_cores,
    )
    f = cold["first_snapshot_ms"]
    print(f"\n{r.nodes:,} nodes: {r.verdict.upper()}")
    print(
        f"  cold start: agents started over {cold['ramp_s']:g} s; {cold['reported']} first snapshots "
        f"accepted, the last {cold['seconds']} s after the start (start to accepted: p50 "
        f"{f['p50']:.0f} ms, p99 {f['p99']:.0f} ms, max {f['max']:.0f} ms); failed calls "
        f"{sum(r.cold_errors.values())}{' ' + str(r.cold_errors) if r.cold_errors else ''}"
    )
    print(
        f"  heartbeats: {hb['per_s']:,}/s; gap p50 {hb['gap_s']['p50']:.1f} s, largest "
        f"{hb['largest_gap_s']:.1f} s = {hb['gap_of_down_time']:.2f} of service_down_time "
        f"{hb['service_down_time_s']:g} s; ListServices x{ls['listings']}: at least "
        f"{ls['fewest_listed']} listed, at most {ls['most_down']} down"
    )
    lat, lag = snap["latency_ms"], snap["lag_ms"]
    print(
        f"  snapshots: {snap['per_s']:,}/s ({snap['changed_per_s']}/s changed); answer p50 "
        f"{lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms; lag after a change p50 {lag['p50']:.0f} ms, "
        f"p99 {lag['p99']:.0f} ms ({lag['count']} changes)"
    )
    c = cache["lag_ms"]
    print(
        f"  scheduler cache lag: {c['count']} probes, p50 {c['p50']:.0f} ms, p99 {c['p99']:.0f} ms, "
        f"max {c['max']:.0f} ms (polled every {cache['probe_interval_ms']} ms; "
        f"{cache['skipped']} changes not probed, {cache['missed']} never seen)"
    )
    print(
        "  CPU, cores: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
        + f" (of {os.cpu_count()})"
    )
    print(
        "  CPU in the cold start: " + ", ".join(f"{k} {v:.2f}" for k, v in r.cold_cpu_cores.items())
    )
    e = r.end_check
    print(
        f"  at the end: {e['services_listed']} compute services listed ({e['services_down']} down), "
        f"{e['nodes_stored']} nodes stored, {e['host_states']} HostStates "
        f"({e['host_states_service_down']} with the service down)"
    )
    for reason in r.reasons:
        print(f"  does not hold: {reason}")
    for note in r.notes:
        print(f"  note: {note}")


def print_summary(results: list[SizeResult]) -> None:
    header = (
        f"{'nodes':>7} {'verdict':<14} {'cold s':>6} {'gap/down':>8} {'snap p99':>8} "
        f"{'lag p99':>8} {'cache p99':>9} {'registry':>8} {'node':>6} {'sched':>6} {'machine':>7}"
    )
    print("\n" + header)
    print("-" * len(header))
    for r in results:
        c = r.cpu_cores
        print(
            f"{r.nodes:>7,} {r.verdict:<14} {r.cold['seconds']:>6} {r.heartbeats['gap_of_down_time']:>8.2f} "
            f"{r.snapshots['latency_ms']['p99']:>6.0f}ms {r.snapshots['lag_ms']['p99']:>6.0f}ms "
            f"{r.cache['lag_ms']['p99']:>7.0f}ms {c['registry']:>8.2f} {c['node']:>6.2f} "
            f"{c['scheduler']:>6.2f} {c['machine']:>7.2f}"
        )
    held = [r.nodes for r in results if r.verdict == "holds"]
    tried = ", ".join(f"{r.nodes:,}" for r in results)
    if held:
        print(f"\nthe largest N this machine holds: {max(held):,} (tried {tried})")
    else:
        print(f"\nthis machine held none of the sizes tried ({tried})")
    failed_below = [
        r.nodes for r in results if r.verdict != "holds" and held and r.nodes < max(held)
    ]
    if failed_below:
        print(
            f"  (but {failed_below} did not hold: the figures are noisy; run again on a quiet machine)"
        )


def settings_line(s: dict[str, Any]) -> str:
    return (
        f"{s['backend']}; heartbeat every {s['report_interval_s']:g} s, down after "
        f"{s['service_down_time_s']:g} s, snapshots every {s['snapshot_interval_s']:g} s, churn "
        f"{s['churn_per_min']:g} of the nodes per minute, jitter ±{s['jitter']:.0%}; ramp "
        f"{s['ramp_s']:g} s, steady state {s['duration_s']:g} s; {s['client_procs']} client "
        f"process(es), {s['agents_per_stream']} agent(s) per snapshot stream; BERTH_WORKERS "
        f"registry {s['workers_registry'] or '-'}, node {s['workers_node'] or '-'}"
    )


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "backend": args.backend,
        "report_interval_s": args.report_interval or REPORT_INTERVAL_S,
        "service_down_time_s": args.service_down_time or SERVICE_DOWN_TIME_S,
        "snapshot_interval_s": args.snapshot_interval,
        "churn_per_min": args.churn,
        "jitter": args.jitter,
        "ramp_s": args.ramp,
        "settle_s": args.settle,
        "duration_s": args.duration,
        "client_procs": args.client_procs,
        "agents_per_channel": args.agents_per_channel,
        "agents_per_stream": args.agents_per_stream,
        "workers_registry": args.workers_registry,
        "workers_node": args.workers_node,
        "limits": {
            "max_gap_ratio": args.max_gap_ratio,
            "max_snapshot_p99_s": args.max_snapshot_p99,
            "max_snapshot_lag_s": args.max_snapshot_lag,
            "max_cache_lag_s": args.max_cache_lag,
            "max_cpu": args.max_cpu,
        },
    }


# --------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    results: list[SizeResult] = []
    if not args.json:
        print(describe(machine()))
        print(settings_line(settings_of(args)), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="berth-fleet-"))
    try:
        for nodes in args.nodes:
            results.append(await run_size(nodes, args, workdir / f"n{nodes}"))
            if not args.json:
                print_size(results[-1], args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "settings": settings_of(args),
                    "results": [asdict(r) for r in results],
                    "largest_holding": max(
                        (r.nodes for r in results if r.verdict == "holds"), default=None
                    ),
                },
                indent=2,
            )
        )
    else:
        print_summary(results)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Fleet simulator: does this deployment keep N agents in steady state?"
    )
    p.add_argument(
        "--nodes", type=int, action="append", help="fleet size; repeat for several (1000)"
    )
    p.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument(
        "--duration", type=float, default=120.0, help="steady-state seconds measured (120)"
    )
    p.add_argument(
        "--ramp", type=float, default=30.0, help="seconds over which the agents start (30)"
    )
    p.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds between cold start and the window (one report interval)",
    )
    p.add_argument(
        "--cold-timeout",
        type=float,
        default=120.0,
        help="seconds after the ramp the cold start may take (120)",
    )
    p.add_argument(
        "--report-interval",
        type=float,
        default=None,
        help=f"BERTH_REPORT_INTERVAL for every service; agents use what the registry answers "
        f"(default {REPORT_INTERVAL_S:g}, CommonSettings.report_interval)",
    )
    p.add_argument(
        "--service-down-time",
        type=float,
        default=None,
        help=f"BERTH_SERVICE_DOWN_TIME of the registry (default {SERVICE_DOWN_TIME_S:g}, RegistrySettings)",
    )
    p.add_argument(
        "--snapshot-interval",
        type=float,
        default=SNAPSHOT_INTERVAL_S,
        help=f"seconds between an agent's periodic snapshots (default {SNAPSHOT_INTERVAL_S:g}, "
        "ComputeSettings.update_resources_interval)",
    )
    p.add_argument(
        "--churn", type=float, default=0.05, help="share of the nodes changing per minute (0.05)"
    )
    p.add_argument(
        "--jitter", type=float, default=0.1, help="each wait is interval x U(1-j, 1+j) (0.1)"
    )
    p.add_argument(
        "--client-procs", type=int, default=1, help="client processes for the agents (1)"
    )
    p.add_argument(
        "--agents-per-channel", type=int, default=20, help="agents sharing a TCP connection (20)"
    )
    p.add_argument(
        "--agents-per-stream",
        type=int,
        default=1,
        help="agents sharing one ReportSnapshotStream (1: as agents do)",
    )
    p.add_argument(
        "--workers-registry", type=int, default=0, help="BERTH_WORKERS of the registry (unset)"
    )
    p.add_argument(
        "--workers-node", type=int, default=0, help="BERTH_WORKERS of the node service (unset)"
    )
    p.add_argument(
        "--probe-concurrency", type=int, default=4, help="cache-lag probes at once per client (4)"
    )
    p.add_argument(
        "--probe-interval",
        type=float,
        default=0.05,
        help="seconds between ListHostStates polls (0.05)",
    )
    p.add_argument(
        "--list-interval",
        type=float,
        default=None,
        help="seconds between ListServices (report interval)",
    )
    p.add_argument(
        "--max-gap-ratio",
        type=float,
        default=0.5,
        help="limit: largest gap / service_down_time (0.5)",
    )
    p.add_argument(
        "--max-snapshot-p99", type=float, default=2.0, help="limit: snapshot answer p99, s (2)"
    )
    p.add_argument(
        "--max-snapshot-lag", type=float, default=5.0, help="limit: change-to-accepted p99, s (5)"
    )
    p.add_argument(
        "--max-cache-lag", type=float, default=5.0, help="limit: accepted-to-HostState p99, s (5)"
    )
    p.add_argument(
        "--max-cpu",
        type=float,
        default=0.9,
        help="limit: share of its cores a service may use (0.9)",
    )
    p.add_argument(
        "--postgres-url", default=os.environ.get("BERTH_BENCH_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = p.parse_args(argv)
    args.nodes = args.nodes or [1000]
    interval = args.report_interval or REPORT_INTERVAL_S
    args.settle = interval if args.settle is None else args.settle
    args.list_interval = args.list_interval or interval
    args.mariadb_url = ""  # open_database() reads it only for MariaDB
    if min(args.nodes) < 1 or args.client_procs < 1 or args.duration <= 0 or args.ramp < 0:
        p.error("--nodes and --client-procs must be >= 1, --duration > 0, --ramp >= 0")
    if not 0 <= args.jitter < 1 or args.churn < 0:
        p.error("--jitter must be in [0, 1), --churn >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.pop("BERTH_BENCH_SERVER_WORKERS", None):
        log("BERTH_BENCH_SERVER_WORKERS ignored here: use --workers-registry / --workers-node")
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
