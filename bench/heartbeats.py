"""How many heartbeats per second one registry process sustains, over real gRPC.

For each backend (SQLite, PostgreSQL, optionally MariaDB) this script creates a fresh
database, starts `python -m services.registry` on it as a subprocess, registers N simulated
compute services, then drives closed-loop heartbeat load from client worker processes:

* stream: every simulated service holds one HeartbeatStream open and keeps exactly one
  heartbeat in flight on it (send, wait for the answer, send again), the way the service
  kit heartbeats; the streams are spread over several channels (TCP connections).
* unary: a fixed number of callers (default 200) each keep one Heartbeat RPC in flight,
  cycling over the registered services.

Each run warms up, then counts the heartbeats answered inside the measuring window and
records their latency (send to answer, as the client sees it). Everything is bounded in
time and stops by itself; the database is dropped (or the temp file removed) at the end.

    .venv/bin/python bench/heartbeats.py                       # both backends, both modes
    .venv/bin/python bench/heartbeats.py --seconds 5 --services 2000 --backends sqlite
    .venv/bin/python bench/heartbeats.py --json                # figures as JSON on stdout

See bench/README.md.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio
from support import (
    DEFAULT_MARIADB,
    DEFAULT_POSTGRES,
    Database,
    PostgresDatabase,
    ServiceProcess,
    log,
    machine_busy_seconds,
    open_database,
    percentile,
)
from support import client_channel as _channel

BINARY = "berth-compute"


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    backend: str
    mode: str  # "stream" or "unary"
    heartbeats_per_s: float
    p50_ms: float
    p99_ms: float
    services: int
    in_flight: int  # heartbeats kept in flight by all clients together
    seconds: float
    client_processes: int
    channels: int
    heartbeats: int
    errors: int  # failed heartbeats while loaded (the failed call is retried after 0.1 s)
    opening_errors: int  # streams that failed to open and were retried, before the load
    not_opened: int  # streams still unanswered after --open-timeout: left out of the load
    server_cpu_pct: float  # of one core, over the measuring window
    client_cpu_pct: float  # summed over client processes, of one core
    machine_cpu_pct: float  # every process on the machine (database included), of one core
    first_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- the registry


class RegistryProcess(ServiceProcess):
    """`python -m services.registry` on a loopback port, logs to a file in the workdir."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        server_options: list[tuple[str, int | str]] | None = None,
    ) -> None:
        super().__init__(
            "services.registry",
            database_url,
            workdir,
            # The registry's own heartbeat and the liveness sweeper stay out of the way:
            # nobody goes down while the clients are between runs.
            env={"BERTH_REPORT_INTERVAL": "10", "BERTH_SERVICE_DOWN_TIME": "3600"},
            server_options=server_options,
        )


async def register_services(target: str, count: int, concurrency: int = 64) -> list[str]:
    """Register `bench-host-00000`.. concurrently; returns their uuids in host order."""
    uuids: list[str] = [""] * count
    done = 0
    started = time.monotonic()
    next_index = 0

    async with aio.insecure_channel(target) as channel:
        stub = registry_pb2_grpc.RegistryServiceStub(channel)

        async def registrar() -> None:
            nonlocal done, next_index
            while next_index < count:
                i = next_index
                next_index += 1
                request = registry_pb2.RegisterServiceRequest(
                    host=f"bench-host-{i:05d}", binary=BINARY, endpoint=f"10.0.0.1:{1024 + i}"
                )
                for attempt in range(5):
                    try:
                        reply = await stub.RegisterService(request, timeout=30)
                        break
                    except grpc.aio.AioRpcError as exc:
                        if attempt == 4 or exc.code() not in (
                            grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.ABORTED,
                            grpc.StatusCode.FAILED_PRECONDITION,
                        ):
                            raise
                        await asyncio.sleep(0.1 * (attempt + 1))
                uuids[i] = reply.service.uuid
                done += 1

        async def progress() -> None:
            while True:
                await asyncio.sleep(1)
                rate = done / max(time.monotonic() - started, 1e-9)
                log(f"\r  registered {done}/{count} ({rate:.0f}/s)   ", end="")

        reporter = asyncio.create_task(progress())
        try:
            await asyncio.gather(*(registrar() for _ in range(min(concurrency, count))))
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    elapsed = time.monotonic() - started
    log(f"\r  registered {count}/{count} in {elapsed:.1f} s ({count / elapsed:.0f}/s)   ")
    return uuids


# --------------------------------------------------------------------------- client workers


@dataclass
class WorkerSpec:
    target: str
    mode: str
    uuids: list[str]
    channels: int
    callers: int  # unary only: concurrent callers in this worker
    warmup_s: float
    seconds: float
    open_concurrency: int = 256
    open_timeout_s: float = 30.0
    name: str = "client"


async def _worker_main(spec: WorkerSpec, conn: Connection) -> dict[str, Any]:
    """Connect, open every stream (one heartbeat each), report ready, then load on "go"."""
    channels = [_channel(spec.target, i) for i in range(spec.channels)]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
    stubs = [registry_pb2_grpc.RegistryServiceStub(c) for c in channels]
    loop = asyncio.get_running_loop()
    clock = time.monotonic
    window = [float("inf"), float("inf")]  # [from, to): set on "go"
    latencies = array.array("d")
    stats: dict[str, Any] = {"count": 0, "errors": 0, "first_error": "", "opened": 0}
    go, stop, all_open = asyncio.Event(), asyncio.Event(), asyncio.Event()

    def failed(exc: BaseException) -> None:
        stats["errors"] += 1
        if not stats["first_error"]:
            stats["first_error"] = f"{type(exc).__name__}: {exc}"[:500]

    def record(t0: float, t1: float) -> None:
        if window[0] <= t1 < window[1]:
            stats["count"] += 1
            latencies.append(t1 - t0)

    # Streams open a few hundred at a time, as agents starting over a few seconds would:
    # a burst of thousands of new calls makes gRPC core refuse some of them (see README).
    opening = asyncio.Semaphore(spec.open_concurrency)
    opened_uuids: set[str] = set()

    async def one_stream(stub: registry_pb2_grpc.RegistryServiceStub, uuid: str) -> None:
        request = registry_pb2.HeartbeatStreamRequest(service_uuid=uuid)
        opened = False
        while not stop.is_set():
            call = stub.HeartbeatStream()
            try:
                if not opened:
                    async with opening:
                        await call.write(request)
                        if await call.read() is aio.EOF:
                            raise RuntimeError("the server ended the stream")
                    opened = True
                    opened_uuids.add(uuid)
                    stats["opened"] += 1
                    if stats["opened"] == len(spec.uuids):
                        all_open.set()
                    await go.wait()
                while not stop.is_set():
                    t0 = clock()
                    await call.write(request)
                    reply = await call.read()
                    t1 = clock()
                    if reply is aio.EOF:
                        raise RuntimeError("the server ended the stream")
                    record(t0, t1)
                with contextlib.suppress(grpc.RpcError):
                    await call.done_writing()
                return
            except (grpc.RpcError, RuntimeError) as exc:
                call.cancel()
                failed(exc)
                await asyncio.sleep(0.1)

    async def one_caller(stub: registry_pb2_grpc.RegistryServiceStub, mine: list[str]) -> None:
        requests = [registry_pb2.HeartbeatRequest(service_uuid=u) for u in mine]
        # One heartbeat per service before the clock starts, as in a running fleet: the
        # registry caches what a heartbeat needs per service after its first one.
        for request in requests:
            try:
                await stub.Heartbeat(request, timeout=30)
            except grpc.RpcError as exc:
                failed(exc)
        stats["opened"] += 1
        if stats["opened"] == callers:
            all_open.set()
        await go.wait()
        i = 0
        while not stop.is_set():
            request = requests[i % len(requests)]
            i += 1
            t0 = clock()
            try:
                await stub.Heartbeat(request, timeout=30)
            except grpc.RpcError as exc:
                failed(exc)
                await asyncio.sleep(0.1)
                continue
            record(t0, clock())

    not_opened = 0
    callers = max(1, min(spec.callers, len(spec.uuids)))
    if spec.mode == "stream":
        tasks = [
            asyncio.create_task(one_stream(stubs[i % len(stubs)], u))
            for i, u in enumerate(spec.uuids)
        ]
        deadline = clock() + spec.open_timeout_s
        while not all_open.is_set() and clock() < deadline:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_open.wait(), timeout=min(5.0, deadline - clock()))
            log(f"  [{spec.name}] {stats['opened']}/{len(spec.uuids)} streams open")
        if not all_open.is_set():
            # Streams the server never answered: give up on them, measure the others.
            stalled = {t for t, u in zip(tasks, spec.uuids, strict=True) if u not in opened_uuids}
            for task in stalled:
                task.cancel()
            await asyncio.gather(*stalled, return_exceptions=True)
            not_opened = len(stalled)
            tasks = [t for t in tasks if t not in stalled]
    else:
        tasks = [
            asyncio.create_task(one_caller(stubs[i % len(stubs)], spec.uuids[i::callers]))
            for i in range(callers)
        ]
        await asyncio.wait_for(all_open.wait(), timeout=spec.open_timeout_s + 60)
    opening_errors = stats["errors"]
    conn.send("ready")
    t_go: float = await loop.run_in_executor(None, conn.recv)
    window[:] = [t_go + spec.warmup_s, t_go + spec.warmup_s + spec.seconds]
    await asyncio.sleep(max(0.0, t_go - clock()))
    go.set()
    await asyncio.sleep(max(0.0, window[0] - clock()))
    cpu_from = time.process_time()
    await asyncio.sleep(max(0.0, window[1] - clock()))
    cpu_to = time.process_time()
    stop.set()
    _, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close(grace=None)
    return {
        "count": stats["count"],
        "errors": stats["errors"] - opening_errors,
        "opening_errors": opening_errors,
        "first_error": stats["first_error"],
        "latencies": latencies.tobytes(),
        "cpu_s": cpu_to - cpu_from,
        "in_flight": len(tasks),
        "not_opened": not_opened,
    }


def worker_entry(spec: WorkerSpec, conn: Connection) -> None:
    """A client worker process: run the load, send the figures back, exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        outcome = asyncio.run(_worker_main(spec, conn))
    except BaseException as exc:
        outcome = {"crash": f"{type(exc).__name__}: {exc}"}
    conn.send(outcome)
    conn.close()


def _split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts)]


async def run_load(
    registry: RegistryProcess,
    backend: str,
    mode: str,
    uuids: list[str],
    *,
    processes: int,
    channels: int,
    unary_callers: int,
    warmup_s: float,
    seconds: float,
    database: Database,
    open_concurrency: int = 256,
    open_timeout_s: float = 30.0,
) -> Result:
    ctx = mp.get_context("spawn")
    processes = max(1, min(processes, len(uuids)))
    per_proc_channels = max(1, channels // processes)
    specs = [
        WorkerSpec(
            registry.target,
            mode,
            part,
            per_proc_channels,
            max(1, unary_callers // processes),
            warmup_s,
            seconds,
            max(1, open_concurrency // processes),
            open_timeout_s,
            f"client {n + 1}/{processes}",
        )
        for n, part in enumerate(_split(uuids, processes))
    ]
    workers: list[tuple[mp.process.BaseProcess, Connection]] = []
    for spec in specs:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=worker_entry, args=(spec, child_end), daemon=True)
        proc.start()
        child_end.close()
        workers.append((proc, parent_end))
    loop = asyncio.get_running_loop()

    def recv(conn: Connection, timeout_s: float) -> Any:
        if not conn.poll(timeout_s):
            raise TimeoutError("a client worker did not answer in time")
        return conn.recv()

    try:
        for _, conn in workers:
            ready = await loop.run_in_executor(None, recv, conn, open_timeout_s + 90)
            if ready != "ready":
                registry.check_alive()
                raise RuntimeError(f"client worker failed to start: {ready}")
        t_go = time.monotonic() + 0.5
        for _, conn in workers:
            conn.send(t_go)
        await asyncio.sleep(max(0.0, t_go + warmup_s - time.monotonic()))
        cpu_from, busy_from = registry.cpu_seconds(), machine_busy_seconds()
        commits_from = await database.commits() if isinstance(database, PostgresDatabase) else None
        await asyncio.sleep(max(0.0, t_go + warmup_s + seconds - time.monotonic()))
        cpu_to, busy_to = registry.cpu_seconds(), machine_busy_seconds()
        commits_to = await database.commits() if isinstance(database, PostgresDatabase) else None
        outcomes = [await loop.run_in_executor(None, recv, conn, 60) for _, conn in workers]
    finally:
        for worker, conn in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)
            conn.close()

    registry.check_alive()
    crashes = [o["crash"] for o in outcomes if "crash" in o]
    if crashes:
        raise RuntimeError(f"client worker crashed: {crashes[0]}")
    latencies = array.array("d")
    for outcome in outcomes:
        latencies.frombytes(outcome["latencies"])
    ordered = array.array("d", sorted(latencies))
    count = sum(o["count"] for o in outcomes)
    extra: dict[str, Any] = {}
    if commits_from is not None and commits_to is not None:
        # pg_stat counters lag by up to ~0.5 s; good enough for a heartbeats-per-commit ratio
        commits = commits_to - commits_from
        extra["db_commits_per_s"] = round(commits / seconds, 1)
        extra["heartbeats_per_commit"] = round(count / commits, 1) if commits else None
    return Result(
        backend=backend,
        mode=mode,
        heartbeats_per_s=round(count / seconds, 1),
        p50_ms=round(percentile(ordered, 50) * 1000, 2),
        p99_ms=round(percentile(ordered, 99) * 1000, 2),
        services=len(uuids),
        in_flight=sum(o["in_flight"] for o in outcomes),
        seconds=seconds,
        client_processes=processes,
        channels=per_proc_channels * processes,
        heartbeats=count,
        errors=sum(o["errors"] for o in outcomes),
        opening_errors=sum(o["opening_errors"] for o in outcomes),
        not_opened=sum(o["not_opened"] for o in outcomes),
        server_cpu_pct=round(100 * (cpu_to - cpu_from) / seconds, 1),
        client_cpu_pct=round(100 * sum(o["cpu_s"] for o in outcomes) / seconds, 1),
        machine_cpu_pct=round(100 * (busy_to - busy_from) / seconds, 1),
        first_error=next((o["first_error"] for o in outcomes if o["first_error"]), ""),
        extra=extra,
    )


# --------------------------------------------------------------------------- driver


async def bench_backend(
    database: Database, args: argparse.Namespace, workdir: Path
) -> list[Result]:
    await database.create()
    registry = RegistryProcess(database.url, workdir, args.grpc_server_option)
    results: list[Result] = []
    try:
        registry.start()
        log(f"{database.name}: registry on {registry.target} (pid {registry.pid})")
        await registry.wait_serving()
        uuids = await register_services(registry.target, args.services)
        for mode in args.modes:
            log(
                f"{database.name}: {mode} load, {args.warmup:g} s warm-up + "
                f"{args.seconds:g} s measured"
            )
            result = await run_load(
                registry,
                database.name,
                mode,
                uuids,
                processes=args.clients,
                channels=args.channels if mode == "stream" else args.unary_channels,
                unary_callers=args.unary_in_flight,
                warmup_s=args.warmup,
                seconds=args.seconds,
                database=database,
                open_concurrency=args.open_concurrency,
                open_timeout_s=args.open_timeout,
            )
            if args.grpc_server_option:
                result.extra["grpc_server_options"] = dict(args.grpc_server_option)
            results.append(result)
            log(
                f"  {result.heartbeats_per_s:,.0f} heartbeats/s  p50 {result.p50_ms:.1f} ms  "
                f"p99 {result.p99_ms:.1f} ms  (server cpu {result.server_cpu_pct:.0f}%, "
                f"clients {result.client_cpu_pct:.0f}%, machine {result.machine_cpu_pct:.0f}% "
                f"of {os.cpu_count()} cores, errors {result.errors})"
            )
    finally:
        registry.stop()
        with contextlib.suppress(Exception):
            await database.drop()
    return results


def print_table(results: list[Result]) -> None:
    header = (
        f"{'backend':<11} {'mode':<7} {'heartbeats/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'services':>8} {'in flight':>9} {'seconds':>7} {'srv cpu':>7} {'cli cpu':>7} "
        f"{'all cpu':>7} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<11} {r.mode:<7} {r.heartbeats_per_s:>12,.0f} {r.p50_ms:>8.1f} "
            f"{r.p99_ms:>8.1f} {r.services:>8} {r.in_flight:>9} {r.seconds:>7g} "
            f"{r.server_cpu_pct:>6.0f}% {r.client_cpu_pct:>6.0f}% {r.machine_cpu_pct:>6.0f}% "
            f"{r.errors:>6}"
        )
    for r in results:
        if r.not_opened:
            print(
                f"{r.backend} {r.mode}: {r.not_opened} of {r.services} streams never opened "
                f"(no answer in --open-timeout); the load ran on the other {r.in_flight}"
            )
        if r.opening_errors:
            print(
                f"{r.backend} {r.mode}: {r.opening_errors} stream openings failed and were retried"
            )
        if r.extra:
            print(f"{r.backend} {r.mode}: {r.extra}")
        if r.first_error:
            print(f"{r.backend} {r.mode}: first error: {r.first_error}")


async def main_async(args: argparse.Namespace) -> int:
    results: list[Result] = []
    skipped: dict[str, str] = {}
    workdir = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    try:
        for backend in args.backends:
            database = await open_database(backend, args, workdir, "registry-bench.sqlite3")
            if isinstance(database, str):  # its server does not answer: say so, go on
                skipped[backend] = database
                if args.json:
                    log(database)
                else:
                    print(database, flush=True)
                continue
            results.extend(await bench_backend(database, args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {
                    "results": [asdict(r) for r in results],
                    "skipped": skipped,
                    "cpus": os.cpu_count(),
                },
                indent=2,
            )
        )
    else:
        print()
        print_table(results)
    return 0 if results else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Heartbeats per second one registry process sustains (closed-loop load)."
    )
    p.add_argument(
        "--services", type=int, default=10_000, help="simulated services (default 10000)"
    )
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (15)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run (3)")
    p.add_argument(
        "--backends", default="sqlite,postgresql", help="comma list: sqlite,postgresql,mariadb"
    )
    p.add_argument("--modes", default="stream,unary", help="comma list: stream,unary")
    p.add_argument("--clients", type=int, default=1, help="client worker processes (1)")
    p.add_argument("--channels", type=int, default=16, help="channels for the streams (16)")
    p.add_argument("--unary-channels", type=int, default=8, help="channels for unary calls (8)")
    p.add_argument(
        "--unary-in-flight", type=int, default=200, help="concurrent unary callers (200)"
    )
    p.add_argument(
        "--open-concurrency",
        type=int,
        default=256,
        help="streams being opened at once, over all clients (256); see bench/README.md",
    )
    p.add_argument(
        "--open-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for every stream to open; the rest are left out (30)",
    )
    p.add_argument(
        "--postgres-url",
        default=os.environ.get("BERTH_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="an existing database to connect to for CREATE/DROP DATABASE",
    )
    p.add_argument(
        "--mariadb-url", default=os.environ.get("BERTH_BENCH_MARIADB_URL", DEFAULT_MARIADB)
    )
    p.add_argument(
        "--grpc-server-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="experiment: start the registry with this extra gRPC server option (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    options = []
    for item in args.grpc_server_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--grpc-server-option {item!r}: use KEY=VALUE")
        options.append((key, int(value) if value.lstrip("-").isdigit() else value))
    args.grpc_server_option = options
    for mode in args.modes:
        if mode not in ("stream", "unary"):
            p.error(f"unknown mode {mode!r}: use stream, unary")
    if args.services < 1 or args.seconds <= 0 or args.warmup < 0 or args.clients < 1:
        p.error("--services and --clients must be >= 1, --seconds > 0, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
