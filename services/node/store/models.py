"""The node service's tables. Only the store package builds SQL against them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.store import NAMING, EventColumns, RevisionCounterColumns, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ComputeNode(Base):
    """One hypervisor node as Nova keeps it, keyed by (host, nodename) among live rows.

    No foreign key to the registry's services: the join is the `host` string. `deleted` is
    the row id once deleted, so a deleted node never blocks a new one with the same key.
    """

    __tablename__ = "compute_nodes"
    __table_args__ = (UniqueConstraint("host", "nodename", "deleted"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255), index=True)
    nodename: Mapped[str] = mapped_column(String(255))
    hypervisor_type: Mapped[str] = mapped_column(String(255), default="")
    hypervisor_version: Mapped[str] = mapped_column(String(255), default="")
    cpu_info: Mapped[str] = mapped_column(Text, default="")
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    local_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    vcpus_used: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb_used: Mapped[int] = mapped_column(BigInteger, default=0)
    local_gb_used: Mapped[int] = mapped_column(BigInteger, default=0)
    free_ram_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    free_disk_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_available_least: Mapped[int] = mapped_column(BigInteger, default=0)
    running_vms: Mapped[int] = mapped_column(Integer, default=0)
    current_workload: Mapped[int] = mapped_column(Integer, default=0)
    io_ops: Mapped[int] = mapped_column(Integer, default=0)
    host_ip: Mapped[str] = mapped_column(String(64), default="")
    cpu_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    ram_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    disk_allocation_ratio: Mapped[float] = mapped_column(Float, default=1.0)
    reserved_host_memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_host_disk_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_host_cpus: Mapped[int] = mapped_column(Integer, default=0)
    # What the node offers one unit of, as Placement's custom resource class ('' for a node
    # of VMs), and whether one instance takes it whole (a bare-metal server).
    resource_class: Mapped[str] = mapped_column(String(255), default="")
    whole_machine: Mapped[bool] = mapped_column(Boolean, default=False)
    # Serialized berth.v1 messages (repeated PciDevicePool as a NodeDetails, NumaTopology):
    # read back whole, never queried.
    details: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    generation: Mapped[int] = mapped_column(BigInteger, default=1)
    # The newest snapshot accepted: (boot epoch, sequence) orders snapshots, the digest
    # tells an unchanged one from a change without reading the instances.
    boot_epoch: Mapped[datetime] = mapped_column(UtcDateTime)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    digest: Mapped[str] = mapped_column(String(64), default="")
    reported_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deleted: Mapped[int] = mapped_column(Integer, default=0)


class NodeInstance(Base):
    """An instance as its node last reported it; replaced wholesale by each changed snapshot."""

    __tablename__ = "node_instances"
    __table_args__ = (UniqueConstraint("node_id", "uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(
        ForeignKey("compute_nodes.id", ondelete="CASCADE"), index=True
    )
    uuid: Mapped[str] = mapped_column(String(36), index=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255), default="")
    vcpus: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    disk_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[int] = mapped_column(SmallInteger, default=0)
    claim_id: Mapped[str] = mapped_column(String(64), default="")
    # The server group the instance was placed in ('' for none) and its policy (GroupPolicy).
    server_group: Mapped[str] = mapped_column(String(255), default="", index=True)
    group_policy: Mapped[int] = mapped_column(SmallInteger, default=0)
    # The extra specs of the flavor it was built from, as a JSON object; NULL for none.
    flavor_extra_specs: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The name its user gave it (looked up by name: indexed) and its flavor's name.
    name: Mapped[str] = mapped_column(String(255), default="", index=True)
    flavor_name: Mapped[str] = mapped_column(String(255), default="")
    # When its agent accepted the build; NULL when an agent of an older release reported it.
    created_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class RevisionCounter(RevisionCounterColumns, Base):
    __tablename__ = "node_revision"


class Event(EventColumns, Base):
    __tablename__ = "node_events"
