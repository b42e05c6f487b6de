"""The agent's durable memory: its host name, node uuids, instances and whether the host is
in maintenance, in one JSON file.

The file is rewritten whole and atomically (temp file, fsync, rename) after every change, so
a crash leaves either the old state or the new one. A lock file keeps a second agent off
the same data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import json
import logging
import os
import uuid as uuidlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from berth.client.errors import InvalidArgument
from berth.client.flavors import requested_resource_class
from berth.v1 import common_pb2, node_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.server import StartupError

log = logging.getLogger(__name__)

STATE_FILE = "compute-state.json"
LOCK_FILE = "compute-state.lock"
FORMAT = 1


class InstanceState(enum.StrEnum):
    """node_pb2.InstanceState without its prefix, as the state file spells it."""

    BUILDING = "BUILDING"
    ACTIVE = "ACTIVE"
    STOPPED = "STOPPED"
    DELETING = "DELETING"
    ERROR = "ERROR"
    MIGRATING = "MIGRATING"

    @property
    def proto(self) -> node_pb2.InstanceState.ValueType:
        return node_pb2.InstanceState.Value(f"INSTANCE_STATE_{self.value}")


@dataclass(frozen=True)
class Resources:
    """vCPUs, memory in MiB, disk in GiB."""

    vcpus: int = 0
    memory_mb: int = 0
    disk_gb: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.vcpus + other.vcpus,
            self.memory_mb + other.memory_mb,
            self.disk_gb + other.disk_gb,
        )

    def to_proto(self) -> common_pb2.Resources:
        return common_pb2.Resources(
            vcpus=self.vcpus, memory_mb=self.memory_mb, disk_gb=self.disk_gb
        )

    @classmethod
    def from_proto(cls, message: common_pb2.Resources) -> Resources:
        return cls(message.vcpus, message.memory_mb, message.disk_gb)


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as this agent keeps it."""

    uuid: str
    project_id: str
    user_id: str
    resources: Resources
    state: InstanceState
    claim_id: str
    nodename: str
    # The server group it was placed in ('' for none) and the group's policy.
    server_group: str = ""
    group_policy: common_pb2.GroupPolicy.ValueType = common_pb2.GROUP_POLICY_UNSPECIFIED
    # The extra specs of the flavor it was built from, sorted by key (a tuple, so that the
    # record stays hashable): its resource class, and what a maintenance move asks with.
    flavor_extra_specs: tuple[tuple[str, str], ...] = ()
    # The name its user gave it and its flavor's name ('' when none was given).
    name: str = ""
    flavor_name: str = ""
    # When this agent accepted the build (UTC); None in state files of older releases.
    created_at: datetime | None = None

    @property
    def resource_class(self) -> str:
        """The custom resource class its flavor asks for ('' for none): checked when the
        instance was built (or its record read), so it parses."""
        return requested_resource_class(dict(self.flavor_extra_specs))

    def to_proto(self, host: str, node_uuid: str) -> node_pb2.Instance:
        return node_pb2.Instance(
            uuid=self.uuid,
            project_id=self.project_id,
            user_id=self.user_id,
            resources=self.resources.to_proto(),
            state=self.state.proto,
            claim_id=self.claim_id,
            node_uuid=node_uuid,
            host=host,
            nodename=self.nodename,
            server_group=self.server_group,
            group_policy=self.group_policy,
            flavor_extra_specs=dict(self.flavor_extra_specs),
            name=self.name,
            flavor_name=self.flavor_name,
            created_at=_timestamp(self.created_at),
        )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["group_policy"] = common_pb2.GroupPolicy.Name(self.group_policy)
        doc["flavor_extra_specs"] = dict(self.flavor_extra_specs)
        doc["created_at"] = self.created_at.isoformat() if self.created_at else None
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> InstanceRecord:
        """Strict: a wrong type or a missing key raises, and the file counts as corrupt."""
        resources = doc["resources"]
        return cls(
            uuid=str(uuidlib.UUID(doc["uuid"])),
            project_id=_text(doc["project_id"]),
            user_id=_text(doc["user_id"]),
            resources=Resources(
                _count(resources["vcpus"]),
                _count(resources["memory_mb"]),
                _count(resources["disk_gb"]),
            ),
            state=InstanceState(doc["state"]),
            claim_id=_text(doc["claim_id"]),
            nodename=_text(doc["nodename"]),
            # Absent from state files written before groups were recorded.
            server_group=_text(doc.get("server_group", "")),
            group_policy=common_pb2.GroupPolicy.Value(
                doc.get("group_policy", "GROUP_POLICY_UNSPECIFIED")
            ),
            # Absent from state files written before instances kept their flavor's specs.
            flavor_extra_specs=extra_specs(_specs(doc.get("flavor_extra_specs", {}))),
            # Absent from state files written before instances kept their names.
            name=_text(doc.get("name", "")),
            flavor_name=_text(doc.get("flavor_name", "")),
            # Absent from state files written before instances kept their creation time.
            created_at=_aware(doc["created_at"]) if doc.get("created_at") else None,
        )


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def extra_specs(specs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A flavor's extra specs as InstanceRecord keeps them; InvalidArgument if the resource
    class they ask for is malformed."""
    requested_resource_class(specs, "instance.flavor_extra_specs")
    return tuple(sorted(specs.items()))


def _specs(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise TypeError(f"expected extra specs, got {value!r}")
    return {_text(key): _text(item) for key, item in value.items()}


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r}")
    return value


def _aware(value: object) -> datetime:
    """An ISO 8601 time with its zone (the file writes UTC)."""
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:
        raise ValueError(f"expected a time with a zone, got {value!r}")
    return moment


def _count(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a count, got {value!r}")
    return value


class AgentState:
    """Node uuids and instances of one host, indexed by node; `persist()` after each change."""

    def __init__(self, host: str, path: Path | None = None) -> None:
        self.host = host
        self.path = path
        # Nova's compute_id: made once per node and never changed.
        self.node_uuids: dict[str, str] = {}
        # When the host entered maintenance (new builds refused); None when it is not in it.
        self.maintenance_since: datetime | None = None
        self._instances: dict[str, InstanceRecord] = {}
        self._by_node: dict[str, dict[str, InstanceRecord]] = {}
        self._write_lock = asyncio.Lock()
        self._lock_fd: int | None = None

    # -- instances ---------------------------------------------------------------------

    def find(self, instance_uuid: str) -> InstanceRecord | None:
        return self._instances.get(instance_uuid)

    def instances_on(self, nodename: str) -> Mapping[str, InstanceRecord]:
        return self._by_node.get(nodename, {})

    def all_instances(self) -> Iterable[InstanceRecord]:
        return self._instances.values()

    def put(self, record: InstanceRecord) -> None:
        """Add an instance or replace it (it never changes node)."""
        self._instances[record.uuid] = record
        self._by_node.setdefault(record.nodename, {})[record.uuid] = record

    def remove(self, instance_uuid: str) -> InstanceRecord | None:
        record = self._instances.pop(instance_uuid, None)
        if record is not None:
            on_node = self._by_node[record.nodename]
            del on_node[instance_uuid]
            if not on_node:
                del self._by_node[record.nodename]
        return record

    # -- nodes -------------------------------------------------------------------------

    def node_uuid(self, nodename: str, own_uuid: str | None = None) -> str:
        """The node's stable uuid: the driver's own if it has one, else one made now, once."""
        known = self.node_uuids.get(nodename)
        if own_uuid is not None and known != own_uuid:
            self.node_uuids[nodename] = own_uuid
        elif known is None:
            self.node_uuids[nodename] = str(uuidlib.uuid4())
        return self.node_uuids[nodename]

    def forget_node(self, nodename: str) -> None:
        self.node_uuids.pop(nodename, None)

    def nodenames(self) -> set[str]:
        return set(self.node_uuids) | set(self._by_node)

    # -- the file ----------------------------------------------------------------------

    def encode(self) -> bytes:
        doc = {
            "format": FORMAT,
            "host": self.host,
            "node_uuids": dict(sorted(self.node_uuids.items())),
            "instances": [r.to_json() for r in sorted(self._instances.values(), key=_by_uuid)],
        }
        if self.maintenance_since is not None:
            doc["maintenance_since"] = self.maintenance_since.isoformat()
        return json.dumps(doc, indent=1).encode()

    async def persist(self) -> None:
        """Write the current state; concurrent callers write in turn, the last one wins."""
        if self.path is None:
            return
        async with self._write_lock:
            data = self.encode()  # taken under the lock, so no older state lands last
            await asyncio.to_thread(write_atomically, self.path, data)

    @classmethod
    def load(cls, data_dir: Path, host: str) -> AgentState:
        """The state of `data_dir` for `host` (empty if new); StartupError says what is wrong."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create the data directory {data_dir}: {exc}") from exc
        path = data_dir / STATE_FILE
        state = cls(host, path)
        state._lock(data_dir / LOCK_FILE)
        try:
            if path.exists():
                state._read(path)
            else:  # claim the directory for this host name at once
                state._create(path)
        except BaseException:
            state.close()
            raise
        return state

    def close(self) -> None:
        """Release the data directory for another agent."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _create(self, path: Path) -> None:
        try:
            write_atomically(path, self.encode())
        except OSError as exc:
            raise StartupError(f"cannot write the compute state file {path}: {exc}") from exc

    def _lock(self, lock_path: Path) -> None:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(f"cannot lock the data directory: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartupError(
                f"another berth-compute already uses the data directory {lock_path.parent}; "
                "give each agent its own BERTH_DATA_DIR"
            ) from None
        self._lock_fd = fd

    def _read(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_bytes())
            stored_host = _text(doc["host"])
            node_uuids = {
                _text(name): str(uuidlib.UUID(value)) for name, value in doc["node_uuids"].items()
            }
            records = [InstanceRecord.from_json(item) for item in doc["instances"]]
            # Absent from state files written before maintenance was recorded, and when the
            # host is not in maintenance.
            since = doc.get("maintenance_since")
            maintenance_since = None if since is None else _aware(since)
        except (
            OSError,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            InvalidArgument,
        ) as exc:
            raise StartupError(
                f"the compute state file {path} is unreadable or corrupt ({exc}); it holds this "
                "host's node uuids and instances: repair it, or move it aside to start afresh"
            ) from exc
        if stored_host != self.host:
            raise StartupError(
                f"this data directory belongs to host {stored_host!r} but BERTH_HOST is "
                f"{self.host!r}; renaming a compute host is not supported — start the agent "
                f"with BERTH_HOST={stored_host}, or give {self.host!r} a data directory of its "
                "own (its nodes and instances stay with the old name)"
            )
        self.node_uuids = node_uuids
        self.maintenance_since = maintenance_since
        for record in records:
            self.put(_recovered(record))


def _recovered(record: InstanceRecord) -> InstanceRecord:
    """An instance caught mid-build or mid-delete by a stop is in an unknown state: ERROR,
    as Nova marks it, still holding its resources until someone deletes it."""
    if record.state not in (InstanceState.BUILDING, InstanceState.DELETING):
        return record
    log.warning(
        "instance was interrupted by a stop; marking it ERROR",
        extra={"instance": record.uuid, "was": record.state.value, "node": record.nodename},
    )
    return replace(record, state=InstanceState.ERROR)


def _by_uuid(record: InstanceRecord) -> str:
    return record.uuid


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    with contextlib.suppress(OSError):  # the rename is durable once the directory is
        os.fsync(dir_fd)
    os.close(dir_fd)
