"""How fast berth-api answers the fleet-wide listings of the Compute API, over real HTTP.

This script starts a small Berth on this machine, each part a subprocess on a free
loopback port: the registry (`python -m services.registry`) and the node service
(`python -m services.node`), each on its own SQLite file in a temp directory (or its own
scratch database on the PostgreSQL server named by `--database-url`), and berth-api
(`python -m services.api`) pointing at both (its scheduler address is an unused port:
these endpoints never call the scheduler). It seeds N hosts (`bench-host-00000`..., the
fleet of bench/snapshots.py): one `berth-compute` service per host registered through
the registry's RegisterService, and one node per host (nodename = host) through the node
service's ReportSnapshot, both as concurrent gRPC calls. The registry runs with
BERTH_SERVICE_DOWN_TIME=3600, so no host goes down during the run.

Then, for each listing, it times one request alone (the first of the listing, then the
next one) and drives closed-loop load for `--seconds` with `--in-flight` requests in
flight (send, read the whole answer, send again):

* `GET /v2.1/os-hypervisors/detail` at microversion 2.88 (no resource fields) and 2.53
  (with vcpus, memory_mb, local_gb, their used amounts, cpu_info...);
* `GET /v2.1/os-services` at 2.88: the N compute services and Berth's own processes.

The first answer of each listing is checked (every node listed once, every compute
service up and enabled, the fields of the microversion); every answer under load must
be 200. Before the load, the gRPC calls berth-api makes are timed on their own, to show
how much of a listing's time is the registry and the node service.

    .venv/bin/python bench/api.py                              # 10,000 nodes, SQLite
    .venv/bin/python bench/api.py --nodes 2000 --seconds 3
    .venv/bin/python bench/api.py --in-flight 8 --seconds 10
    .venv/bin/python bench/api.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/api.py --json                       # figures as JSON on stdout
    .venv/bin/python bench/api.py --keep                       # keep the logs and databases

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from berth.v1 import node_pb2, registry_pb2
from grpc import aio
from snapshots import describe, host_of, machine, snapshot  # the fleet of bench/snapshots.py
from support import (
    Database,
    PostgresDatabase,
    ServiceProcess,
    SqliteDatabase,
    client_channel,
    free_port,
    hide_password,
    log,
    machine_busy_seconds,
    percentile,
)

COMPUTE = "berth-compute"
HYPERVISORS = "/v2.1/os-hypervisors/detail"
SERVICES = "/v2.1/os-services"
# (name, path, microversion): what is measured, in this order.
LISTINGS = (
    ("hypervisors 2.88", HYPERVISORS, "2.88"),
    ("hypervisors 2.53", HYPERVISORS, "2.53"),
    ("services 2.88", SERVICES, "2.88"),
)
RESOURCE_FIELDS = ("vcpus", "memory_mb", "local_gb", "vcpus_used", "running_vms", "cpu_info")
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)


# --------------------------------------------------------------------------- results


@dataclass
class Seeding:
    nodes: int
    register_s: float  # RegisterService for every host (runs alongside the snapshots)
    report_s: float  # ReportSnapshot for every node
    total_s: float  # both, wall clock
    registered_per_s: float
    reported_per_s: float
    concurrency: int
    retried: dict[str, int]  # failed calls retried, by status code and details


@dataclass
class BackendTiming:
    """One walk over every page of a gRPC list call, as berth-api makes it (or could)."""

    call: str
    page_size: int  # 0: the server's default (100)
    pages: int
    items: int
    seconds: float


@dataclass
class Result:
    listing: str  # "hypervisors 2.88"
    path: str
    version: str
    items: int  # entries in the first answer
    bytes: int  # size of the first answer's body
    first_s: float  # the listing's first request, nothing else in flight
    alone_s: float  # the next one, alone too
    requests: int  # answered 200 under load
    seconds: float  # from the start of the load to the last answer
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    in_flight: int
    errors: int  # answers other than 200, and failed requests
    errors_by_status: dict[str, int]
    api_cpu_pct: float  # of one core, during the load
    registry_cpu_pct: float
    node_cpu_pct: float
    client_cpu_pct: float  # this script
    machine_cpu_pct: float  # every process on the machine, of one core
    problems: list[str] = field(default_factory=list)  # what the first answer got wrong
    first_error: str = ""


# --------------------------------------------------------------------------- the Berth


def make_databases(args: argparse.Namespace, workdir: Path) -> tuple[Database, Database]:
    """The registry's and the node service's databases (never shared: own tables each)."""
    if not args.database_url:
        return (
            SqliteDatabase(workdir, "registry.sqlite3"),
            SqliteDatabase(workdir, "node.sqlite3"),
        )
    from sqlalchemy.engine import make_url

    # Scratch databases on that server, made and dropped through asyncpg (plain scheme).
    admin = make_url(args.database_url).set(drivername="postgresql")
    admin_url = admin.render_as_string(hide_password=False)
    registry_db, node_db = PostgresDatabase(admin_url), PostgresDatabase(admin_url)
    # The services get the URL as given (driver included), on the scratch database.
    for database in (registry_db, node_db):
        database.url = make_url(args.database_url).set(database=database.db).render_as_string(False)
    return registry_db, node_db


class ApiProcess(ServiceProcess):
    """`python -m services.api`; ready when GET /readyz answers 200."""

    def __init__(self, workdir: Path, registry: str, node: str, log_level: str) -> None:
        super().__init__(
            "services.api",
            "",
            workdir,
            env={
                "BERTH_REGISTRY_URL": registry,
                "BERTH_NODE_URL": node,
                "BERTH_SCHEDULER_URL": f"127.0.0.1:{free_port()}",  # not called here
                "BERTH_LOG_LEVEL": log_level,
            },
        )
        self.url = f"http://{self.target}"

    async def wait_ready(self, client: httpx.AsyncClient, timeout_s: float = 60.0) -> float:
        """Seconds until /readyz answered 200 (polled every 0.1 s)."""
        started = time.monotonic()
        last = "no answer"
        while True:
            self.check_alive()
            try:
                reply = await client.get(f"{self.url}/readyz", timeout=5)
                if reply.status_code == 200:
                    return time.monotonic() - started
                last = f"{reply.status_code} {reply.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(
                    f"berth-api was not ready after {timeout_s:.0f} s (last: {last}):\n"
                    f"{self.log_tail()}"
                )
            await asyncio.sleep(0.1)


def make_processes(
    args: argparse.Namespace, workdir: Path, registry_db: Database, node_db: Database
) -> tuple[ServiceProcess, ServiceProcess, ApiProcess]:
    for name in ("registry", "node", "api"):
        (workdir / name).mkdir(exist_ok=True)
    node = ServiceProcess("services.node", node_db.url, workdir / "node")
    registry = ServiceProcess(
        "services.registry",
        registry_db.url,
        workdir / "registry",
        env={
            # Nobody goes down during the run: the hosts register once and never heartbeat.
            "BERTH_SERVICE_DOWN_TIME": "3600",
            "BERTH_REPORT_INTERVAL": "10",
            "BERTH_NODE_URL": node.target,
            "BERTH_SCHEDULER_URL": f"127.0.0.1:{free_port()}",
        },
    )
    # The node service registers itself, and asks the registry when a node changes hands.
    node.extra_env["BERTH_REGISTRY_URL"] = registry.target
    api = ApiProcess(workdir / "api", registry.target, node.target, args.api_log_level)
    return registry, node, api


# --------------------------------------------------------------------------- seeding


async def drive(
    label: str,
    count: int,
    concurrency: int,
    call: Callable[[int, int], Awaitable[None]],
) -> tuple[float, dict[str, int]]:
    """call(i, attempt) for i in range(count), `concurrency` at a time, with progress;
    a call failing with UNAVAILABLE / RESOURCE_EXHAUSTED is retried (up to 4 times).
    Returns the seconds, and the retried failures by status code and first details."""
    started = time.monotonic()
    next_index = done = 0
    retried: collections.Counter[str] = collections.Counter()

    async def runner() -> None:
        nonlocal next_index, done
        while next_index < count:
            i = next_index
            next_index += 1
            for attempt in range(5):
                try:
                    await call(i, attempt)
                    break
                except aio.AioRpcError as exc:
                    if attempt == 4 or exc.code() not in RETRIED:
                        raise RuntimeError(
                            f"{label} of {host_of(i)}: {exc.code().name}: {exc.details()}"
                        ) from None
                    retried[f"{exc.code().name}: {(exc.details() or '')[:120]}"] += 1
                    await asyncio.sleep(0.2 * (attempt + 1))
            done += 1

    async def progress() -> None:
        while True:
            await asyncio.sleep(2)
            rate = done / max(time.monotonic() - started, 1e-9)
            log(f"  {label}: {done}/{count} ({rate:.0f}/s)")

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(runner() for _ in range(max(1, min(concurrency, count)))))
    finally:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter
    return time.monotonic() - started, dict(retried)


async def seed(registry: str, node: str, nodes: int, concurrency: int) -> Seeding:
    """One compute service and one node per host, registrations and snapshots together."""
    built = time.monotonic()
    snapshots = [
        node_pb2.ReportSnapshotRequest(snapshot=snapshot(i, 0, sequence=1)).SerializeToString()
        for i in range(nodes)
    ]
    log(f"  {nodes} snapshots built in {time.monotonic() - built:.1f} s")
    channels = [client_channel(registry, n) for n in range(2)]
    channels += [client_channel(node, n) for n in range(2, 6)]
    try:
        registers = [
            c.unary_unary(
                "/berth.v1.RegistryService/RegisterService",
                request_serializer=registry_pb2.RegisterServiceRequest.SerializeToString,
                response_deserializer=registry_pb2.RegisterServiceResponse.FromString,
            )
            for c in channels[:2]
        ]
        # Serialized requests in, raw answers out: the bench stays out of the way.
        reports: list[aio.UnaryUnaryMultiCallable[bytes, bytes]] = [
            c.unary_unary("/berth.v1.NodeService/ReportSnapshot") for c in channels[2:]
        ]

        async def register(i: int, attempt: int) -> None:
            request = registry_pb2.RegisterServiceRequest(
                host=host_of(i), binary=COMPUTE, endpoint=f"127.0.0.1:{1024 + i % 60000}"
            )
            reply = await registers[i % len(registers)](request, timeout=60)
            if reply.service.host != host_of(i):
                raise RuntimeError(f"RegisterService {host_of(i)} answered {reply.service.host}")

        async def report(i: int, attempt: int) -> None:
            try:
                raw = await reports[i % len(reports)](snapshots[i], timeout=60)
            except aio.AioRpcError as exc:
                # A retry of a snapshot the service did store is refused as stale: done.
                if attempt and exc.code() is grpc.StatusCode.ABORTED:
                    return
                raise
            reply = node_pb2.ReportSnapshotResponse.FromString(raw)
            if not reply.node_uuid:
                raise RuntimeError(f"ReportSnapshot {host_of(i)} answered no node uuid")

        started = time.monotonic()
        (register_s, register_retried), (report_s, report_retried) = await asyncio.gather(
            drive("RegisterService", nodes, concurrency, register),
            drive("ReportSnapshot", nodes, concurrency, report),
        )
        total = time.monotonic() - started
    finally:
        for channel in channels:
            await channel.close()
    return Seeding(
        nodes=nodes,
        register_s=round(register_s, 2),
        report_s=round(report_s, 2),
        total_s=round(total, 2),
        registered_per_s=round(nodes / register_s, 1),
        reported_per_s=round(nodes / report_s, 1),
        concurrency=concurrency,
        retried={
            **{f"RegisterService {k}": v for k, v in register_retried.items()},
            **{f"ReportSnapshot {k}": v for k, v in report_retried.items()},
        },
    )


async def backend_timings(registry: str, node: str) -> list[BackendTiming]:
    """The list calls berth-api makes for these listings, on their own: ListComputeNodes
    at 1000 a page and ListServices (berth-compute) at the default size, as berth-api asks
    for them, and ListServices at 1000 a page for comparison."""

    async def walk(
        call: Any, request: Any, items: Callable[[Any], Any], name: str
    ) -> BackendTiming:
        started = time.monotonic()
        pages = count = 0
        while True:
            reply = await call(request, timeout=120)
            pages += 1
            count += len(items(reply))
            if not reply.next_page_token:
                break
            request.page_token = reply.next_page_token
        return BackendTiming(
            call=name,
            page_size=request.page_size,
            pages=pages,
            items=count,
            seconds=round(time.monotonic() - started, 3),
        )

    found = []
    async with aio.insecure_channel(node) as nodes, aio.insecure_channel(registry) as reg:
        list_nodes = nodes.unary_unary(
            "/berth.v1.NodeService/ListComputeNodes",
            request_serializer=node_pb2.ListComputeNodesRequest.SerializeToString,
            response_deserializer=node_pb2.ListComputeNodesResponse.FromString,
        )
        list_services = reg.unary_unary(
            "/berth.v1.RegistryService/ListServices",
            request_serializer=registry_pb2.ListServicesRequest.SerializeToString,
            response_deserializer=registry_pb2.ListServicesResponse.FromString,
        )
        for _ in range(2):  # the first walk warms the servers' caches and connections
            found = [
                await walk(
                    list_nodes,
                    node_pb2.ListComputeNodesRequest(page_size=1000),
                    lambda r: r.nodes,
                    "ListComputeNodes",
                ),
                await walk(
                    list_services,
                    registry_pb2.ListServicesRequest(binary=COMPUTE),
                    lambda r: r.services,
                    f"ListServices {COMPUTE}",
                ),
                await walk(
                    list_services,
                    registry_pb2.ListServicesRequest(binary=COMPUTE, page_size=1000),
                    lambda r: r.services,
                    f"ListServices {COMPUTE}",
                ),
                await walk(
                    list_services,
                    registry_pb2.ListServicesRequest(),
                    lambda r: r.services,
                    "ListServices (all)",
                ),
            ]
    return found


# --------------------------------------------------------------------------- the listings


def check(name: str, data: Any, version: str, nodes: int) -> tuple[int, list[str]]:
    """Entries in the answer, and what is wrong with them."""
    problems: list[str] = []
    if name.startswith("hypervisors"):
        entries = data.get("hypervisors", [])
        names = collections.Counter(h.get("hypervisor_hostname") for h in entries)
        expected = {host_of(i) for i in range(nodes)}
        if len(entries) != nodes or set(names) != expected:
            problems.append(f"{len(entries)} hypervisors ({len(names)} names), expected {nodes}")
        if any(n > 1 for n in names.values()):
            problems.append("some hypervisors are listed twice")
        down = sum(h.get("state") != "up" for h in entries)
        disabled = sum(h.get("status") != "enabled" for h in entries)
        if down or disabled:
            problems.append(f"{down} hypervisors down, {disabled} disabled")
        if any(
            (h.get("service") or {}).get("host") != h.get("hypervisor_hostname") for h in entries
        ):
            problems.append("some hypervisors' service.host is not their hostname")
        with_fields = sum(all(f in h for f in RESOURCE_FIELDS) for h in entries)
        if version == "2.53" and with_fields != len(entries):
            problems.append(f"only {with_fields} of {len(entries)} have the resource fields")
        if version == "2.88":
            if with_fields or any(f in h for h in entries for f in RESOURCE_FIELDS):
                problems.append("resource fields at 2.88")
            if sum("uptime" in h for h in entries) != len(entries):
                problems.append("uptime missing at 2.88")
        if version == "2.53":
            wrong = sum(h.get("vcpus") != 64 or h.get("local_gb") != 2000 for h in entries)
            if wrong:
                problems.append(f"{wrong} hypervisors with other totals than were reported")
        return len(entries), problems
    entries = data.get("services", [])
    compute = [s for s in entries if s.get("binary") == COMPUTE]
    hosts = {s.get("host") for s in compute}
    if len(compute) != nodes or hosts != {host_of(i) for i in range(nodes)}:
        problems.append(f"{len(compute)} {COMPUTE} services, expected {nodes}")
    down = sum(s.get("state") != "up" for s in compute)
    disabled = sum(s.get("status") != "enabled" for s in compute)
    if down or disabled:
        problems.append(f"{down} compute services down, {disabled} disabled")
    if not any(s.get("binary") == "berth-registry" for s in entries):
        problems.append("the registry's own service is not listed")
    return len(entries), problems


async def measure(
    name: str,
    path: str,
    version: str,
    client: httpx.AsyncClient,
    api: ApiProcess,
    registry: ServiceProcess,
    node: ServiceProcess,
    args: argparse.Namespace,
) -> Result:
    url = f"{api.url}{path}"
    headers = {"OpenStack-API-Version": f"compute {version}", "Accept": "application/json"}
    clock = time.monotonic

    # One request alone: the listing's first, then the next one.
    t0 = clock()
    first = await client.get(url, headers=headers)
    first_s = clock() - t0
    t0 = clock()
    second = await client.get(url, headers=headers)
    alone_s = clock() - t0
    problems: list[str] = []
    items = 0
    for reply in (first, second):
        if reply.status_code != 200:
            problems.append(f"answered {reply.status_code}: {reply.text[:500]}")
    if first.status_code == 200:
        items, found = check(name, first.json(), version, args.nodes)
        problems += found
        served = first.headers.get("openstack-api-version", "")
        if served != f"compute {version}":
            problems.append(f"served at {served!r}, not compute {version}")
    log(
        f"{name}: one listing {first_s * 1000:.0f} ms (first), {alone_s * 1000:.0f} ms (next), "
        f"{items} entries, {len(first.content):,} bytes"
        + (f"; PROBLEMS: {'; '.join(problems)}" if problems else "")
    )

    # Closed loop: `in_flight` lanes, each sends, reads the whole answer, sends again.
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    first_error = ""
    deadline = 0.0

    async def lane() -> None:
        nonlocal first_error
        while clock() < deadline:
            t = clock()
            try:
                reply = await client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"[:500]
                await asyncio.sleep(0.05)
                continue
            if reply.status_code == 200:
                latencies.append(clock() - t)
            else:
                errors[str(reply.status_code)] += 1
                first_error = first_error or f"{reply.status_code}: {reply.text[:500]}"

    log(f"{name}: {args.seconds:g} s of load, {args.in_flight} in flight")
    cpu = [p.cpu_seconds() for p in (api, registry, node)]
    busy, client_cpu = machine_busy_seconds(), time.process_time()
    started = clock()
    deadline = started + args.seconds
    await asyncio.gather(*(lane() for _ in range(args.in_flight)))
    seconds = clock() - started
    cpu = [
        100 * (p.cpu_seconds() - c) / seconds
        for p, c in zip((api, registry, node), cpu, strict=True)
    ]
    client_pct = 100 * (time.process_time() - client_cpu) / seconds
    machine_pct = 100 * (machine_busy_seconds() - busy) / seconds
    ordered = sorted(latencies)
    result = Result(
        listing=name,
        path=path,
        version=version,
        items=items,
        bytes=len(first.content),
        first_s=round(first_s, 3),
        alone_s=round(alone_s, 3),
        requests=len(ordered),
        seconds=round(seconds, 2),
        requests_per_s=round(len(ordered) / seconds, 2),
        p50_ms=round(percentile(ordered, 50) * 1000, 1),
        p99_ms=round(percentile(ordered, 99) * 1000, 1),
        max_ms=round((ordered[-1] if ordered else 0.0) * 1000, 1),
        in_flight=args.in_flight,
        errors=sum(errors.values()),
        errors_by_status=dict(errors),
        api_cpu_pct=round(cpu[0], 1),
        registry_cpu_pct=round(cpu[1], 1),
        node_cpu_pct=round(cpu[2], 1),
        client_cpu_pct=round(client_pct, 1),
        machine_cpu_pct=round(machine_pct, 1),
        problems=problems,
        first_error=first_error,
    )
    log(
        f"  {result.requests_per_s:.2f} requests/s  p50 {result.p50_ms:.0f} ms  "
        f"p99 {result.p99_ms:.0f} ms  ({result.requests} answers in {result.seconds:.1f} s, "
        f"errors {result.errors}; cpu: api {result.api_cpu_pct:.0f}%, registry "
        f"{result.registry_cpu_pct:.0f}%, node {result.node_cpu_pct:.0f}%, bench "
        f"{result.client_cpu_pct:.0f}%, machine {result.machine_cpu_pct:.0f}% of "
        f"{os.cpu_count()} cores)"
    )
    return result


# --------------------------------------------------------------------------- report


def print_report(
    args: argparse.Namespace,
    backend: str,
    seeding: Seeding,
    ready_s: float,
    timings: list[BackendTiming],
    results: list[Result],
) -> None:
    print(describe(machine()))
    print(
        f"{args.nodes} nodes on {backend}; berth-api ready {ready_s:.2f} s after start; "
        f"{args.in_flight} requests in flight for {args.seconds:g} s per listing"
    )
    print(
        f"seeding: {seeding.total_s:.1f} s (RegisterService {seeding.register_s:.1f} s, "
        f"{seeding.registered_per_s:,.0f}/s; ReportSnapshot {seeding.report_s:.1f} s, "
        f"{seeding.reported_per_s:,.0f}/s; {seeding.concurrency} calls in flight each)"
    )
    for what, n in seeding.retried.items():
        print(f"  seeding: {n} calls retried after {what}")
    print("the gRPC calls behind the listings, alone (second walk):")
    for t in timings:
        size = f"{t.page_size}/page" if t.page_size else "default page size"
        print(
            f"  {t.call:<28} {size:<18} {t.pages:>4} pages {t.items:>6} items "
            f"{t.seconds * 1000:>8.0f} ms"
        )
    header = (
        f"{'listing':<17} {'items':>6} {'bytes':>11} {'one ms':>7} {'next ms':>7} "
        f"{'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'answers':>7} {'errors':>6} "
        f"{'api cpu':>7} {'reg cpu':>7} {'node cpu':>8} {'all cpu':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.listing:<17} {r.items:>6} {r.bytes:>11,} {r.first_s * 1000:>7.0f} "
            f"{r.alone_s * 1000:>7.0f} {r.requests_per_s:>7.2f} {r.p50_ms:>7.0f} "
            f"{r.p99_ms:>7.0f} {r.max_ms:>7.0f} {r.requests:>7} {r.errors:>6} "
            f"{r.api_cpu_pct:>6.0f}% {r.registry_cpu_pct:>6.0f}% {r.node_cpu_pct:>7.0f}% "
            f"{r.machine_cpu_pct:>6.0f}%"
        )
    for r in results:
        if r.errors_by_status:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(r.errors_by_status.items()))
            print(f"{r.listing}: errors by status: {codes}; first: {r.first_error}")
        for problem in r.problems:
            print(f"{r.listing}: PROBLEM: {problem}")
    for r in results:
        if r.path == HYPERVISORS and r.items:
            verdict = "under" if r.alone_s < 1 else "OVER"
            print(
                f"{r.listing}: one listing of {r.items} hypervisors took {r.alone_s:.2f} s "
                f"({verdict} the 1 s aim), {r.bytes / r.items:,.0f} bytes each"
            )


# --------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="berth-bench-api-"))
    registry_db, node_db = make_databases(args, workdir)
    backend = f"PostgreSQL ({hide_password(args.database_url)})" if args.database_url else "SQLite"
    processes: list[ServiceProcess] = []
    created: list[Database] = []
    results: list[Result] = []
    failed = True
    try:
        for database in (registry_db, node_db):
            await database.create()
            created.append(database)
        registry, node, api = make_processes(args, workdir, registry_db, node_db)
        processes = [api, node, registry]  # the order they stop in
        for service in (registry, node):
            service.start()
            log(f"{service.label} on {service.target} (pid {service.pid})")
        await asyncio.gather(registry.wait_serving(), node.wait_serving())
        log(f"seeding {args.nodes} hosts, {args.seed_concurrency} calls in flight each")
        seeding = await seed(registry.target, node.target, args.nodes, args.seed_concurrency)
        log(
            f"  seeded in {seeding.total_s:.1f} s (RegisterService {seeding.register_s:.1f} s, "
            f"ReportSnapshot {seeding.report_s:.1f} s)"
        )
        api.start()
        log(f"berth-api on {api.url} (pid {api.pid})")
        limits = httpx.Limits(
            max_connections=args.in_flight + 2, max_keepalive_connections=args.in_flight + 2
        )
        async with httpx.AsyncClient(
            timeout=args.request_timeout, limits=limits, trust_env=False
        ) as client:
            ready_s = await api.wait_ready(client)
            log(f"berth-api ready after {ready_s:.2f} s")
            timings = await backend_timings(registry.target, node.target)
            for t in timings:
                log(f"  {t.call} page_size={t.page_size}: {t.pages} pages, {t.seconds:.3f} s")
            for name, path, version in LISTINGS:
                results.append(
                    await measure(name, path, version, client, api, registry, node, args)
                )
                for service in (api, registry, node):
                    service.check_alive()
        failed = any(r.errors or r.problems for r in results)
        if failed:
            log(f"\nsomething failed; the tail of berth-api's log ({api.log_path}):")
            log(api.log_tail(40))
    finally:
        for service in processes:
            service.stop()
        if args.keep:
            log(f"kept {workdir} (logs: */*.log)")
        else:
            for database in created:
                with contextlib.suppress(Exception):
                    await database.drop()
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "settings": {
                        "nodes": args.nodes,
                        "seconds": args.seconds,
                        "in_flight": args.in_flight,
                        "backend": backend,
                    },
                    "ready_s": round(ready_s, 3),
                    "seeding": asdict(seeding),
                    "backend_calls": [asdict(t) for t in timings],
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
        )
    else:
        print()
        print_report(args, backend, seeding, ready_s, timings, results)
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="berth-api's os-hypervisors/detail and os-services over N nodes "
        "(closed-loop HTTP load)."
    )
    p.add_argument("--nodes", type=int, default=10_000, help="hosts, one node each (10000)")
    p.add_argument("--seconds", type=float, default=5.0, help="load per listing, seconds (5)")
    p.add_argument("--in-flight", type=int, default=4, help="requests in flight (4)")
    p.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL server (postgresql[+asyncpg]://user@host:port/db) to make the "
        "registry's and the node service's scratch databases on (dropped at the end); "
        "default: SQLite files in a temp directory",
    )
    p.add_argument(
        "--seed-concurrency",
        type=int,
        default=128,
        help="RegisterService and ReportSnapshot calls in flight while seeding (128 each)",
    )
    p.add_argument(
        "--request-timeout", type=float, default=120.0, help="seconds per HTTP request (120)"
    )
    p.add_argument(
        "--api-log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="berth-api's BERTH_LOG_LEVEL (WARNING: no line per request; INFO logs each)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temp directory (logs, SQLite)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if min(args.nodes, args.in_flight, args.seed_concurrency) < 1:
        p.error("--nodes, --in-flight and --seed-concurrency must be >= 1")
    if args.seconds <= 0 or args.request_timeout <= 0:
        p.error("--seconds and --request-timeout must be > 0")
    if args.database_url and not args.database_url.startswith(("postgresql", "postgres:")):
        p.error("--database-url: a postgresql:// or postgresql+asyncpg:// URL (default: SQLite)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
