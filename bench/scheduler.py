"""SelectDestinations + claims per second, latency, resync time, Redis memory per node, and
what sampling does to the quality of the choice.

    .venv/bin/python bench/scheduler.py                       # 1,000 / 10,000 / 100,000 nodes
    .venv/bin/python bench/scheduler.py --nodes 10000 --seconds 5 --replicas 1

The scheduler runs as a real process (`python -m services.scheduler`) on a real Redis. What
it follows is a feeder in this process that serves the registry's WatchServices and the
node service's WatchComputeNodes for N synthetic hosts (one node each; random sizes and
usage), so a fleet of 100,000 nodes costs seconds, not the hours real agents would take to
report it. Load: `--in-flight` SelectDestinations calls (m1.tiny, one instance, the
default max_attempts 3: a primary and two alternates claimed per call) kept in flight over
real gRPC, closed loop, spread over the replicas.
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
from support import REPO, ServiceProcess, log, percentile

SYNCED = common_pb2.EVENT_TYPE_SYNCED
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
        for node in self.nodes:
            service = registry_pb2.Service(
                uuid=node.uuid,
                host=node.host,
                binary="berth-compute",
                up=True,
                availability_zone="nova",
            )
            yield registry_pb2.WatchServicesResponse(type=ADDED, revision=1, service=service)
        yield registry_pb2.WatchServicesResponse(type=SYNCED, revision=1)
        await asyncio.Event().wait()

    async def WatchComputeNodes(self, request, context):
        for node in self.nodes:
            yield node_pb2.WatchComputeNodesResponse(type=ADDED, revision=1, node=node)
        yield node_pb2.WatchComputeNodesResponse(type=SYNCED, revision=1)
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


def request() -> scheduler_pb2.SelectDestinationsRequest:
    return scheduler_pb2.SelectDestinationsRequest(
        spec=scheduler_pb2.RequestSpec(flavor=scheduler_pb2.Flavor(name="m1.tiny"), num_instances=1)
    )


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
        stub = stubs[index % len(stubs)]
        while not stop:
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
        for replicas in range(1, args.replicas + 1):
            if replicas > 1:
                schedulers[replicas - 1].start()
                await schedulers[replicas - 1].wait_serving()
                channels.append(aio.insecure_channel(schedulers[replicas - 1].target))
                await wait_ready(scheduler_pb2_grpc.SchedulerServiceStub(channels[-1]), 600)
            stubs = [scheduler_pb2_grpc.SchedulerServiceStub(c) for c in channels]
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
        for channel in channels:
            await channel.close()
        for scheduler in schedulers:
            scheduler.stop()
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=10_000)]
        for start in range(0, len(keys), 10_000):
            await redis.delete(*keys[start : start + 10_000])
        await redis.aclose()
        await feeder.stop(0)
    return result


def sampling_quality(count: int, requests: int, percentage: float | None) -> dict:
    """In-process: the same fleet and requests with sampling (the defaults) and without
    (every feasible node weighed, as Nova does). Quality = the chosen node's weight as a
    share of the best weight over all nodes, both normalised over the whole fleet."""
    import sys

    sys.path.insert(0, str(REPO))
    from services.scheduler.context import PlacementContext
    from services.scheduler.convert import host_state
    from services.scheduler.filters import build_filters
    from services.scheduler.groups import ServerGroups
    from services.scheduler.hoststate import HostFacts
    from services.scheduler.mirror import Mirror
    from services.scheduler.request import Flavor, Request
    from services.scheduler.selector import Selector
    from services.scheduler.settings import SchedulerSettings
    from services.scheduler.store.placement import PendingClaim
    from services.scheduler.weighers import build_weighers, weigh_all

    class AcceptingStore:  # the quality of the choice, not Redis, is measured here
        async def claim(self, node_uuid, instance_uuid, wanted):
            return PendingClaim(uuidlib.uuid4().hex, node_uuid, instance_uuid, wanted, 1 << 62)

    async def no_repair(node_uuid: str) -> bool:
        return False

    rng = random.Random(count)
    nodes = [synthetic_node(i, rng) for i in range(count)]
    out: dict[str, Any] = {"nodes": count}
    sampled = {} if percentage is None else {"sample_percentage": percentage}
    for label, overrides in (("sampled", sampled), ("all", {"sample_percentage": 0})):
        config = SchedulerSettings(max_attempts=1, **overrides)
        mirror = Mirror()
        for node in nodes:
            mirror.set_facts(HostFacts(node.host, service_up=True, availability_zone="nova"))
            mirror.put_node(host_state(node), [])
        weighers = build_weighers(config)
        store = AcceptingStore()
        selector = Selector(
            config,
            mirror,
            store,  # type: ignore[arg-type]
            build_filters(config),
            weighers,
            no_repair,  # type: ignore[arg-type]
            ServerGroups(config, store, None),  # type: ignore[arg-type]
        )
        shares, ranks, times = [], [], []
        for i in range(requests):
            req = Request(Flavor("m1.tiny", 1, 512, 1), 1, (f"q{i}",), seed=i)
            states = list(mirror.nodes.values())
            weights = weigh_all(states, weighers, req, PlacementContext())
            by_uuid = {s.node_uuid: w for s, w in zip(states, weights, strict=True)}
            started = time.perf_counter()
            (placement,) = asyncio.run(selector.select(req))
            times.append(time.perf_counter() - started)
            chosen = by_uuid[placement.primary[0].node_uuid]
            shares.append(chosen / max(weights))
            ranks.append(sum(w <= chosen for w in weights) / len(weights))
        times.sort()
        out[label] = {
            "weight_share_mean": round(sum(shares) / len(shares), 4),
            "weight_share_min": round(min(shares), 4),
            "rank_percentile_mean": round(100 * sum(ranks) / len(ranks), 2),
            "select_p50_ms": round(percentile(times, 50) * 1000, 2),
            "select_p99_ms": round(percentile(times, 99) * 1000, 2),
        }
    log(f"sampling at {count:,} nodes: {json.dumps(out)}")
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="1000,10000,100000")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--redis-url",
        default="",
        help="a Redis of your own (keys under a fresh prefix); default: a redis-server the "
        "bench starts for itself, so no shared Redis is ever written",
    )
    parser.add_argument("--quality-requests", type=int, default=100)
    parser.add_argument(
        "--sample-percentage", type=float, default=None, help="the scheduler's; default its own"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.nodes.split(",")]
    results = {"load": [], "sampling": []}
    with TemporaryDirectory(prefix="berth-bench-") as tmp:
        own_redis = None
        if not args.redis_url:
            own_redis = EmbeddedRedis(Path(tmp), appendonly=False).start()
            args.redis_url = own_redis.url
        try:
            for count in sizes:
                results["load"].append(await run_size(args, count, Path(tmp)))
        finally:
            if own_redis is not None:
                own_redis.stop()
    for count in sizes:
        results["sampling"].append(
            await asyncio.to_thread(
                sampling_quality, count, args.quality_requests, args.sample_percentage
            )
        )
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        "\nnodes    replicas  placements/s  p50 ms  p99 ms  sched cpu %  first sync s  resync s  Redis B/node"
    )
    for row in results["load"]:
        for replicas in range(1, args.replicas + 1):
            f = row.get(f"replicas_{replicas}")
            if f:
                print(
                    f"{row['nodes']:<8} {replicas:<9} {f['placements_per_s']:<13} {f['p50_ms']:<7} "
                    f"{f['p99_ms']:<7} {'/'.join(map(str, f['scheduler_cpu_pct'])):<12} "
                    f"{row['first_sync_s']:<13} {row['resync_s']:<9} {row['redis_bytes_per_node']}"
                )
    print("\nnodes    mode     weight share mean/min   rank pct  select p50/p99 ms (in-process)")
    for row in results["sampling"]:
        for mode in ("sampled", "all"):
            q = row[mode]
            print(
                f"{row['nodes']:<8} {mode:<8} {q['weight_share_mean']}/{q['weight_share_min']:<14} "
                f"{q['rank_percentile_mean']:<9} {q['select_p50_ms']}/{q['select_p99_ms']}"
            )


if __name__ == "__main__":
    asyncio.run(main())
