"""The scheduler's figures: placements per second and latency with every node weighed, one
request for 100 instances, first sync and resync, Redis memory per node, and the in-process
cost of one decision.

    .venv/bin/python bench/scheduler.py                        # 10,000 and 100,000 nodes
    .venv/bin/python bench/scheduler.py --nodes 10000 --seconds 5 --replicas 2

The scheduler runs as a real process (`python -m services.scheduler`) on a real Redis that
the bench starts for itself (never a shared one unless --redis-url says so). What it follows
is a feeder in this process that serves the registry's WatchServices and the node service's
WatchComputeNodes for N synthetic hosts (one node each; random sizes, 0-70 % used), so a
fleet of 100,000 nodes costs seconds, not the hours real agents would take to report it.
Load: `--in-flight` SelectDestinations calls (m1.tiny, one instance, max_attempts 3: one
claimed primary and two unclaimed alternates per call) kept in flight over real gRPC, closed
loop, spread over the replicas; the scheduler's defaults (every node weighed). Each size
runs with BERTH_WORKERS=1, then 2 (`--workers`): workers share a port by connection, so the
load then goes over 8 connections per worker, as several clients' would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid as uuidlib
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import grpc
from berth.cli.embedded_redis import EmbeddedRedis
from berth.v1 import (
    common_pb2,
    node_pb2,
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from grpc import aio
from redis.asyncio import Redis
from support import REPO, ServiceProcess, client_channel, log, percentile

SYNCED = common_pb2.EVENT_TYPE_SYNCED
# Connections the load opens per scheduler worker (workers share a port by connection).
CONNECTIONS_PER_WORKER = 8
ADDED = common_pb2.EVENT_TYPE_ADDED


def synthetic_node(index: int, rng: random.Random) -> node_pb2.ComputeNode:
    vcpus = rng.choice((32, 48, 64, 96, 128))
    memory_mb = rng.choice((65536, 131072, 262144, 524288))
    disk_gb = rng.choice((500, 1000, 2000, 4000))
    share = rng.random() * 0.7
    return node_pb2.ComputeNode(
        uuid=str(uuidlib.UUID(int=index + 1)),
        host=f"bench-{index:06d}",
        nodename=f"bench-{index:06d}",
        hypervisor_type="QEMU",
        total=common_pb2.Resources(vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb),
        used=common_pb2.Resources(
            vcpus=int(vcpus * share),
            memory_mb=512 + int(memory_mb * share),
            disk_gb=int(disk_gb * share),
        ),
        cpu_allocation_ratio=16.0,
        ram_allocation_ratio=1.5,
        disk_allocation_ratio=1.0,
        reserved_host_memory_mb=512,
        running_vms=rng.randrange(0, 40),
        io_ops=rng.randrange(0, 6),
        generation=1,
    )


class Feeder(registry_pb2_grpc.RegistryServiceServicer, node_pb2_grpc.NodeServiceServicer):
    """The registry and node service as far as a scheduler needs them: watches that list N
    hosts and nodes, then stay open; registration for the scheduler's own heartbeats."""

    def __init__(self, count: int) -> None:
        rng = random.Random(count)
        self.nodes = [synthetic_node(i, rng) for i in range(count)]

    async def WatchServices(self, request, context):
        services = [
            registry_pb2.Service(
                uuid=node.uuid,
                host=node.host,
                binary="berth-compute",
                up=True,
                availability_zone="nova",
            )
            for node in self.nodes
        ]
        Response = registry_pb2.WatchServicesResponse
        if request.listing_batch:  # as the registry does
            for start in range(0, len(services), request.listing_batch):
                chunk = services[start : start + request.listing_batch]
                yield Response(type=ADDED, revision=1, services=chunk)
        else:
            for service in services:
                yield Response(type=ADDED, revision=1, service=service)
        yield Response(type=SYNCED, revision=1)
        await asyncio.Event().wait()

    async def WatchComputeNodes(self, request, context):
        Response = node_pb2.WatchComputeNodesResponse
        if request.listing_batch:  # as the node service does
            for start in range(0, len(self.nodes), request.listing_batch):
                chunk = self.nodes[start : start + request.listing_batch]
                yield Response(type=ADDED, revision=1, nodes=chunk)
        else:
            for node in self.nodes:
                yield Response(type=ADDED, revision=1, node=node)
        yield Response(type=SYNCED, revision=1)
        await asyncio.Event().wait()

    async def RegisterService(self, request, context):
        return registry_pb2.RegisterServiceResponse(
            service=registry_pb2.Service(uuid=str(uuidlib.uuid4()), host=request.host)
        )

    async def HeartbeatStream(self, request_iterator, context):
        async for _ in request_iterator:
            yield registry_pb2.HeartbeatStreamResponse()


async def start_feeder(count: int) -> tuple[aio.Server, str]:
    feeder = Feeder(count)
    server = aio.server(options=[("grpc.max_send_message_length", 64 << 20)])
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(feeder, server)
    node_pb2_grpc.add_NodeServiceServicer_to_server(feeder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def request(count: int = 1) -> scheduler_pb2.SelectDestinationsRequest:
    return scheduler_pb2.SelectDestinationsRequest(
        spec=scheduler_pb2.RequestSpec(
            flavor=scheduler_pb2.Flavor(name="m1.tiny"), num_instances=count
        )
    )


async def batch_latency(stub, count: int, runs: int) -> dict:
    """One request for `count` instances at a time; its claims are released afterwards so
    every run sees the same fleet."""
    latencies = []
    for _ in range(runs):
        sent = time.perf_counter()
        response = await stub.SelectDestinations(request(count), timeout=60)
        latencies.append(time.perf_counter() - sent)
        ids = [s.primary.claim_id for s in response.selections]
        await stub.ReleaseClaims(scheduler_pb2.ReleaseClaimsRequest(claim_ids=ids), timeout=60)
    latencies.sort()
    return {
        "instances": count,
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


async def wait_ready(stub, timeout_s: float) -> float:
    started = time.monotonic()
    while True:
        try:
            await stub.ListHostStates(scheduler_pb2.ListHostStatesRequest(page_size=1), timeout=5)
            await stub.SelectDestinations(request(), timeout=30)
            return time.monotonic() - started
        except aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAVAILABLE:
                raise
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"the scheduler was not ready after {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


async def load(stubs: list[Any], in_flight: int, warmup_s: float, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop = False

    async def caller(index: int) -> None:
        nonlocal errors
        # Each call on the next connection: with more connections than callers (workers),
        # calls spread over all of them, and so over the workers, as many clients' would.
        turn = index
        while not stop:
            stub = stubs[turn % len(stubs)]
            turn += in_flight
            sent = time.perf_counter()
            try:
                await stub.SelectDestinations(request(), timeout=30)
            except aio.AioRpcError:
                errors += 1
                continue
            if measuring:
                latencies.append(time.perf_counter() - sent)

    tasks = [asyncio.create_task(caller(i)) for i in range(in_flight)]
    await asyncio.sleep(warmup_s)
    measuring = True
    started = time.monotonic()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.monotonic() - started
    stop = True
    await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "placements_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "errors": errors,
    }


async def run_size(args, count: int, workdir: Path) -> dict:
    log(f"\n== {count:,} nodes ==")
    feeder, target = await start_feeder(count)
    redis = Redis.from_url(args.redis_url)
    prefix = f"bench{uuidlib.uuid4().hex[:6]}"
    before = int((await redis.info("memory"))["used_memory"])
    env = {
        "BERTH_REDIS_URL": args.redis_url,
        "BERTH_REDIS_PREFIX": prefix,
        "BERTH_REGISTRY_URL": target,
        "BERTH_NODE_URL": target,
        "BERTH_WORKERS": str(args.worker_count),
        **(
            {"BERTH_SAMPLE_PERCENTAGE": str(args.sample_percentage)}
            if args.sample_percentage is not None
            else {}
        ),
    }
    schedulers = [
        ServiceProcess("services.scheduler", "", workdir, env=env | {"BERTH_HOST": f"sched-{i}"})
        for i in range(args.replicas)
    ]
    channels: list[aio.Channel] = []
    load_channels: list[aio.Channel] = []
    result: dict[str, Any] = {"nodes": count}
    try:
        schedulers[0].start()
        await schedulers[0].wait_serving()
        channels.append(aio.insecure_channel(schedulers[0].target))
        first = scheduler_pb2_grpc.SchedulerServiceStub(channels[0])
        result["first_sync_s"] = round(await wait_ready(first, 600), 2)
        after = int((await redis.info("memory"))["used_memory"])
        result["redis_bytes_per_node"] = round((after - before) / count)
        resync = await first.Resync(scheduler_pb2.ResyncRequest(), timeout=600)
        result["resync_s"] = round(resync.duration_ms / 1000, 2)
        log(
            f"first sync {result['first_sync_s']} s, resync {result['resync_s']} s, "
            f"Redis {result['redis_bytes_per_node']} bytes/node"
        )
        result["batch"] = await batch_latency(first, args.batch, runs=10)
        log(f"one request for {args.batch} instances: {json.dumps(result['batch'])}")
        # Workers share a port; the kernel spreads connections, not calls, among them: the
        # load uses several connections per replica, as several clients would.
        per_replica = 1 if args.worker_count == 1 else CONNECTIONS_PER_WORKER * args.worker_count
        load_channels: list[aio.Channel] = []
        for replicas in range(1, args.replicas + 1):
            scheduler = schedulers[replicas - 1]
            if replicas > 1:
                scheduler.start()
                await scheduler.wait_serving()
            for _ in range(per_replica):
                channel = client_channel(scheduler.target, len(load_channels))
                load_channels.append(channel)
                await wait_ready(scheduler_pb2_grpc.SchedulerServiceStub(channel), 600)
            stubs = [scheduler_pb2_grpc.SchedulerServiceStub(c) for c in load_channels]
            cpu_before = [s.cpu_seconds() for s in schedulers[:replicas]]
            figures = await load(stubs, args.in_flight, args.warmup, args.seconds)
            window = args.seconds + args.warmup
            figures["scheduler_cpu_pct"] = [
                round(100 * (s.cpu_seconds() - c) / window)
                for s, c in zip(schedulers[:replicas], cpu_before, strict=True)
            ]
            result[f"replicas_{replicas}"] = figures
            log(f"{replicas} replica(s): {json.dumps(figures)}")
    finally:
        for channel in channels + load_channels:
            await channel.close()
        for scheduler in schedulers:
            scheduler.stop()
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=10_000)]
        for start in range(0, len(keys), 10_000):
            await redis.delete(*keys[start : start + 10_000])
        await redis.aclose()
        await feeder.stop(0)
    return result


def in_process(count: int, decisions: int) -> dict:
    """One decision's cost inside the scheduler (filters, weighers, alternates; no gRPC,
    no Redis: claims are accepted in memory), on the same fleet, every node weighed."""
    import sys

    sys.path.insert(0, str(REPO))
    from services.scheduler.convert import host_state
    from services.scheduler.filters import build_filters
    from services.scheduler.groups import ServerGroups
    from services.scheduler.hoststate import HostFacts
    from services.scheduler.keeper import LOAD_CHUNK
    from services.scheduler.mirror import Mirror
    from services.scheduler.request import Flavor, Request
    from services.scheduler.selector import Selector
    from services.scheduler.settings import SchedulerSettings
    from services.scheduler.store.placement import PendingClaim
    from services.scheduler.weighers import build_weighers

    class AcceptingStore:
        claim_ttl_ms = 300_000

        async def claim_many(self, wanted):
            return [
                PendingClaim(claim_id, claim_id.rpartition(".")[0], instance, resources, 1 << 62)
                for claim_id, instance, resources in wanted
            ]

    async def no_repair(node_uuid: str) -> bool:
        return False

    rng = random.Random(count)
    config = SchedulerSettings()
    mirror = Mirror()
    nodes = [synthetic_node(i, rng) for i in range(count)]
    loaded = time.perf_counter()
    for start in range(0, count, LOAD_CHUNK):  # as the cache keeper loads a listing
        chunk = nodes[start : start + LOAD_CHUNK]
        mirror.set_many_facts(
            HostFacts(node.host, service_up=True, availability_zone="nova") for node in chunk
        )
        mirror.put_nodes([(host_state(node), []) for node in chunk])
    loaded = time.perf_counter() - loaded

    store = AcceptingStore()
    selector = Selector(
        config,
        mirror,
        store,  # type: ignore[arg-type]
        build_filters(config),
        build_weighers(config),
        no_repair,  # type: ignore[arg-type]
        ServerGroups(config, store, None),  # type: ignore[arg-type]
    )

    async def decide() -> list[float]:
        times = []
        for i in range(decisions):
            req = Request(Flavor("m1.tiny", 1, 512, 1), 1, (f"q{i}",))
            started = time.perf_counter()
            await selector.select(req)
            times.append(time.perf_counter() - started)
        return sorted(times)

    times = asyncio.run(decide())
    out = {
        "nodes": count,
        "load_columns_s": round(loaded, 2),
        "decision_p50_ms": round(percentile(times, 50) * 1000, 3),
        "decision_p99_ms": round(percentile(times, 99) * 1000, 3),
    }
    log(f"in process at {count:,} nodes: {json.dumps(out)}")
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="10000,100000")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--workers",
        default="1,2",
        help="BERTH_WORKERS of each scheduler replica (processes on one port); a list runs "
        "each (default: 1, then one per core of this 2-core machine)",
    )
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100, help="instances in the batch request")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--redis-url",
        default="",
        help="a Redis of your own (keys under a fresh prefix); default: a redis-server the "
        "bench starts for itself, so no shared Redis is ever written",
    )
    parser.add_argument("--decisions", type=int, default=500, help="in-process decisions")
    parser.add_argument(
        "--sample-percentage",
        type=float,
        default=None,
        help="weigh a sample instead of every node (the scheduler's setting; default 0: all)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",")]
    results: dict[str, list] = {"load": [], "in_process": []}
    with TemporaryDirectory(prefix="berth-bench-") as tmp:
        own_redis = None
        if not args.redis_url:
            own_redis = EmbeddedRedis(Path(tmp), appendonly=False).start()
            args.redis_url = own_redis.url
        try:
            for count in sizes:
                for workers in [int(w) for w in args.workers.split(",")]:
                    args.worker_count = workers
                    row = await run_size(args, count, Path(tmp))
                    results["load"].append(row | {"workers": workers})
        finally:
            if own_redis is not None:
                own_redis.stop()
    for count in sizes:
        results["in_process"].append(await asyncio.to_thread(in_process, count, args.decisions))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"\nload: {args.in_flight} calls in flight, m1.tiny, every node weighed, client on "
        "this machine"
    )
    print(
        "nodes    replicas  workers  placements/s  p50 ms  p99 ms  sched cpu %  first sync s  "
        "resync s  "
        f"Redis B/node  {args.batch} instances p50/max ms"
    )
    for row in results["load"]:
        for replicas in range(1, args.replicas + 1):
            f = row.get(f"replicas_{replicas}")
            if f:
                batch = row["batch"]
                print(
                    f"{row['nodes']:<8} {replicas:<9} {row['workers']:<8} "
                    f"{f['placements_per_s']:<13} {f['p50_ms']:<7} "
                    f"{f['p99_ms']:<7} {'/'.join(map(str, f['scheduler_cpu_pct'])):<12} "
                    f"{row['first_sync_s']:<13} {row['resync_s']:<9} "
                    f"{row['redis_bytes_per_node']:<13} {batch['p50_ms']}/{batch['max_ms']}"
                )
    print("\nnodes    in-process decision p50/p99 ms   columns loaded in s")
    for row in results["in_process"]:
        print(
            f"{row['nodes']:<8} {row['decision_p50_ms']}/{row['decision_p99_ms']:<26} "
            f"{row['load_columns_s']}"
        )


if __name__ == "__main__":
    asyncio.run(main())
