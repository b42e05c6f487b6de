"""A fleet simulator: does this machine keep a fleet of N nodes in steady state?

For each N it starts a real registry, node service (PostgreSQL, a fresh database) and
scheduler (an embedded Redis it starts itself), then runs N simulated agents in this
process, each as a real agent does it over real gRPC: RegisterService, then one
HeartbeatStream message per report interval, and its node's snapshots over its own
ReportSnapshotStream (services/compute/snapshot_stream.py, the agent's own class) — the
first at start, then one per snapshot interval, all with ±10 % jitter. A share of the
snapshots (--churn) follows a build or a delete: one instance more or less, so the node
service records a change and the scheduler must see it.

The agents start over --ramp seconds, then the fleet runs for --duration seconds. It holds
when, over the whole run:
* no agent went longer between answered heartbeats than the registry's service_down_time
  (no host could have been reported down), and the registry lists every service up;
* every snapshot was answered, and its p99 within the agent's deadline (REPORT_TIMEOUT_S);
* the scheduler's HostState showed a changed node within --max-cache-lag seconds (p99),
  from the agent sending the snapshot to ListHostStates showing the new usage.
It reports each service's CPU (all its worker processes), and the largest N that held.

The intervals default to Berth's own (BERTH_REPORT_INTERVAL, BERTH_SERVICE_DOWN_TIME,
BERTH_UPDATE_RESOURCES_INTERVAL, read from the settings classes).

    .venv/bin/python bench/fleet.py --nodes 1000 2000 5000
    .venv/bin/python bench/fleet.py --nodes 2000 --server-workers 2 --duration 120
    .venv/bin/python bench/fleet.py --nodes 500 --snapshot-interval 10 --duration 30 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from berth.cli.embedded_redis import EmbeddedRedis
from berth.v1 import (
    node_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from grpc import aio
from snapshots import host_of, snapshot, used_of
from support import (
    DEFAULT_POSTGRES,
    PostgresDatabase,
    ServiceProcess,
    log,
    machine_busy_seconds,
    percentile,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from services.common.backoff import Backoff
from services.common.settings import CommonSettings
from services.compute.pusher import REPORT_TIMEOUT_S
from services.compute.settings import ComputeSettings
from services.compute.snapshot_stream import SnapshotStream
from services.registry.settings import RegistrySettings

CONNECTIONS = 64  # agents have one connection each; the simulator shares these


def default(settings: type[Any], name: str) -> float:
    return float(settings.model_fields[name].default)


@dataclass
class Observed:
    heartbeats: int = 0
    heartbeat_failures: int = 0
    registration_retries: int = 0
    worst_gap_s: float = 0.0
    snapshots: int = 0
    snapshot_failures: int = 0
    first_failure: str = ""
    snapshot_latencies: list[float] = field(default_factory=list)
    cache_lags: list[float] = field(default_factory=list)
    # Changes the scheduler has yet to show: host -> (expected used vcpus, sent at).
    unseen: dict[str, tuple[int, float]] = field(default_factory=dict)

    def failed(self, what: str) -> None:
        self.first_failure = self.first_failure or what[:300]


@dataclass
class Verdict:
    nodes: int
    holds: bool
    reasons: list[str]
    heartbeats_per_s: float
    snapshots_per_s: float
    worst_heartbeat_gap_s: float
    snapshot_p50_ms: float
    snapshot_p99_ms: float
    cache_lag_p50_s: float
    cache_lag_p99_s: float
    cache_lag_samples: int
    cpu_pct: dict[str, float]
    # Retried as agents retry (only their effect above can fail the fleet).
    registration_retries: int
    heartbeat_stream_failures: int
    snapshot_failures: int
    first_failure: str


class Agent:
    def __init__(self, i: int, args: argparse.Namespace, seen: Observed) -> None:
        self.i, self.host, self.args, self.seen = i, host_of(i), args, seen
        self.state = 0
        self.sequence = 0
        self.node_uuid = ""
        self.rng = random.Random(i)

    def jittered(self, seconds: float) -> float:
        return seconds * self.rng.uniform(0.9, 1.1)

    async def run(self, registry: Any, nodes: Any, delay: float) -> None:
        await asyncio.sleep(delay)
        request = registry_pb2.RegisterServiceRequest(host=self.host, binary="berth-compute")
        backoff = Backoff(0.5, self.args.report_interval)  # as the agent's reporter retries
        while True:
            try:
                service = (await registry.RegisterService(request, timeout=10)).service.uuid
                break
            except aio.AioRpcError as exc:
                self.seen.registration_retries += 1
                self.seen.failed(f"{self.host} register: {exc.code().name} {exc.details()}")
                await asyncio.sleep(backoff.next_delay())
        stream = SnapshotStream(nodes, (), timeout_s=REPORT_TIMEOUT_S)
        try:
            await asyncio.gather(self.beat(registry, service), self.report(stream))
        finally:
            await stream.close()

    async def beat(self, registry: Any, service: str) -> None:
        clock = time.monotonic
        last = clock()
        while True:
            call = registry.HeartbeatStream()
            try:
                while True:
                    await call.write(registry_pb2.HeartbeatStreamRequest(service_uuid=service))
                    if await call.read() is aio.EOF:
                        break
                    now = clock()
                    self.seen.heartbeats += 1
                    self.seen.worst_gap_s = max(self.seen.worst_gap_s, now - last)
                    last = now
                    await asyncio.sleep(self.jittered(self.args.report_interval))
            except (aio.AioRpcError, asyncio.InvalidStateError) as exc:
                # The agent's reporter opens a new stream after a backoff: so do we. Only
                # a gap long enough to mark the host down makes the fleet fail.
                self.seen.heartbeat_failures += 1
                code = exc.code().name if isinstance(exc, aio.AioRpcError) else repr(exc)
                details = exc.details() if isinstance(exc, aio.AioRpcError) else ""
                self.seen.failed(f"{self.host} heartbeat: {code} {details}")
                await asyncio.sleep(self.rng.uniform(0.25, 0.5) * self.args.report_interval)
            finally:
                call.cancel()

    async def report(self, stream: SnapshotStream) -> None:
        while True:
            if self.sequence and self.rng.random() < self.args.churn:
                self.state = 1 - self.state  # a build or a delete since the last snapshot
            self.sequence += 1
            sent = time.monotonic()
            try:
                answer = await stream.report(
                    snapshot(self.i, self.state, self.node_uuid, self.sequence)
                )
            except aio.AioRpcError as exc:
                self.seen.snapshot_failures += 1
                self.seen.failed(f"{self.host} snapshot: {exc.code().name} {exc.details()}")
            else:
                answered = time.monotonic()
                self.node_uuid = answer.node_uuid
                self.seen.snapshots += 1
                self.seen.snapshot_latencies.append(answered - sent)
                if answer.changed and self.sequence > 1:
                    self.seen.unseen[self.host] = (used_of(self.i, self.state)["vcpus"], sent)
            await asyncio.sleep(self.jittered(self.args.snapshot_interval))


async def watch_cache(scheduler: Any, seen: Observed) -> None:
    """How long a change takes from the agent sending it to the scheduler's HostState
    showing it (polled every 0.1 s, 20 changes at a time: the resolution is ~0.1 s)."""
    while True:
        for host, (vcpus, sent) in list(seen.unseen.items())[:20]:
            request = scheduler_pb2.ListHostStatesRequest(host=host)
            with contextlib.suppress(grpc.RpcError):
                states = (await scheduler.ListHostStates(request, timeout=10)).host_states
                if states and states[0].used.vcpus == vcpus:
                    seen.cache_lags.append(time.monotonic() - sent)
                    if seen.unseen.get(host, (0, 0.0))[1] == sent:
                        del seen.unseen[host]
        await asyncio.sleep(0.1)


async def all_up(registry: Any) -> tuple[int, int]:
    """(compute services up, registered), over every page."""
    up = registered = 0
    token = ""
    while True:
        request = registry_pb2.ListServicesRequest(
            binary="berth-compute", page_size=1000, page_token=token
        )
        page = await registry.ListServices(request, timeout=60)
        up += sum(s.up for s in page.services)
        registered += len(page.services)
        if not (token := page.next_page_token):
            return up, registered


async def simulate(
    n: int, args: argparse.Namespace, services: dict[str, ServiceProcess]
) -> Verdict:
    seen = Observed()
    own = [("grpc.use_local_subchannel_pool", 1)]  # connections of their own, as agents
    channels = {
        name: [aio.insecure_channel(services[name].target, options=own) for _ in range(CONNECTIONS)]
        for name in ("registry", "node")
    }
    agents = [Agent(i, args, seen) for i in range(n)]
    async with aio.insecure_channel(services["scheduler"].target) as scheduler_channel:
        tasks = [
            asyncio.create_task(
                agent.run(
                    registry_pb2_grpc.RegistryServiceStub(channels["registry"][i % CONNECTIONS]),
                    node_pb2_grpc.NodeServiceStub(channels["node"][i % CONNECTIONS]),
                    args.ramp * i / n,
                )
            )
            for i, agent in enumerate(agents)
        ]
        watcher = asyncio.create_task(
            watch_cache(scheduler_pb2_grpc.SchedulerServiceStub(scheduler_channel), seen)
        )
        await asyncio.sleep(args.ramp + args.snapshot_interval)  # everyone reported once
        # The steady state is what counts: forget the start.
        seen.snapshot_latencies.clear()
        seen.cache_lags.clear()
        seen.worst_gap_s = 0.0
        beats_from, snaps_from = seen.heartbeats, seen.snapshots
        cpu_from = {name: s.cpu_seconds() for name, s in services.items()}
        busy_from, started = machine_busy_seconds(), time.monotonic()
        await asyncio.sleep(args.duration)
        seconds = time.monotonic() - started
        cpu = {
            name: round(100 * (s.cpu_seconds() - cpu_from[name]) / seconds, 1)
            for name, s in services.items()
        }
        cpu["machine"] = round(100 * (machine_busy_seconds() - busy_from) / seconds, 1)
        up, registered = await all_up(
            registry_pb2_grpc.RegistryServiceStub(channels["registry"][0])
        )
        for task in [*tasks, watcher]:
            task.cancel()
        await asyncio.gather(*tasks, watcher, return_exceptions=True)
    for pool in channels.values():
        for channel in pool:
            await channel.close()
    return judge(n, args, seen, seconds, cpu, up, registered, beats_from, snaps_from)


def judge(n: int, args: argparse.Namespace, seen: Observed, seconds: float, cpu: dict[str, float],
          up: int, registered: int, beats_from: int, snaps_from: int) -> Verdict:  # fmt: skip
    latencies, lags = sorted(seen.snapshot_latencies), sorted(seen.cache_lags)
    reasons = []
    if seen.worst_gap_s >= args.service_down_time:
        reasons.append(
            f"a heartbeat gap of {seen.worst_gap_s:.1f} s (down after {args.service_down_time:g} s)"
        )
    if up < n or registered < n:
        reasons.append(f"{up} of {n} compute services up ({registered} registered)")
    if latencies and percentile(latencies, 0.99) >= REPORT_TIMEOUT_S:
        reasons.append(
            f"snapshot p99 {percentile(latencies, 0.99):.1f} s past the agents' deadline"
        )
    if not lags:
        reasons.append("the scheduler showed no change at all")
    elif percentile(lags, 0.99) > args.max_cache_lag:
        reasons.append(
            f"scheduler cache lag p99 {percentile(lags, 0.99):.1f} s > {args.max_cache_lag:g} s"
        )
    ms = lambda values, q: round(1000 * percentile(values, q), 1) if values else 0.0  # noqa: E731
    return Verdict(
        nodes=n,
        holds=not reasons,
        reasons=reasons,
        heartbeats_per_s=round((seen.heartbeats - beats_from) / seconds, 1),
        snapshots_per_s=round((seen.snapshots - snaps_from) / seconds, 1),
        worst_heartbeat_gap_s=round(seen.worst_gap_s, 2),
        snapshot_p50_ms=ms(latencies, 0.5),
        snapshot_p99_ms=ms(latencies, 0.99),
        cache_lag_p50_s=round(percentile(lags, 0.5), 2) if lags else 0.0,
        cache_lag_p99_s=round(percentile(lags, 0.99), 2) if lags else 0.0,
        cache_lag_samples=len(lags),
        cpu_pct=cpu,
        registration_retries=seen.registration_retries,
        heartbeat_stream_failures=seen.heartbeat_failures,
        snapshot_failures=seen.snapshot_failures,
        first_failure=seen.first_failure,
    )


async def run_size(n: int, args: argparse.Namespace, workdir: Path) -> Verdict:
    database = {name: PostgresDatabase(args.postgres_url) for name in ("registry", "node")}
    for db in database.values():
        await db.create()
    redis = EmbeddedRedis(workdir / f"redis-{n}", appendonly=False).start()
    workers = {"BERTH_WORKERS": str(args.server_workers)}
    registry = ServiceProcess("services.registry", database["registry"].url, workdir, env={
        "BERTH_REPORT_INTERVAL": f"{args.report_interval:g}",
        "BERTH_SERVICE_DOWN_TIME": f"{args.service_down_time:g}", **workers})  # fmt: skip
    node = ServiceProcess("services.node", database["node"].url, workdir, env=workers)
    scheduler = ServiceProcess("services.scheduler", "", workdir, env={
        "BERTH_REGISTRY_URL": registry.target, "BERTH_NODE_URL": node.target,
        "BERTH_REDIS_URL": redis.url, "BERTH_REDIS_PREFIX": f"fleet-{n}"})  # fmt: skip
    registry.extra_env["BERTH_NODE_URL"] = node.target
    registry.extra_env["BERTH_SCHEDULER_URL"] = scheduler.target
    services = {"registry": registry, "node": node, "scheduler": scheduler}
    try:
        for service in services.values():
            service.start()
        for service in services.values():
            await service.wait_serving()
        log(f"{n} nodes: ramp {args.ramp:g} s, then {args.duration:g} s measured")
        return await simulate(n, args, services)
    finally:
        for service in services.values():
            service.stop()
        redis.stop()
        for db in database.values():
            await db.drop()


def print_verdicts(verdicts: list[Verdict], args: argparse.Namespace) -> None:
    print(f"intervals: heartbeat {args.report_interval:g} s, snapshot {args.snapshot_interval:g} s, "
          f"down after {args.service_down_time:g} s; churn {args.churn:.0%} of snapshots; "
          f"server workers {args.server_workers}")  # fmt: skip
    header = (f"{'nodes':>7} {'holds':>5} {'beats/s':>8} {'snaps/s':>8} {'worst gap s':>11} "
              f"{'snap p99 ms':>11} {'cache lag p50/p99 s':>19}  cpu % (registry/node/scheduler/machine)")  # fmt: skip
    print(header)
    print("-" * len(header))
    for v in verdicts:
        c = v.cpu_pct
        print(f"{v.nodes:>7} {'yes' if v.holds else 'NO':>5} {v.heartbeats_per_s:>8,.0f} "
              f"{v.snapshots_per_s:>8,.0f} {v.worst_heartbeat_gap_s:>11.1f} {v.snapshot_p99_ms:>11.0f} "
              f"{v.cache_lag_p50_s:>9.2f}/{v.cache_lag_p99_s:<9.2f}  "
              f"{c['registry']:.0f}/{c['node']:.0f}/{c['scheduler']:.0f}/{c['machine']:.0f}")  # fmt: skip
        for reason in v.reasons:
            print(f"        does not hold: {reason}")
        if v.first_failure:
            print(
                f"        retried: {v.registration_retries} registrations, "
                f"{v.heartbeat_stream_failures} heartbeat streams, {v.snapshot_failures} "
                f"snapshots; first: {v.first_failure.splitlines()[0]}"
            )
    held = [v.nodes for v in verdicts if v.holds]
    print(f"largest fleet this machine holds: {max(held) if held else 'none of those tried'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 2000, 5000])
    p.add_argument("--duration", type=float, default=90.0, help="measured seconds (90)")
    p.add_argument("--ramp", type=float, default=20.0, help="seconds over which agents start")
    p.add_argument("--churn", type=float, default=0.1, help="share of snapshots after a change")
    p.add_argument(
        "--report-interval", type=float, default=default(CommonSettings, "report_interval")
    )
    p.add_argument(
        "--service-down-time", type=float, default=default(RegistrySettings, "service_down_time")
    )
    p.add_argument("--snapshot-interval", type=float,
                   default=default(ComputeSettings, "update_resources_interval"))  # fmt: skip
    p.add_argument("--max-cache-lag", type=float, default=5.0, help="seconds, p99 (5)")
    p.add_argument(
        "--server-workers", type=int, default=1, help="BERTH_WORKERS of registry and node"
    )
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    problem = await PostgresDatabase(args.postgres_url).reachable()
    if problem:
        log(f"PostgreSQL is not reachable: {problem}")
        return 2
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="berth-fleet-") as workdir:
        for n in args.nodes:
            verdicts.append(await run_size(n, args, Path(workdir)))
    if args.json:
        print(
            json.dumps({"settings": vars(args), "fleets": [asdict(v) for v in verdicts]}, indent=2)
        )
    else:
        print_verdicts(verdicts, args)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(parse_args())))
