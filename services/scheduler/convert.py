"""Proto <-> domain for the scheduler: ComputeNode -> HostState -> scheduler HostState."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable

from berth.v1 import common_pb2, node_pb2, registry_pb2, scheduler_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.scheduler.hoststate import HostFacts, HostState, Resources, amounts
from services.scheduler.store.placement import PendingClaim, claimed_by


def resources(message: common_pb2.Resources) -> Resources:
    return amounts(message.vcpus, message.memory_mb, message.disk_gb)


def resources_proto(value: Resources) -> common_pb2.Resources:
    return common_pb2.Resources(vcpus=value.vcpus, memory_mb=value.memory_mb, disk_gb=value.disk_gb)


def host_state(node: node_pb2.ComputeNode) -> HostState:
    """The node part of a HostState, from the node service's report."""
    return HostState(
        node_uuid=node.uuid,
        host=node.host,
        nodename=node.nodename,
        generation=node.generation,
        hypervisor_type=node.hypervisor_type,
        resource_class=node.resource_class,
        whole_machine=node.whole_machine,
        total=resources(node.total),
        used=resources(node.used),
        cpu_allocation_ratio=node.cpu_allocation_ratio or 1.0,
        ram_allocation_ratio=node.ram_allocation_ratio or 1.0,
        disk_allocation_ratio=node.disk_allocation_ratio or 1.0,
        reserved_host_memory_mb=node.reserved_host_memory_mb,
        reserved_host_disk_mb=node.reserved_host_disk_mb,
        reserved_host_cpus=node.reserved_host_cpus,
        num_instances=node.running_vms,
        io_ops=node.io_ops,
        instance_uuids=frozenset(node.instance_uuids),
    )


def host_facts(
    host: str,
    service: registry_pb2.Service | None,
    aggregates: Iterable[registry_pb2.Aggregate],
) -> HostFacts:
    """What filters need from the registry about one host."""
    names: list[str] = []
    metadata: dict[str, set[str]] = {}
    for aggregate in aggregates:
        names.append(aggregate.name)
        for key, value in aggregate.metadata.items():
            metadata.setdefault(key, set()).add(value)
    return HostFacts(
        host=host,
        service_up=bool(service and service.up),
        service_disabled=bool(service and service.disabled),
        disabled_reason=service.disabled_reason if service else "",
        availability_zone=service.availability_zone if service else "",
        aggregates=tuple(sorted(names)),
        aggregate_metadata={k: frozenset(v) for k, v in metadata.items()},
    )


def facts_json(facts: HostFacts) -> str:
    metadata = {k: sorted(v) for k, v in facts.aggregate_metadata.items()}
    if metadata:
        return _facts_json(facts, metadata)
    # Most hosts of a large fleet read alike (up, enabled, one zone): encoded once each way.
    return _plain_facts_json(
        facts.service_up,
        facts.service_disabled,
        facts.disabled_reason,
        facts.availability_zone,
        facts.aggregates,
    )


@functools.lru_cache(maxsize=1024)
def _plain_facts_json(
    up: bool, disabled: bool, reason: str, zone: str, aggregates: tuple[str, ...]
) -> str:
    return _facts_json(HostFacts("", up, disabled, reason, zone, aggregates), {})


def _facts_json(facts: HostFacts, metadata: dict[str, list[str]]) -> str:
    return json.dumps(
        {
            "up": facts.service_up,
            "disabled": facts.service_disabled,
            "reason": facts.disabled_reason,
            "zone": facts.availability_zone,
            "aggregates": list(facts.aggregates),
            "metadata": metadata,
        },
        separators=(",", ":"),
    )


def facts_from_json(host: str, text: str | bytes | None) -> HostFacts:
    if not text:
        return HostFacts(host=host)
    doc = json.loads(text)
    return HostFacts(
        host=host,
        service_up=doc["up"],
        service_disabled=doc["disabled"],
        disabled_reason=doc["reason"],
        availability_zone=doc["zone"],
        aggregates=tuple(doc["aggregates"]),
        aggregate_metadata={k: frozenset(v) for k, v in doc["metadata"].items()},
    )


def node_state_bytes(state: HostState) -> bytes:
    """What Redis keeps of a node besides the numbers its scripts read: the node's part of
    a HostState (its host's facts and its claims are kept apart and merged when read)."""
    return scheduler_pb2.HostState(
        node_uuid=state.node_uuid,
        host=state.host,
        nodename=state.nodename,
        total=resources_proto(state.total),
        used=resources_proto(state.used),
        cpu_allocation_ratio=state.cpu_allocation_ratio,
        ram_allocation_ratio=state.ram_allocation_ratio,
        disk_allocation_ratio=state.disk_allocation_ratio,
        hypervisor_type=state.hypervisor_type,
        resource_class=state.resource_class,
        whole_machine=state.whole_machine,
        num_instances=state.num_instances,
        io_ops=state.io_ops,
        generation=state.generation,
        reserved_host_memory_mb=state.reserved_host_memory_mb,
        reserved_host_disk_mb=state.reserved_host_disk_mb,
        reserved_host_cpus=state.reserved_host_cpus,
    ).SerializeToString()


def merge_stored(
    stored: bytes, facts_text: str, claims: Iterable[PendingClaim]
) -> scheduler_pb2.HostState:
    """A HostState as Redis holds it: the node's stored state, its host's facts (JSON),
    its pending claims."""
    message = scheduler_pb2.HostState.FromString(stored)
    claims = list(claims)
    message.pending_claims.extend(claim_proto(c, message.host, message.nodename) for c in claims)
    message.claimed.CopyFrom(resources_proto(claimed_by(claims)))
    facts = facts_from_json(message.host, facts_text)
    message.service_up = facts.service_up
    message.service_disabled = facts.service_disabled
    message.availability_zone = facts.availability_zone
    message.aggregates.extend(facts.aggregates)
    for key, values in facts.aggregate_metadata.items():
        message.aggregate_metadata[key] = ",".join(sorted(values))
    return message


def claim_proto(claim: PendingClaim, host: str, nodename: str) -> scheduler_pb2.Claim:
    expires = Timestamp()
    expires.FromMilliseconds(claim.expires_ms)
    return scheduler_pb2.Claim(
        claim_id=claim.claim_id,
        instance_uuid=claim.instance_uuid,
        host=host,
        nodename=nodename,
        node_uuid=claim.node_uuid,
        resources=resources_proto(claim.resources),
        expires_at=expires,
    )


def alternate_proto(state: HostState, instance_uuid: str, wanted: Resources) -> scheduler_pb2.Claim:
    """An alternate destination: a Claim message without a claim id or expiry."""
    return scheduler_pb2.Claim(
        instance_uuid=instance_uuid,
        host=state.host,
        nodename=state.nodename,
        node_uuid=state.node_uuid,
        resources=resources_proto(wanted),
    )
