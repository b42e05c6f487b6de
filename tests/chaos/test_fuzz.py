"""Protocol fuzz of every RPC of every Berth service, against real processes: malformed
bytes and well-formed messages of random field values. Every process keeps serving, no
answer is INTERNAL or UNKNOWN, no log has a traceback, and only answered calls wrote."""

from __future__ import annotations

import asyncio
import random
import string
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from berth.v1 import (
    compute_pb2,
    host_pb2,
    node_pb2,
    registry_pb2,
    scheduler_pb2,
)
from google.protobuf import descriptor as pbd
from google.protobuf import message_factory, text_format
from google.protobuf.message import DecodeError, Message
from grpc import aio

from tests.e2e.fleet import Fleet

pytestmark = pytest.mark.chaos

SEED = 20240611
PER_METHOD = 54  # a third each malformed, random, plausible: 40 methods, ~2,100 calls
CONCURRENCY = 12
UNARY_DEADLINE_S = 10.0  # a refusal is quick; reaching this is a hang
STREAM_DEADLINE_S = 0.5  # watches and host updates run on: read what comes, then leave
AGENT = "fuzz-agent"

SERVICES = {  # gRPC service -> the process serving it
    "berth.v1.RegistryService": "registry",
    "berth.v1.HostService": "registry",
    "berth.v1.NodeService": "node",
    "berth.v1.SchedulerService": "scheduler-1",  # where the registry sends maintenance moves
    "berth.v1.ComputeAgentService": AGENT,
}
FILES = [registry_pb2, host_pb2, node_pb2, scheduler_pb2, compute_pb2]

# Values that break parsers and validators, and values that name real rows (so some
# random requests reach past validation).
STRINGS = [
    "",
    " ",
    "a",
    "x" * 255,
    "x" * 256,
    "x" * 70_000,
    "ħøšт-ünïcødé",
    "😀" * 20,
    "\x00",
    "a\nb",
    "\u202e",
    "../../etc/passwd",
    "%s%n%x",
    "' OR 1=1 --",
    "-1",
    "9" * 40,
    "eyJ9",
    "00000000-0000-0000-0000-000000000000",
    "berth-compute",
    "berth-scheduler",
    "registry",
    AGENT,
    "nova",
    "CUSTOM_GPU",
    "m1.small",
]
INTS = {
    "int32": [0, 1, -1, 7, 2**31 - 1, -(2**31)],
    "int64": [0, 1, -1, 1024, 2**63 - 1, -(2**63)],
    "uint32": [0, 1, 2**32 - 1],
    "uint64": [0, 1, 2**64 - 1],
}
FLOATS = [0.0, -0.0, 1.0, -1.5, 1e308, -1e308, float("inf"), float("-inf"), float("nan")]

F = pbd.FieldDescriptor
_INT_KIND = {
    F.TYPE_INT32: "int32",
    F.TYPE_SINT32: "int32",
    F.TYPE_SFIXED32: "int32",
    F.TYPE_INT64: "int64",
    F.TYPE_SINT64: "int64",
    F.TYPE_SFIXED64: "int64",
    F.TYPE_UINT32: "uint32",
    F.TYPE_FIXED32: "uint32",
    F.TYPE_UINT64: "uint64",
    F.TYPE_FIXED64: "uint64",
}


# -- generating requests ------------------------------------------------------------------


def _string(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(STRINGS)
    if roll < 0.8:
        return str(uuidlib.UUID(int=rng.getrandbits(128), version=4))
    return "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 40)))


def _scalar(field: pbd.FieldDescriptor, rng: random.Random) -> Any:
    kind = field.type
    if kind == F.TYPE_STRING:
        return _string(rng)
    if kind == F.TYPE_BYTES:
        return rng.randbytes(rng.choice([0, 1, 16, 300]))
    if kind == F.TYPE_BOOL:
        return rng.random() < 0.5
    if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return rng.choice(FLOATS)
    if kind == F.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return rng.choice([*known, *known, -1, 99, 2**31 - 1])  # unknown numbers too
    values = INTS[_INT_KIND[kind]]
    if rng.random() < 0.7:
        return rng.choice(values)
    small = rng.randrange(-5, 5000)
    return abs(small) if _INT_KIND[kind].startswith("u") else small


class Values:
    """Random values of each field's type, edge cases first; most fields set."""

    skip = 0.35  # chance a field stays unset
    counts = (0, 1, 2, 3, 40)  # repeated fields and maps: how many items

    def scalar(self, field: pbd.FieldDescriptor, rng: random.Random) -> Any:
        return _scalar(field, rng)

    def skips(self, field: pbd.FieldDescriptor, rng: random.Random) -> bool:
        return rng.random() < self.skip


class Plausible(Values):
    """Values a real caller might send, picked by the field's name, and a few fields
    random: requests that pass validation more often and reach the stores, the claims and
    the drivers. `uuids` names existing rows."""

    counts = (0, 1, 1, 2, 3)
    HOSTS = (AGENT, "fuzz-1", "fuzz-2")
    BY_NAME: dict[str, tuple[Any, ...]] = {
        "binary": ("berth-compute", "berth-scheduler", "berth-node"),
        "name": ("agg-1", "agg-2", "m1.small", "m1.tiny"),
        "availability_zone": ("nova", "nova", "", "az-1"),
        "host_ip": ("10.0.0.1", "::1"),
        "page_token": ("",),
        "page_size": (0, 1, 3),
        "project_id": ("p1", "p2"),
        "user_id": ("u1",),
        "hypervisor_type": ("fake", "QEMU"),
        "group": ("", "g1"),
        "disabled_reason": ("", "fuzz"),
        "endpoint": ("127.0.0.1:1",),
        "topic": ("compute",),
        "num_instances": (1, 1, 2),
        "vcpus": (1, 2, 8),
        "memory_mb": (512, 2048, 16384),
        "root_gb": (1, 20),
        "disk_gb": (20, 100),
        "ephemeral_gb": (0,),
        "swap_mb": (0,),
    }

    def __init__(self, uuids: list[str]) -> None:
        self.uuids = uuids
        self.off = 0.0

    def request(self, rng: random.Random) -> Plausible:
        """For the next request: how many of its fields get a random value instead."""
        self.off = rng.choice([0.0, 0.02, 0.05, 0.1])
        return self

    def skips(self, field: pbd.FieldDescriptor, rng: random.Random) -> bool:
        # Messages nearly always set: a missing one is the first thing validation finds.
        return rng.random() < (0.02 if field.type == F.TYPE_MESSAGE else 0.15)

    def scalar(self, field: pbd.FieldDescriptor, rng: random.Random) -> Any:
        if rng.random() < self.off:
            return _scalar(field, rng)
        name, kind = field.name, field.type
        if kind == F.TYPE_STRING:
            if name in self.BY_NAME:
                return rng.choice(self.BY_NAME[name])
            if "uuid" in name or name.endswith(("_id", "_ids", "_host")) or name == "id":
                pool = self.uuids if rng.random() < 0.6 else []
                return rng.choice(pool) if pool else str(uuidlib.UUID(int=rng.getrandbits(128)))
            if "host" in name or name in ("nodename", "node", "same_aggregate_as_host"):
                return rng.choice(self.HOSTS)
            return rng.choice(["fuzz", "key", "1", "true", "ssd"])
        if kind == F.TYPE_ENUM:
            known = [v.number for v in field.enum_type.values if v.number]
            return rng.choice(known) if known else 0
        if kind == F.TYPE_BOOL:
            return rng.random() < 0.5
        if kind in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return rng.choice([0.5, 1.0, 1.5, 16.0])
        if kind == F.TYPE_BYTES:
            return b""
        if name in self.BY_NAME:
            return rng.choice(self.BY_NAME[name])
        if name == "seconds":
            return 1_700_000_000 + rng.randrange(10**8)
        if name == "nanos":
            return rng.randrange(10**9)
        return rng.choice([1, 2, 4, 8, 512, 2048, 16384])


RANDOM = Values()


def fill(message: Message, rng: random.Random, values: Values = RANDOM, depth: int = 0) -> Message:
    """Set a random subset of `message`'s fields to values of their types."""
    for field in message.DESCRIPTOR.fields:
        if values.skips(field, rng):
            continue
        is_message = field.type == F.TYPE_MESSAGE
        if is_message and depth >= 4:
            continue
        if is_message and field.message_type.GetOptions().map_entry:
            _fill_map(getattr(message, field.name), field.message_type, rng, values, depth)
        elif field.is_repeated:
            target = getattr(message, field.name)
            for _ in range(rng.choice(values.counts)):
                if is_message:
                    fill(target.add(), rng, values, depth + 1)
                else:
                    target.append(values.scalar(field, rng))
        elif is_message:
            fill(getattr(message, field.name), rng, values, depth + 1)
            getattr(message, field.name).SetInParent()
        else:
            setattr(message, field.name, values.scalar(field, rng))
    return message


def _fill_map(
    target: Any, entry: pbd.Descriptor, rng: random.Random, values: Values, depth: int
) -> None:
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    for _ in range(rng.choice(values.counts)):
        key = values.scalar(key_field, rng)
        if value_field.type == F.TYPE_MESSAGE:
            fill(target[key], rng, values, depth + 1)
        else:
            target[key] = values.scalar(value_field, rng)


def malformed(request_class: type[Message], rng: random.Random) -> bytes:
    """Random bytes, or a random message cut short or with bits flipped."""
    roll = rng.random()
    if roll < 0.3:
        return rng.randbytes(rng.randrange(1, 80))
    body = bytearray(fill(request_class(), rng).SerializeToString() or b"\x0a\x03abc")
    if roll < 0.65:
        return bytes(body[: rng.randrange(0, len(body))])
    for _ in range(rng.randrange(1, 4)):
        at = rng.randrange(len(body))
        body[at] ^= 1 << rng.randrange(8)
    return bytes(body)


def destructive(method: pbd.MethodDescriptor, request_class: type[Message], body: bytes) -> bool:
    """Power actions that would stop or reboot the fuzzed agent: never sent. (A refused
    power action, unknown action or another host, is sent.)"""
    if method.name not in ("HostAction", "HostPowerAction"):
        return False
    try:
        request = request_class.FromString(body)
    except DecodeError:
        return False
    if request.action not in host_pb2.PowerAction.values() or request.action == 0:
        return False
    return method.name == "HostPowerAction" or request.host == AGENT


@dataclass
class Outcome:
    method: str
    streams: bool  # server streaming: ending at its deadline is how the fuzz leaves it
    kind: str  # malformed | random
    body: bytes
    code: grpc.StatusCode
    details: str

    def describe(self, request_class: type[Message]) -> str:
        try:
            shown = text_format.MessageToString(
                request_class.FromString(self.body), as_one_line=True
            )
        except DecodeError:
            shown = self.body.hex()
        return f"{self.method} [{self.kind}] {self.code.name}: {self.details!r} <- {shown[:300]}"


def plan(
    rng: random.Random, plausible: Plausible
) -> Iterator[tuple[pbd.MethodDescriptor, type[Message], str, bytes]]:
    for file in FILES:
        for service in file.DESCRIPTOR.services_by_name.values():
            assert service.full_name in SERVICES, f"{service.full_name} has no process here"
            for method in service.methods:
                request_class = message_factory.GetMessageClass(method.input_type)
                for i in range(PER_METHOD):
                    if i % 3 == 0:
                        kind, body = "malformed", malformed(request_class, rng)
                    elif i % 3 == 1:
                        kind, body = "random", fill(request_class(), rng).SerializeToString()
                    else:
                        request = fill(request_class(), rng, plausible.request(rng))
                        kind, body = "plausible", request.SerializeToString()
                    if not destructive(method, request_class, body):
                        yield method, request_class, kind, body


# -- sending ------------------------------------------------------------------------------


def _identity(raw: bytes) -> bytes:
    return raw


async def _client_stream(open_call: Any, body: bytes) -> list[bytes]:
    """Each message written only once the answer to the last is read: a client still
    writing when the server refuses the stream can lose the status and read "Internal
    error from Core" instead (grpc's client, not the server's answer)."""
    call = open_call(timeout=UNARY_DEADLINE_S)
    responses = []
    for _ in range(2):
        await call.write(body)
        response = await call.read()  # AioRpcError once refused
        if response is aio.EOF:
            return responses
        responses.append(response)
    await call.done_writing()
    while (response := await call.read()) is not aio.EOF:
        responses.append(response)
    return responses


async def _call(channel: aio.Channel, method: pbd.MethodDescriptor, body: bytes) -> list[bytes]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.client_streaming:  # HeartbeatStream: the message, twice, then the end
        return await _client_stream(channel.stream_stream(path, _identity, _identity), body)
    if method.server_streaming:
        call = channel.unary_stream(path, _identity, _identity)
        responses: list[bytes] = []
        try:
            async for response in call(body, timeout=STREAM_DEADLINE_S):
                responses.append(response)
        except aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.DEADLINE_EXCEEDED or not responses:
                raise
        return responses
    return [await channel.unary_unary(path, _identity, _identity)(body, timeout=UNARY_DEADLINE_S)]


async def fuzz(fleet: Fleet, rng: random.Random, plausible: Plausible) -> list[Outcome]:
    channels = {
        name: aio.insecure_channel(fleet.addresses[name]) for name in set(SERVICES.values())
    }
    gate = asyncio.Semaphore(CONCURRENCY)
    outcomes: list[Outcome] = []

    async def send(method, request_class, kind, body) -> None:
        channel = channels[SERVICES[method.containing_service.full_name]]
        async with gate:
            try:
                responses = await _call(channel, method, body)
            except aio.AioRpcError as exc:
                outcomes.append(
                    Outcome(
                        method.full_name,
                        method.server_streaming,
                        kind,
                        body,
                        exc.code(),
                        exc.details() or "",
                    )
                )
                return
        response_class = message_factory.GetMessageClass(method.output_type)
        for response in responses:
            response_class.FromString(response)  # what a server sends parses
        outcomes.append(
            Outcome(method.full_name, method.server_streaming, kind, body, grpc.StatusCode.OK, "")
        )

    calls = list(plan(rng, plausible))
    rng.shuffle(calls)  # every service's calls interleaved with the others'
    try:
        await asyncio.gather(*(send(*call) for call in calls))
    finally:
        for channel in channels.values():
            await channel.close()
    return outcomes


# -- what the fuzz may have changed -------------------------------------------------------


def _pages(call: Callable[..., Any], request_class: type[Message], field: str) -> list[Any]:
    rows, token = [], ""
    while True:
        page = call(request_class(page_size=500, page_token=token), timeout=10)
        rows.extend(getattr(page, field))
        token = page.next_page_token
        if not token:
            return rows


def rows(fleet: Fleet) -> dict[str, dict[str, tuple]]:
    """Each kind of row, by its identity, with the facts a refused request must not change
    (not those the fleet's own reports and heartbeats change)."""
    with fleet.stubs() as (registry, nodes):
        services = _pages(registry.ListServices, registry_pb2.ListServicesRequest, "services")
        aggregates = _pages(
            registry.ListAggregates, registry_pb2.ListAggregatesRequest, "aggregates"
        )
        computes = _pages(nodes.ListComputeNodes, node_pb2.ListComputeNodesRequest, "nodes")
        instances = _pages(nodes.ListNodeInstances, node_pb2.ListNodeInstancesRequest, "instances")
    return {
        "service": {
            s.uuid: (s.host, s.binary, s.disabled, s.disabled_reason, s.forced_down)
            for s in services
        },
        "aggregate": {
            a.uuid: (
                a.name,
                a.availability_zone,
                tuple(sorted(a.hosts)),
                tuple(sorted(a.metadata.items())),
            )
            for a in aggregates
        },
        "node": {n.uuid: (n.host, n.nodename) for n in computes},
        "instance": {i.uuid: (i.host, i.nodename) for i in instances},
    }


def _mentions(message: Message) -> Iterator[str]:
    """Every string a message carries, at any depth (map keys too)."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                yield str(key)
                yield from _mentions(item) if isinstance(item, Message) else [str(item)]
        elif field.type == F.TYPE_MESSAGE:
            for item in values:
                yield from _mentions(item)
        elif field.type == F.TYPE_STRING:
            yield from values


def unexplained_changes(
    before: dict[str, dict[str, tuple]],
    after: dict[str, dict[str, tuple]],
    answered: set[str],
) -> list[str]:
    """Rows added, removed or changed that no request answered OK named (by uuid or by any
    of their names): a refused request must not write."""
    changes = []
    for kind in before:
        for uuid in before[kind].keys() | after[kind].keys():
            old, new = before[kind].get(uuid), after[kind].get(uuid)
            if old == new:
                continue
            names = {uuid, *(v for row in (old, new) if row for v in row if isinstance(v, str))}
            if not names & answered:
                changes.append(f"{kind} {uuid}: {old} -> {new}")
    return changes


# -- the test -----------------------------------------------------------------------------


def test_every_rpc_survives_malformed_and_random_requests(chaos_fleet):
    fleet = chaos_fleet
    fleet.scheduler("scheduler-1")
    fleet.agent(AGENT, "fake")
    fleet.ready(nodes=1)
    before = rows(fleet)

    rng = random.Random(SEED)
    uuids = sorted(uuid for kind in before.values() for uuid in kind)
    outcomes = asyncio.run(fuzz(fleet, rng, Plausible(uuids)))

    request_classes = {
        method.full_name: message_factory.GetMessageClass(method.input_type)
        for file in FILES
        for service in file.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    codes = Counter(outcome.code.name for outcome in outcomes)
    print(f"{len(outcomes)} calls: {dict(codes.most_common())}")
    assert len(outcomes) > 2000 and codes["OK"] > 0 and codes["INVALID_ARGUMENT"] > 0

    offenders = [
        outcome.describe(request_classes[outcome.method])
        for outcome in outcomes
        if outcome.code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
        or (outcome.code is grpc.StatusCode.DEADLINE_EXCEEDED and not outcome.streams)
    ]
    assert not offenders, f"{len(offenders)} bad answers:\n" + "\n".join(offenders[:40])

    for name, proc in fleet.procs.items():
        assert proc.poll() is None, f"{name} died:\n{fleet.tail(name)}"
    fleet.wait_serving()
    answered = {
        mention
        for outcome in outcomes
        if outcome.code is grpc.StatusCode.OK
        for mention in _mentions(request_classes[outcome.method].FromString(outcome.body))
    }
    changes = unexplained_changes(before, rows(fleet), answered)
    assert not changes, "rows changed by refused requests:\n" + "\n".join(changes[:40])
    # Still answering (OK requests may have disabled or deleted the agent's rows, so not
    # necessarily placing on its node).
    with grpc.insecure_channel(fleet.schedulers["scheduler-1"]) as channel:
        channel.unary_unary("/berth.v1.SchedulerService/ListHostStates")(b"", timeout=10)
    with grpc.insecure_channel(fleet.agents[AGENT]) as channel:
        channel.unary_unary("/berth.v1.ComputeAgentService/ListInstances")(b"", timeout=10)
    for name in fleet.procs:
        log = fleet.log(name)
        assert "Traceback" not in log and " ERROR " not in log, fleet.tail(name, 80)
        # The servers' own account (the access log) agrees with what the client read.
        assert "code=INTERNAL" not in log and "code=UNKNOWN" not in log, fleet.tail(name, 80)
