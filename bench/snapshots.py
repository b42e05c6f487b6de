"""How many ResourceSnapshots per second one node service process accepts, over real gRPC.

For each backend (SQLite, PostgreSQL, optionally MariaDB) this script creates a fresh
database, starts `python -m services.node` on it as a subprocess, and sends it snapshots
from client worker processes simulating N nodes (one node per host, as KVM agents have)
over `--transport stream` (default: long-lived `ReportSnapshotStream`s, as agents report,
`--stream-depth` snapshots in flight on each, answered in order) or `--transport unary`
(one `ReportSnapshot` call per snapshot), in three phases:

1. create:    every node's first snapshot (no node uuid yet): the slow path, one
              transaction per node;
2. changed:   snapshots that change their node (an instance more, or one less, and the
              used amounts with it): rewrites the node, replaces its instances, records an
              event, bumps the generation;
3. unchanged: the node's last content again with the next sequence: only the sequence
              is recorded.

Each worker owns a slice of the nodes and keeps `--concurrency / --workers` snapshots in
flight, never two for the same node, so every node's sequence arrives in order. The
requests are serialized before the clock starts (only the sequence number is appended
per snapshot). Every answer is checked (changed flag, generation, node uuid; on a stream
also that it names the snapshot sent in its place) and at the end the stored state is
compared with what was sent (GetStatistics, GetComputeNode for a sample of nodes, and a
replayed snapshot that must be refused as stale).

    .venv/bin/python bench/snapshots.py                      # both backends, 10,000 nodes
    .venv/bin/python bench/snapshots.py --backends sqlite --nodes 2000 --count 5000
    .venv/bin/python bench/snapshots.py --duration 10        # changed/unchanged: 10 s each
    .venv/bin/python bench/snapshots.py --stream-depth 8     # 8 in flight on each stream
    .venv/bin/python bench/snapshots.py --transport unary    # ReportSnapshot calls
    .venv/bin/python bench/snapshots.py --profile sample     # where the server's time goes
    .venv/bin/python bench/snapshots.py --json

See bench/README.md.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import platform
import pstats
import shutil
import signal
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from berth.client.errors import from_rpc_error
from berth.v1 import common_pb2, node_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio
from support import (
    DEFAULT_MARIADB,
    DEFAULT_POSTGRES,
    REPO,
    Database,
    PostgresDatabase,
    ServiceProcess,
    client_channel,
    log,
    machine_busy_seconds,
    open_database,
    percentile,
    sorted_latencies,
)

PHASES = ("create", "changed", "unchanged")
REPORT = "/berth.v1.NodeService/ReportSnapshot"
REPORT_STREAM = "/berth.v1.NodeService/ReportSnapshotStream"
CALL_TIMEOUT_S = 60.0  # default deadline per ReportSnapshot (--call-timeout)

# --------------------------------------------------------------------------- the fleet
#
# Node i is host `bench-host-0000i` with one node of the same name (a KVM-like host). It
# has i % 8 instances ("state 0"); a changed snapshot toggles one more instance in or out
# ("state 1"), so every changed snapshot differs from the stored one.

NAMESPACE = uuidlib.UUID("5d1b7a56-34a4-4f0e-9c1e-6f3b0b2f7a10")
BOOT = Timestamp(seconds=1_767_225_600)  # 2026-01-01T00:00:00Z: the trackers' boot epoch
TOTAL = {"vcpus": 64, "memory_mb": 262_144, "disk_gb": 2_000}
PER_INSTANCE = {"vcpus": 2, "memory_mb": 4_096, "disk_gb": 40}
RESERVED_MB = 512
CPU_INFO = json.dumps(
    {
        "arch": "x86_64",
        "model": "Icelake-Server",
        "vendor": "Intel",
        "topology": {"sockets": 2, "cores": 16, "threads": 2},
        "features": ["avx2", "avx512f", "aes", "sse4.2", "vmx", "pdpe1gb", "x2apic"],
    },
    sort_keys=True,
)


def host_of(i: int) -> str:
    return f"bench-host-{i:05d}"


def base_instances(i: int) -> int:
    return i % 8


def instance_count(i: int, state: int) -> int:
    return base_instances(i) + state


def used_of(i: int, state: int) -> dict[str, int]:
    n = instance_count(i, state)
    return {
        "vcpus": n * PER_INSTANCE["vcpus"],
        "memory_mb": RESERVED_MB + n * PER_INSTANCE["memory_mb"],
        "disk_gb": n * PER_INSTANCE["disk_gb"],
    }


def instance_uuid(i: int, k: int) -> str:
    return str(uuidlib.uuid5(NAMESPACE, f"instance-{i}-{k}"))


def claim_id(i: int, k: int) -> str:
    return uuidlib.uuid5(NAMESPACE, f"claim-{i}-{k}").hex


def snapshot(i: int, state: int, node_uuid: str = "", sequence: int = 0) -> Any:
    """Node i's snapshot in `state` (0: its base instances, 1: one more)."""
    host = host_of(i)
    return node_pb2.ResourceSnapshot(
        host=host,
        nodename=host,
        node_uuid=node_uuid,
        boot_epoch=BOOT,
        sequence=sequence,
        hypervisor_type="QEMU",
        hypervisor_version="9.0.0",
        cpu_info=CPU_INFO,
        total=common_pb2.Resources(**TOTAL),
        used=common_pb2.Resources(**used_of(i, state)),
        disk_available_least_gb=TOTAL["disk_gb"] - used_of(i, state)["disk_gb"],
        host_ip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
        cpu_allocation_ratio=4.0,
        ram_allocation_ratio=1.0,
        disk_allocation_ratio=1.0,
        reserved_host_memory_mb=RESERVED_MB,
        numa_topology=node_pb2.NumaTopology(
            cells=[
                node_pb2.NumaCell(id=c, cpus=list(range(c * 32, c * 32 + 32)), memory_mb=131_072)
                for c in range(2)
            ]
        ),
        supported_instances=["x86_64/kvm/hvm", "i686/kvm/hvm"],
        instances=[
            node_pb2.Instance(
                uuid=instance_uuid(i, k),
                project_id=f"bench-project-{(i + k) % 50:02d}",
                user_id="bench-user",
                resources=common_pb2.Resources(**PER_INSTANCE),
                state=node_pb2.INSTANCE_STATE_ACTIVE,
                claim_id=claim_id(i, k),
            )
            for k in range(instance_count(i, state))
        ],
    )


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_SEQUENCE_TAG = b"\x28"  # ResourceSnapshot.sequence: field 5, varint
_SNAPSHOT_TAG = b"\x0a"  # Report(Stream)Request.snapshot: field 1, length-delimited


def request_bytes(without_sequence: bytes, sequence: int) -> bytes:
    """A serialized ReportSnapshotRequest, or ReportSnapshotStreamRequest (both carry the
    snapshot as field 1 and nothing else): the snapshot serialized without its sequence
    (proto3 leaves 0 out) followed by the sequence field; parsers accept any field order."""
    inner = without_sequence + _SEQUENCE_TAG + varint(sequence)
    return _SNAPSHOT_TAG + varint(len(inner)) + inner


def _self_check() -> None:
    """The composed bytes parse to exactly the request built the ordinary way, for both
    the unary call's request and the stream's."""
    for i, state, uuid, sequence in ((0, 0, "", 1), (13, 1, str(uuidlib.uuid4()), 300)):
        composed = request_bytes(snapshot(i, state, uuid).SerializeToString(), sequence)
        for kind in (node_pb2.ReportSnapshotRequest, node_pb2.ReportSnapshotStreamRequest):
            if kind.FromString(composed) != kind(snapshot=snapshot(i, state, uuid, sequence)):
                raise AssertionError(f"request_bytes does not compose a valid {kind.__name__}")


# --------------------------------------------------------------------------- results


@dataclass
class PhaseResult:
    backend: str
    phase: str
    transport: str  # stream: ReportSnapshotStream; unary: ReportSnapshot
    snapshots: int  # answered OK
    seconds: float  # from the start signal to the last answer
    snapshots_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int  # failed calls
    errors_by_code: dict[str, int]
    # OK answers with an unexpected changed flag / generation / uuid, and stream answers
    # naming another snapshot than the one sent in their place
    wrong_answers: int
    in_flight: int
    server_cpu_pct: float  # of one core
    client_cpu_pct: float  # summed over the client processes, of one core
    machine_cpu_pct: float  # every process on the machine (database included), of one core
    first_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Verification:
    backend: str
    ok: bool
    problems: list[str]
    nodes_checked: int  # by GetComputeNode
    statistics: dict[str, int]  # what GetStatistics said
    expected: dict[str, int]  # what the answered snapshots add up to


# --------------------------------------------------------------------------- client workers


@dataclass
class WorkerSpec:
    target: str
    indexes: list[int]  # the nodes this worker owns (never shared with another worker)
    channels: int
    concurrency: int  # snapshots in flight
    name: str
    call_timeout_s: float = CALL_TIMEOUT_S
    transport: str = "stream"
    stream_depth: int = 1  # stream: snapshots in flight on each stream


_CODES = {code.value[0]: code for code in grpc.StatusCode}


class Refused(Exception):
    """A snapshot the node service did not take: the unary call's status, a stream answer's
    error_code, or how the stream it went on failed (UNAVAILABLE, DEADLINE_EXCEEDED, ...)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason

    @classmethod
    def of(cls, exc: grpc.RpcError) -> Refused:
        error = from_rpc_error(exc)  # the reason travels in the status details
        return cls(error.code, error.reason, error.message)


class OutOfLine(Exception):
    """A stream answer naming another snapshot than the one sent in its place."""


# send(request bytes, nodename, sequence, timeout) -> the ReportSnapshotResponse, or raises
# Refused / OutOfLine. The nodename and sequence are what the stream's answer must name.
Send = Callable[[bytes, str, int, float], Awaitable[Any]]


class UnaryCalls:
    """`lanes` ReportSnapshot calls in flight, each on the next channel (round robin)."""

    def __init__(self, channels: list[aio.Channel], lanes: int) -> None:
        # Bytes in, bytes out: the requests are serialized already, answers parsed here.
        calls: list[aio.UnaryUnaryMultiCallable] = [c.unary_unary(REPORT) for c in channels]
        self._next = itertools.cycle(calls).__next__
        self.lanes = lanes

    async def open(self) -> None:
        pass

    def sender(self, lane: int) -> Send:
        return self.send

    async def send(self, request: bytes, nodename: str, sequence: int, timeout: float) -> Any:  # noqa: ASYNC109 (a per-call deadline)
        try:
            raw = await self._next()(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise Refused.of(exc) from None
        return node_pb2.ReportSnapshotResponse.FromString(raw)

    async def close(self) -> None:
        pass


class SnapshotStream:
    """One long-lived ReportSnapshotStream, shared by `--stream-depth` lanes. Its answers come
    in the order the snapshots went: a write takes its place in line under the lock, and
    its sender reads once the answer before its own was read. A failure ends the stream
    (later answers would come out of line); the next send opens a new one. Bytes in and
    out, as the unary calls: the serialized ReportSnapshotStreamRequest is request_bytes."""

    def __init__(self, method: aio.StreamStreamMultiCallable) -> None:
        self._method = method
        self._call: aio.StreamStreamCall | None = None
        self._last_read: asyncio.Future[None] | None = None  # of the last write on _call
        self._write_lock = asyncio.Lock()

    def _current(self) -> aio.StreamStreamCall:
        if self._call is None or self._call.done():
            self._call = self._method()
            self._last_read = None
        return self._call

    def _end(self, call: aio.StreamStreamCall) -> None:
        call.cancel()  # the sends still waiting on it fail
        if self._call is call:
            self._call = None

    async def open(self) -> None:
        await self._current().wait_for_connection()

    async def send(self, request: bytes, nodename: str, sequence: int, timeout: float) -> Any:  # noqa: ASYNC109 (a per-snapshot deadline)
        read = asyncio.get_running_loop().create_future()
        call = None
        try:
            async with asyncio.timeout(timeout):
                async with self._write_lock:  # a write and its place in line go together
                    call = self._current()
                    before, self._last_read = self._last_read, read
                    await call.write(request)
                if before is not None and not before.done():
                    await before
                raw = await call.read()
        except BaseException as exc:
            if call is not None:
                self._end(call)
            if isinstance(exc, TimeoutError):
                message = f"no answer within {timeout:g} s"
                raise Refused(grpc.StatusCode.DEADLINE_EXCEEDED, "NO_ANSWER", message) from None
            if isinstance(exc, grpc.RpcError):
                raise Refused.of(exc) from None
            if isinstance(exc, asyncio.InvalidStateError):  # written after the stream ended
                raise Refused(grpc.StatusCode.UNAVAILABLE, "STREAM_ENDED", str(exc)) from None
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task and not task.cancelling():
                # Not this task: gRPC cancels the reads and writes of a cancelled call, and
                # an earlier send on this stream failed and ended it.
                message = "the stream ended after an earlier snapshot on it failed"
                raise Refused(grpc.StatusCode.CANCELLED, "STREAM_ENDED", message) from None
            raise
        finally:
            # The next in line may read, whatever happened here (a cancelled or timed-out
            # successor cancels the future it awaited, so it may be done already).
            if not read.done():
                read.set_result(None)
        if not isinstance(raw, bytes):  # EOF: the stream ended without an error
            self._end(call)
            message = "the node service ended the stream"
            raise Refused(grpc.StatusCode.UNAVAILABLE, "STREAM_ENDED", message)
        answer = node_pb2.ReportSnapshotStreamResponse.FromString(raw)
        if answer.nodename != nodename or answer.sequence != sequence:
            raise OutOfLine(
                f"the answer in the place of {nodename} #{sequence} is for "
                f"{answer.nodename!r} #{answer.sequence}"
            )
        if answer.error_code:
            code = _CODES.get(answer.error_code, grpc.StatusCode.UNKNOWN)
            raise Refused(code, answer.error_reason, answer.error_message)
        return answer.accepted

    async def close(self) -> None:
        if self._call is not None and not self._call.done():
            with contextlib.suppress(Exception):
                await self._call.done_writing()


class SnapshotStreams:
    """`lanes` snapshots in flight over ceil(lanes / depth) streams spread over the channels:
    lane n sends on stream n // depth, so each stream has `depth` in flight (the last maybe
    fewer), as agents each keep one stream for all their nodes."""

    def __init__(self, channels: list[aio.Channel], lanes: int, depth: int) -> None:
        methods: list[aio.StreamStreamMultiCallable] = [
            c.stream_stream(REPORT_STREAM) for c in channels
        ]
        streams = -(-lanes // depth)
        self._streams = [SnapshotStream(methods[n % len(methods)]) for n in range(streams)]
        self._depth = depth
        self.lanes = lanes

    async def open(self) -> None:
        for start in range(0, len(self._streams), 256):  # not thousands of calls at once
            await asyncio.gather(*(s.open() for s in self._streams[start : start + 256]))

    def sender(self, lane: int) -> Send:
        return self._streams[lane // self._depth].send

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._streams))


class Fleet:
    """One worker's nodes: what it sent last and what the service must hold."""

    def __init__(self, indexes: list[int]) -> None:
        self.indexes = indexes
        self.hosts = [host_of(i) for i in indexes]  # each host's one nodename too
        n = len(indexes)
        self.uuids = [""] * n
        self.sequence = [0] * n
        self.state = [0] * n
        self.generation = [0] * n
        # A call failed and none succeeded since: what the service holds is not known.
        self.uncertain = [False] * n
        self.create_requests = [
            request_bytes(snapshot(i, 0).SerializeToString(), 1) for i in indexes
        ]
        self.bodies: list[tuple[bytes, bytes]] = []  # per node: state 0, state 1 (no sequence)

    def prepare_updates(self) -> None:
        """The serialized snapshots of both states, with the node uuid the service gave."""
        self.bodies = [
            (
                snapshot(i, 0, self.uuids[p]).SerializeToString(),
                snapshot(i, 1, self.uuids[p]).SerializeToString(),
            )
            for p, i in enumerate(self.indexes)
        ]

    def take(self, p: int, phase: str, state: int, sequence: int, reply: Any) -> str:
        """Record node p's accepted snapshot; what in the answer was not as expected ('' if
        nothing): the changed flag, the generation (+1 for a change), the node uuid."""
        if phase == "create":
            expected = (True, 1)
            self.uuids[p] = reply.node_uuid
        else:
            changed = phase == "changed"
            expected = (changed, self.generation[p] + changed)
        problem = ""
        if self.uncertain[p]:
            # An earlier call failed, so nothing was expected; an OK answer means the
            # service holds this snapshot now: known again.
            self.uuids[p] = reply.node_uuid
            self.uncertain[p] = False
        elif (reply.changed, reply.generation) != expected or (
            reply.node_uuid != self.uuids[p] or not reply.node_uuid
        ):
            problem = (
                f"answered changed={reply.changed} generation={reply.generation} "
                f"uuid={reply.node_uuid!r}, expected changed={expected[0]} "
                f"generation={expected[1]}"
            )
            self.uncertain[p] = True
        self.sequence[p] = sequence
        self.state[p] = state
        self.generation[p] = reply.generation
        return problem

    def expected_sums(self) -> dict[str, int]:
        sums = collections.Counter[str]()
        for p, i in enumerate(self.indexes):
            used = used_of(i, self.state[p])
            sums["count"] += 1
            sums["running_vms"] += instance_count(i, self.state[p])
            sums["vcpus_used"] += used["vcpus"]
            sums["memory_mb_used"] += used["memory_mb"]
            sums["disk_gb_used"] += used["disk_gb"]
            sums["vcpus"] += TOTAL["vcpus"]
            sums["memory_mb"] += TOTAL["memory_mb"]
            sums["disk_gb"] += TOTAL["disk_gb"]
        sums["uncertain"] = sum(self.uncertain)
        return dict(sums)


async def _run_phase(
    fleet: Fleet,
    transport: UnaryCalls | SnapshotStreams,
    phase: str,
    quota: float,
    start_at: float,
    deadline: float,
    call_timeout_s: float = CALL_TIMEOUT_S,
) -> dict[str, Any]:
    clock = time.monotonic
    latencies = array.array("d")
    errors: collections.Counter[str] = collections.Counter()
    stats: dict[str, Any] = {"count": 0, "wrong": 0, "first_error": "", "last": start_at}
    remaining = quota

    def note(message: str) -> None:
        if not stats["first_error"]:
            stats["first_error"] = message[:500]

    async def lane(mine: list[int], send: Send) -> None:
        nonlocal remaining
        while mine:
            for p in mine:
                if remaining <= 0 or clock() >= deadline:
                    return
                remaining -= 1
                if phase == "create":
                    request, state, sequence = fleet.create_requests[p], 0, 1
                else:
                    state = 1 - fleet.state[p] if phase == "changed" else fleet.state[p]
                    sequence = fleet.sequence[p] + 1
                    request = request_bytes(fleet.bodies[p][state], sequence)
                t0 = clock()
                try:
                    reply = await send(request, fleet.hosts[p], sequence, call_timeout_s)
                except (Refused, OutOfLine) as exc:
                    if isinstance(exc, Refused):
                        errors[exc.code.name] += 1
                    else:
                        stats["wrong"] += 1
                    note(f"{fleet.hosts[p]}: {phase}: {exc}")
                    fleet.uncertain[p] = True
                    fleet.sequence[p] = sequence
                    continue
                t1 = clock()
                latencies.append(t1 - t0)
                stats["count"] += 1
                stats["last"] = t1
                problem = fleet.take(p, phase, state, sequence, reply)
                if problem:
                    stats["wrong"] += 1
                    note(f"node {fleet.hosts[p]}: {phase} {problem}")
            if phase == "create":
                return

    positions = list(range(len(fleet.indexes)))
    lanes = max(1, min(transport.lanes, len(positions)))
    await asyncio.sleep(max(0.0, start_at - clock()))
    cpu_from = time.process_time()
    await asyncio.gather(*(lane(positions[n::lanes], transport.sender(n)) for n in range(lanes)))
    return {
        "count": stats["count"],
        "wrong": stats["wrong"],
        "errors": dict(errors),
        "first_error": stats["first_error"],
        "latencies": latencies.tobytes(),
        "last": stats["last"],
        "cpu_s": time.process_time() - cpu_from,
        "in_flight": lanes,
    }


async def _replay(fleet: Fleet, p: int, send: Send) -> list[str]:
    """The unchanged phase stores only the sequence: replaying node p's last snapshot must
    be refused as stale. Then the next sequence must be taken (unchanged): over a stream,
    this shows the stream went on after the refusal."""
    host, sequence, state = fleet.hosts[p], fleet.sequence[p], fleet.state[p]
    try:
        await send(request_bytes(fleet.bodies[p][state], sequence), host, sequence, 30)
        return [f"{host}: a replay of sequence {sequence} was accepted: it was not stored"]
    except OutOfLine as exc:
        return [f"{host}: the replay: {exc}"]
    except Refused as exc:
        if (exc.code, exc.reason) != (grpc.StatusCode.ABORTED, "STALE_SNAPSHOT"):
            return [f"{host}: the replay was refused with {exc}, not ABORTED STALE_SNAPSHOT"]
    sequence += 1
    try:
        reply = await send(request_bytes(fleet.bodies[p][state], sequence), host, sequence, 30)
    except (Refused, OutOfLine) as exc:
        fleet.uncertain[p] = True
        return [f"{host}: the snapshot after the refused replay: {exc}"]
    problem = fleet.take(p, "unchanged", state, sequence, reply)
    return [f"{host}: the snapshot after the refused replay {problem}"] if problem else []


async def _verify_sample(fleet: Fleet, channel: aio.Channel, send: Send) -> dict[str, Any]:
    """GetComputeNode for ~25 of this worker's nodes, and one replayed (stale) snapshot."""
    get = channel.unary_unary(
        "/berth.v1.NodeService/GetComputeNode",
        request_serializer=node_pb2.GetComputeNodeRequest.SerializeToString,
        response_deserializer=node_pb2.GetComputeNodeResponse.FromString,
    )
    problems: list[str] = []
    certain = [p for p in range(len(fleet.indexes)) if not fleet.uncertain[p]]
    sample = certain[:: max(1, len(certain) // 25)]
    for p in sample:
        i, state = fleet.indexes[p], fleet.state[p]
        ref = node_pb2.ComputeNodeRef(uuid=fleet.uuids[p])
        node = (await get(node_pb2.GetComputeNodeRequest(node=ref), timeout=30)).node
        n = instance_count(i, state)
        got = (
            node.host,
            node.nodename,
            node.generation,
            node.running_vms,
            node.used.vcpus,
            node.used.memory_mb,
            node.used.disk_gb,
            sorted(node.claim_ids),
        )
        want = (
            host_of(i),
            host_of(i),
            fleet.generation[p],
            n,
            *used_of(i, state).values(),
            sorted(claim_id(i, k) for k in range(n)),
        )
        if got[:7] != want[:7]:
            problems.append(f"{host_of(i)}: stored {got[:7]}, expected {want[:7]}")
        elif got != want:
            problems.append(f"{host_of(i)}: claim ids {got[7]}, expected {want[7]}")
    if sample:
        problems += await _replay(fleet, sample[0], send)
    return {"problems": problems, "checked": len(sample), "sums": fleet.expected_sums()}


async def _worker_main(spec: WorkerSpec, conn: Connection) -> None:
    fleet = Fleet(spec.indexes)
    channels = [client_channel(spec.target, i) for i in range(spec.channels)]
    for channel in channels:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
    loop = asyncio.get_running_loop()
    transport = (
        SnapshotStreams(channels, spec.concurrency, spec.stream_depth)
        if spec.transport == "stream"
        else UnaryCalls(channels, spec.concurrency)
    )
    await transport.open()  # before the clock starts
    conn.send("ready")
    try:
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command["do"] == "phase":
                outcome = await _run_phase(
                    fleet,
                    transport,
                    command["phase"],
                    command["quota"],
                    command["start_at"],
                    command["deadline"],
                    spec.call_timeout_s,
                )
                conn.send(outcome)
            elif command["do"] == "prepare":
                fleet.prepare_updates()  # the uuids are known now
                conn.send("prepared")
            elif command["do"] == "verify":
                conn.send(await _verify_sample(fleet, channels[0], transport.sender(0)))
            else:
                break
    finally:
        await transport.close()
        for channel in channels:
            await channel.close(grace=None)


def worker_entry(spec: WorkerSpec, conn: Connection) -> None:
    """A client worker process: answer the parent's commands until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        asyncio.run(_worker_main(spec, conn))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send({"crash": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def in_flight_per_worker(args: argparse.Namespace) -> list[int]:
    """--concurrency shared out over the worker processes."""
    count = max(1, min(args.workers, args.nodes))
    return [
        max(1, args.concurrency // count + (n < args.concurrency % count)) for n in range(count)
    ]


def streams_of(args: argparse.Namespace) -> int:
    """The streams all workers open (0 for unary calls): each has --stream-depth in flight."""
    if args.transport != "stream":
        return 0
    return sum(-(-c // args.stream_depth) for c in in_flight_per_worker(args))


class Workers:
    """The client worker processes of one backend run."""

    def __init__(self, targets: list[str], nodes: int, args: argparse.Namespace) -> None:
        ctx = mp.get_context("spawn")
        count = max(1, min(args.workers, nodes))
        self.procs: list[tuple[mp.process.BaseProcess, Connection]] = []
        for n, in_flight in enumerate(in_flight_per_worker(args)):
            spec = WorkerSpec(
                targets[n % len(targets)],  # with --replicas, each worker uses one replica
                list(range(n, nodes, count)),
                args.channels,
                in_flight,
                f"client {n + 1}/{count}",
                args.call_timeout,
                args.transport,
                args.stream_depth,
            )
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=worker_entry, args=(spec, child_end), daemon=True)
            proc.start()
            child_end.close()
            self.procs.append((proc, parent_end))

    def __len__(self) -> int:
        return len(self.procs)

    async def ask_all(self, commands: list[dict[str, Any]], timeout_s: float) -> list[Any]:
        for (_, conn), command in zip(self.procs, commands, strict=True):
            conn.send(command)
        return await self.gather(timeout_s)

    async def gather(self, timeout_s: float) -> list[Any]:
        loop = asyncio.get_running_loop()

        def recv(conn: Connection) -> Any:
            if not conn.poll(timeout_s):
                raise TimeoutError("a client worker did not answer in time")
            return conn.recv()

        answers = await asyncio.gather(
            *(loop.run_in_executor(None, recv, conn) for _, conn in self.procs)
        )
        crashes = [a["crash"] for a in answers if isinstance(a, dict) and "crash" in a]
        if crashes:
            raise RuntimeError(f"client worker crashed: {crashes[0]}")
        return answers

    def close(self) -> None:
        for _, conn in self.procs:
            with contextlib.suppress(OSError):
                conn.send({"do": "stop"})
        for proc, conn in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
            conn.close()


# --------------------------------------------------------------------------- profiling


class Profiler:
    """Per-phase profiles of the node service: SIGUSR1 starts one, SIGUSR2 writes it."""

    def __init__(self, mode: str, directory: Path, backend: str) -> None:
        self.mode = mode
        self.directory = directory
        self.backend = backend
        self.path = directory / f"node-{backend}"
        self.written = 0

    def start(self, service: ServiceProcess) -> None:
        if service.proc is not None:
            service.proc.send_signal(signal.SIGUSR1)

    async def finish(self, service: ServiceProcess, phase: str) -> Path | None:
        if service.proc is None:
            return None
        service.proc.send_signal(signal.SIGUSR2)
        written = Path(f"{self.path}.{self.written}")
        self.written += 1
        suffix = ".prof" if self.mode == "cprofile" else ".folded"
        target = self.directory / f"node-{self.backend}-{phase}{suffix}"
        if not await asyncio.to_thread(_move_when_written, written, target, 30.0):
            log(f"  profile of {phase} was not written")
            return None
        return target


def _move_when_written(written: Path, target: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not written.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    written.rename(target)
    return True


def summarize_profile(path: Path, mode: str, top: int = 25) -> str:
    return _summarize_cprofile(path, top) if mode == "cprofile" else _summarize_samples(path, top)


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", str(REPO) + "/"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/lib/python3" else rest
    return filename


def _area(frame: str) -> str:
    """The package a frame belongs to, for the summary by area."""
    path = frame.rsplit(":", 1)[0]
    if path.startswith("services/"):
        return "/".join(path.split("/")[:2])
    if path.startswith(("<", "~")):
        return "builtins / C"
    if path.startswith("/"):
        return "other"
    top = path.split("/", 1)[0]
    return top.removesuffix(".py")


def _summarize_samples(path: Path, top: int) -> str:
    stacks: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            stacks[stack] += int(count)
    total = sum(stacks.values())
    idle = sum(c for s, c in stacks.items() if s.endswith(("selectors.py:select", "<idle>")))
    busy = total - idle
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    areas: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        if stack.endswith(("selectors.py:select", "<idle>")):
            continue
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        areas[_area(frames[-1])] += count
    lines = [
        f"{total} samples (one per 2 ms of the process's CPU time), "
        f"{100 * idle / max(total, 1):.0f}% with the event loop waiting (CPU of other threads); "
        f"percentages below are of the {busy} busy samples. Own time of "
        "asyncio/events.py:_run is Cython/C work run as loop callbacks (gRPC aio, asyncpg).",
        "",
        "own time by area:",
    ]
    lines += [f"  {100 * c / max(busy, 1):5.1f}%  {a}" for a, c in areas.most_common(12)]
    lines += ["", "inclusive (the function and what it calls):"]
    # Frames on (nearly) every stack are roots: runpy, main, asyncio.run, loop callbacks.
    shown = [(f, c) for f, c in inclusive.most_common() if c < 0.95 * busy]
    lines += [f"  {100 * c / max(busy, 1):5.1f}%  {f}" for f, c in shown[:top]]
    lines += ["", "own time (the function's own code):"]
    lines += [f"  {100 * c / max(busy, 1):5.1f}%  {f}" for f, c in own.most_common(top)]
    return "\n".join(lines)


def _summarize_cprofile(path: Path, top: int) -> str:
    stats = pstats.Stats(str(path))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _, _, tt, _, _ in entries.values())
    idle = sum(tt for (f, _, name), (_, _, tt, _, _) in entries.items() if "poll" in name)
    rows = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)
    lines = [f"cProfile: {total:.1f} s of own time, {idle:.1f} s of it waiting (poll)", ""]
    lines.append("   own %   own s      calls  cum s  function")
    for (filename, line, name), (_, calls, tt, ct, _) in rows[:top]:
        where = f"{_short(filename)}:{line}({name})"
        lines.append(
            f"  {100 * tt / max(total, 1e-9):5.1f}%  {tt:6.2f}  {calls:9d}  {ct:5.1f}  {where}"
        )
    return "\n".join(lines)


# The sampler the node service runs with --profile sample: every 2 ms of CPU the process
# uses (ITIMER_PROF), SIGPROF records the main thread's Python stack. A sampling thread
# would be biased: it only gets the GIL where the main thread lets go of it (socket I/O).
# CPU used by other threads while the main thread waits shows as the event loop's select.
_SAMPLER = """
import collections, os, signal, sys
stacks = collections.Counter()
names = {}
written = [0]
base = os.environ["BENCH_PROFILE_TO"]
def short(filename):
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/lib/python3" else rest
    return filename.removeprefix(os.getcwd() + "/")
def name(code):
    found = names.get(code)
    if found is None:
        found = names[code] = f"{short(code.co_filename)}:{code.co_name}"
    return found
def sample(_signum, frame):
    frames = []
    while frame is not None:
        frames.append(name(frame.f_code))
        frame = frame.f_back
    # SQLAlchemy's async layer runs the ORM in greenlets: stitch on the waiting parents.
    greenlet = sys.modules.get("greenlet")
    g = greenlet.getcurrent() if greenlet is not None else None
    while g is not None and g.parent is not None:
        g = g.parent
        frame = g.gr_frame
        while frame is not None:
            frames.append(name(frame.f_code))
            frame = frame.f_back
    stacks[";".join(reversed(frames)) or "<idle>"] += 1
def start(*_):
    stacks.clear()
    signal.signal(signal.SIGPROF, sample)
    signal.siginterrupt(signal.SIGPROF, False)
    signal.setitimer(signal.ITIMER_PROF, 0.002, 0.002)
def stop(*_):
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    path = f"{base}.{written[0]}"
    written[0] += 1
    with open(path + ".tmp", "w") as out:
        for stack, count in stacks.items():
            out.write(f"{stack} {count}\\n")
    os.rename(path + ".tmp", path)
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
"""

_CPROFILE = """
import cProfile, os, signal
profiler = [None]
written = [0]
base = os.environ["BENCH_PROFILE_TO"]
def start(*_):
    profiler[0] = cProfile.Profile()
    profiler[0].enable()
def stop(*_):
    if profiler[0] is None:
        return
    profiler[0].disable()
    path = f"{base}.{written[0]}"
    written[0] += 1
    profiler[0].dump_stats(path + ".tmp")
    os.rename(path + ".tmp", path)
    profiler[0] = None
signal.signal(signal.SIGUSR1, start)
signal.signal(signal.SIGUSR2, stop)
"""


# --------------------------------------------------------------------------- the node service


_HOOK = """
import os
with open(os.environ["BENCH_SERVER_HOOK"]) as _hook:
    exec(compile(_hook.read(), os.environ["BENCH_SERVER_HOOK"], "exec"), {"__name__": "bench_hook"})
"""


class NodeProcess(ServiceProcess):
    """`python -m services.node`, optionally with a profiler or an experiment loaded first
    (through a sitecustomize module on PYTHONPATH: the service's code is untouched)."""

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        server_options: list[tuple[str, int | str]],
        profile: Profiler | None,
        hook: Path | None = None,
    ) -> None:
        env = {
            # It asks the registry only on a node rebalance (none here); its own
            # registration fails quietly against this address.
            "BERTH_REGISTRY_URL": "127.0.0.1:1",
            "BERTH_LOG_LEVEL": "ERROR",
        }
        code = []
        if profile is not None:
            code.append(_SAMPLER if profile.mode == "sample" else _CPROFILE)
            env["BENCH_PROFILE_TO"] = str(profile.path)
        if hook is not None:
            code.append(_HOOK)
            env["BENCH_SERVER_HOOK"] = str(hook.resolve())
        if code:
            directory = workdir / "bench_site"
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "sitecustomize.py").write_text("\n".join(code))
            env["PYTHONPATH"] = os.pathsep.join(
                [str(directory), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
        super().__init__(
            "services.node", database_url, workdir, env=env, server_options=server_options
        )


# --------------------------------------------------------------------------- driver


async def run_phase(
    phase: str,
    services: list[NodeProcess],
    workers: Workers,
    database: Database,
    args: argparse.Namespace,
    profiler: Profiler | None,
) -> PhaseResult:
    if phase == "create":
        quotas: list[float] = [float("inf")] * len(workers)  # every node once
        seconds_cap = float("inf")
    elif args.count:
        share, extra = divmod(args.count, len(workers))
        quotas = [share + (n < extra) for n in range(len(workers))]
        seconds_cap = float("inf")
    else:
        quotas = [float("inf")] * len(workers)
        seconds_cap = args.duration
    start_at = time.monotonic() + 0.3
    deadline = start_at + seconds_cap
    commits_from = await database.commits() if isinstance(database, PostgresDatabase) else None
    if profiler is not None:
        profiler.start(services[0])
    cpu_from, busy_from = sum(s.cpu_seconds() for s in services), machine_busy_seconds()
    commands = [
        {"do": "phase", "phase": phase, "quota": q, "start_at": start_at, "deadline": deadline}
        for q in quotas
    ]
    for (_, conn), command in zip(workers.procs, commands, strict=True):
        conn.send(command)
    outcomes = await workers.gather(timeout_s=min(seconds_cap, 3600) + args.call_timeout + 60)
    cpu_to, busy_to = sum(s.cpu_seconds() for s in services), machine_busy_seconds()
    end = max(o["last"] for o in outcomes)
    seconds = max(end - start_at, 1e-9)
    commits_to = await database.commits() if isinstance(database, PostgresDatabase) else None
    for service in services:
        service.check_alive()
    ordered = sorted_latencies([o["latencies"] for o in outcomes])
    count = sum(o["count"] for o in outcomes)
    errors: collections.Counter[str] = collections.Counter()
    for o in outcomes:
        errors.update(o["errors"])
    extra: dict[str, Any] = {}
    if commits_from is not None and commits_to is not None:
        # pg_stat counters lag by up to ~0.5 s; good enough for a snapshots-per-commit ratio
        commits = commits_to - commits_from
        extra["db_commits_per_s"] = round(commits / seconds, 1)
        extra["snapshots_per_commit"] = round(count / commits, 1) if commits else None
    if profiler is not None:
        written = await profiler.finish(services[0], phase)
        if written is not None:
            extra["profile"] = str(written)
    return PhaseResult(
        backend=database.name,
        phase=phase,
        transport=args.transport,
        snapshots=count,
        seconds=round(seconds, 2),
        snapshots_per_s=round(count / seconds, 1),
        p50_ms=round(percentile(ordered, 50) * 1000, 2),
        p99_ms=round(percentile(ordered, 99) * 1000, 2),
        errors=sum(errors.values()),
        errors_by_code=dict(errors),
        wrong_answers=sum(o["wrong"] for o in outcomes),
        in_flight=sum(o["in_flight"] for o in outcomes),
        server_cpu_pct=round(100 * (cpu_to - cpu_from) / seconds, 1),
        client_cpu_pct=round(100 * sum(o["cpu_s"] for o in outcomes) / seconds, 1),
        machine_cpu_pct=round(100 * (busy_to - busy_from) / seconds, 1),
        first_error=next((o["first_error"] for o in outcomes if o["first_error"]), ""),
        extra=extra,
    )


async def verify(service: NodeProcess, workers: Workers, backend: str) -> Verification:
    answers = await workers.ask_all([{"do": "verify"}] * len(workers), timeout_s=120)
    problems = [p for a in answers for p in a["problems"]]
    expected: collections.Counter[str] = collections.Counter()
    for answer in answers:
        expected.update(answer["sums"])
    uncertain = expected.pop("uncertain", 0)
    async with aio.insecure_channel(service.target) as channel:
        get_statistics = channel.unary_unary(
            "/berth.v1.NodeService/GetStatistics",
            request_serializer=node_pb2.GetStatisticsRequest.SerializeToString,
            response_deserializer=node_pb2.GetStatisticsResponse.FromString,
        )
        s = await get_statistics(node_pb2.GetStatisticsRequest(), timeout=60)
    stored = {
        "count": s.count,
        "running_vms": s.running_vms,
        "vcpus_used": s.used.vcpus,
        "memory_mb_used": s.used.memory_mb,
        "disk_gb_used": s.used.disk_gb,
        "vcpus": s.total.vcpus,
        "memory_mb": s.total.memory_mb,
        "disk_gb": s.total.disk_gb,
    }
    if uncertain:
        problems.append(f"{uncertain} nodes had a failed call: their stored state is unknown")
    else:
        for name, want in expected.items():
            if stored.get(name) != want:
                problems.append(f"GetStatistics {name} = {stored.get(name)}, expected {want}")
    return Verification(
        backend=backend,
        ok=not problems,
        problems=problems,
        nodes_checked=sum(a["checked"] for a in answers),
        statistics=stored,
        expected=dict(expected),
    )


async def bench_backend(
    database: Database, args: argparse.Namespace, workdir: Path
) -> tuple[list[PhaseResult], Verification | None]:
    await database.create()
    profiler = Profiler(args.profile, args.profile_dir, database.name) if args.profile else None
    # Replicas share the database; the first migrates it, the profiler watches the first.
    services = [
        NodeProcess(
            database.url,
            workdir / f"replica-{n}" if n else workdir,
            args.grpc_server_option,
            profiler if n == 0 else None,
            args.server_hook,
        )
        for n in range(args.replicas)
    ]
    results: list[PhaseResult] = []
    verification: Verification | None = None
    workers: Workers | None = None
    try:
        for service in services:
            service.workdir.mkdir(exist_ok=True)
            service.start()
            log(f"{database.name}: node service on {service.target} (pid {service.pid})")
            await service.wait_serving()
        workers = Workers([s.target for s in services], args.nodes, args)
        await workers.gather(timeout_s=120)  # "ready": channels connected, creates built
        for phase in PHASES:
            if phase == "create":
                what = f"{args.nodes} first snapshots"
            elif args.count:
                what = f"{args.count} snapshots"
            else:
                what = f"{args.duration:g} s"
            log(
                f"{database.name}: {phase}: {what}, {args.concurrency} in flight ({args.transport})"
            )
            result = await run_phase(phase, services, workers, database, args, profiler)
            results.append(result)
            if phase == "create":
                await workers.ask_all([{"do": "prepare"}] * len(workers), timeout_s=300)
            log(
                f"  {result.snapshots_per_s:,.0f} snapshots/s  p50 {result.p50_ms:.1f} ms  "
                f"p99 {result.p99_ms:.1f} ms  {result.seconds:.1f} s  (server cpu "
                f"{result.server_cpu_pct:.0f}%, clients {result.client_cpu_pct:.0f}%, machine "
                f"{result.machine_cpu_pct:.0f}% of {os.cpu_count()} cores, errors "
                f"{result.errors}, wrong answers {result.wrong_answers})"
            )
        verification = await verify(services[0], workers, database.name)
        log(f"{database.name}: verification {'passed' if verification.ok else 'FAILED'}")
    finally:
        if workers is not None:
            workers.close()
        for service in services:
            service.stop(timeout_s=60)
        with contextlib.suppress(Exception):
            await database.drop()
    if profiler is not None:
        for result in results:
            if "profile" in result.extra:
                log(f"\n{database.name} {result.phase}: where the node service's time went")
                log(summarize_profile(Path(result.extra["profile"]), args.profile))
    return results, verification


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(memory_gb, 1),
        "python": platform.python_version(),
        "grpc": grpc.__version__,
        "system": f"{platform.system()} {platform.release()}",
    }


def describe(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), "
        f"{m['memory_gb']:g} GB, {m['system']}, Python {m['python']}, grpcio {m['grpc']}"
    )


def print_report(
    results: list[PhaseResult], verifications: list[Verification], args: argparse.Namespace
) -> None:
    print(describe(machine()))
    replicas = f"{args.replicas} node service processes" if args.replicas > 1 else "1 node service"
    if args.transport == "stream":
        how = (
            f"snapshots in flight over ReportSnapshotStream (transport stream: "
            f"{streams_of(args)} streams, {args.stream_depth} in flight on each)"
        )
    else:
        how = "ReportSnapshot calls in flight (transport unary)"
    print(
        f"{args.nodes} nodes, {replicas}, {args.workers} client processes, {args.concurrency} "
        f"{how}, {args.channels} channels per client process"
    )
    header = (
        f"{'backend':<11} {'phase':<10} {'snapshots':>9} {'seconds':>8} {'snapshots/s':>11} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'srv cpu':>7} {'cli cpu':>7} {'all cpu':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.backend:<11} {r.phase:<10} {r.snapshots:>9} {r.seconds:>8.1f} "
            f"{r.snapshots_per_s:>11,.0f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
            f"{r.errors + r.wrong_answers:>6} {r.server_cpu_pct:>6.0f}% {r.client_cpu_pct:>6.0f}% "
            f"{r.machine_cpu_pct:>6.0f}%"
        )
    for r in results:
        if r.errors_by_code:
            codes = ", ".join(f"{code} {n}" for code, n in sorted(r.errors_by_code.items()))
            print(f"{r.backend} {r.phase}: errors by status code: {codes}")
        if r.wrong_answers:
            print(f"{r.backend} {r.phase}: {r.wrong_answers} answers not as expected")
        if r.first_error:
            print(f"{r.backend} {r.phase}: first problem: {r.first_error}")
        shown = {k: v for k, v in r.extra.items() if k != "profile"}
        if shown:
            print(f"{r.backend} {r.phase}: {shown}")
    after = " on the same stream" if args.transport == "stream" else ""
    for v in verifications:
        if v.ok:
            print(
                f"{v.backend}: stored state verified: GetStatistics matches what was sent "
                f"({v.statistics['count']} nodes, {v.statistics['running_vms']} instances), "
                f"{v.nodes_checked} nodes checked by GetComputeNode, a replayed snapshot was "
                f"refused as stale (ABORTED STALE_SNAPSHOT) and the next one taken{after}"
            )
        else:
            print(f"{v.backend}: VERIFICATION FAILED:")
            for problem in v.problems[:20]:
                print(f"  {problem}")


async def main_async(args: argparse.Namespace) -> int:
    _self_check()
    results: list[PhaseResult] = []
    verifications: list[Verification] = []
    skipped: dict[str, str] = {}
    workdir = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    if args.profile:
        args.profile_dir = Path(args.profile_dir or tempfile.mkdtemp(prefix="berth-profile-"))
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    try:
        for backend in args.backends:
            database = await open_database(backend, args, workdir, "node-bench.sqlite3")
            if isinstance(database, str):  # its server does not answer: say so, go on
                skipped[backend] = database
                if args.json:
                    log(database)
                else:
                    print(database, flush=True)
                continue
            phases, verification = await bench_backend(database, args, workdir)
            results.extend(phases)
            if verification is not None:
                verifications.append(verification)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.profile:
        log(f"\nprofiles kept in {args.profile_dir}")
    if args.json:
        print(
            json.dumps(
                {
                    "machine": machine(),
                    "settings": {
                        "nodes": args.nodes,
                        "transport": args.transport,
                        "count": args.count or None,
                        "duration_s": None if args.count else args.duration,
                        "replicas": args.replicas,
                        "workers": args.workers,
                        "concurrency": args.concurrency,
                        "streams": streams_of(args) or None,
                        "stream_depth": args.stream_depth if args.transport == "stream" else None,
                        "channels_per_worker": args.channels,
                    },
                    "results": [asdict(r) for r in results],
                    "verification": [asdict(v) for v in verifications],
                    "skipped": skipped,
                },
                indent=2,
            )
        )
    else:
        print()
        print_report(results, verifications, args)
    broken = any(r.errors or r.wrong_answers for r in results) or not all(
        v.ok for v in verifications
    )
    return 1 if broken or not results else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Snapshots per second one node service process accepts (closed-loop load)."
    )
    p.add_argument("--nodes", type=int, default=10_000, help="simulated nodes (10000)")
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds the changed and the unchanged phase run each (10)",
    )
    p.add_argument(
        "--count",
        type=int,
        default=0,
        help="instead of --duration: snapshots sent in each of the changed and unchanged phases",
    )
    p.add_argument(
        "--backends", default="sqlite,postgresql", help="comma list: sqlite,postgresql,mariadb"
    )
    p.add_argument("--workers", type=int, default=2, help="client worker processes (2)")
    p.add_argument(
        "--concurrency",
        type=int,
        help="snapshots in flight over all workers (256; with --streams: streams x depth x workers)",
    )
    p.add_argument("--channels", type=int, default=4, help="channels per worker process (4)")
    p.add_argument(
        "--transport",
        choices=["stream", "unary"],
        default="stream",
        help="stream: long-lived ReportSnapshotStreams, as agents report (default); "
        "unary: one ReportSnapshot call per snapshot",
    )
    p.add_argument(
        "--streams",
        type=int,
        help="stream transport: streams per worker process (default: as many as make "
        "--concurrency with --stream-depth in flight on each)",
    )
    p.add_argument(
        "--stream-depth",
        type=int,
        help="stream transport: snapshots in flight on each stream, answered in order (1)",
    )
    p.add_argument(
        "--call-timeout",
        type=float,
        default=CALL_TIMEOUT_S,
        help="deadline of each snapshot's answer in seconds (60; agents use 10)",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="node service processes on the same database, worker n uses replica n %% R (1)",
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
        "--profile",
        choices=("sample", "cprofile"),
        help="profile the node service per phase (sample: a stack sampler; cprofile: cProfile)",
    )
    p.add_argument("--profile-dir", help="where to keep the profiles (default: a temp dir)")
    p.add_argument(
        "--grpc-server-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="experiment: start the node service with this extra gRPC server option",
    )
    p.add_argument(
        "--server-hook",
        type=Path,
        metavar="FILE",
        help="experiment: a Python file the node service runs first (e.g. to try a change)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    options = []
    for item in args.grpc_server_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--grpc-server-option {item!r}: use KEY=VALUE")
        options.append((key, int(value) if value.lstrip("-").isdigit() else value))
    args.grpc_server_option = options
    if args.transport == "unary" and (args.streams is not None or args.stream_depth is not None):
        p.error("--streams and --stream-depth are for --transport stream")
    if any(n is not None and n < 1 for n in (args.streams, args.stream_depth)):
        p.error("--streams and --stream-depth must be >= 1")
    args.stream_depth = args.stream_depth or 1
    if args.streams is not None:
        in_flight = args.streams * args.stream_depth * args.workers
        if args.concurrency not in (None, in_flight):
            p.error(
                f"--concurrency {args.concurrency} and --streams x --stream-depth x "
                f"--workers = {in_flight} disagree: give one of them"
            )
        args.concurrency = in_flight
    if args.concurrency is None:
        args.concurrency = 256
    if min(args.nodes, args.workers, args.concurrency, args.channels, args.replicas) < 1:
        p.error("--nodes, --workers, --concurrency, --channels and --replicas must be >= 1")
    if args.count < 0 or (not args.count and args.duration <= 0):
        p.error("--count must be >= 0, and --duration > 0 unless --count is given")
    if args.call_timeout <= 0:
        p.error("--call-timeout must be > 0")
    if args.replicas > args.workers:
        p.error("--replicas needs at least as many --workers (each worker uses one replica)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
