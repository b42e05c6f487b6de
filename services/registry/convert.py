"""Rows to protos. The servicers and the event log speak protos; the store speaks rows."""

from __future__ import annotations

from datetime import datetime

from berth.v1 import host_pb2, registry_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.settings import COMPUTE_BINARY
from services.registry.store.models import Aggregate, InstanceMove, Service

# Nova shows non-compute services in this zone (its internal_service_availability_zone).
INTERNAL_ZONE = "internal"


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def service_zone(row: Service, zones: dict[str, str], default_zone: str) -> str:
    if row.binary != COMPUTE_BINARY:
        return INTERNAL_ZONE
    return zones.get(row.host, default_zone)


def service(row: Service, *, up: bool, zone: str) -> registry_pb2.Service:
    return registry_pb2.Service(
        uuid=row.uuid,
        host=row.host,
        binary=row.binary,
        topic=row.topic,
        report_count=row.report_count,
        disabled=row.disabled,
        disabled_reason=row.disabled_reason or "",
        forced_down=row.forced_down,
        last_seen_up=timestamp(row.last_seen_up),
        version=row.version,
        endpoint=row.endpoint,
        up=up,
        availability_zone=zone,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        deleted_at=timestamp(row.deleted_at),
        build_version=row.build_version,
        id=row.id,
    )


def aggregate(row: Aggregate, hosts: list[str], metadata: dict[str, str]) -> registry_pb2.Aggregate:
    return registry_pb2.Aggregate(
        uuid=row.uuid,
        name=row.name,
        availability_zone=metadata.get("availability_zone", ""),
        hosts=hosts,
        metadata=metadata,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        id=row.id,
    )


def migration(row: InstanceMove) -> host_pb2.Migration:
    return host_pb2.Migration(
        instance_uuid=row.instance_uuid,
        source_host=row.host,
        dest_host=row.destination_host,
        dest_node=row.destination_nodename,
        state=row.state.lower(),
        reason=row.reason,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )
