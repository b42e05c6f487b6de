"""The registry's tables. Only the store package builds SQL against them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.store import NAMING, EventColumns, RevisionCounterColumns, UtcDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Service(Base):
    """One Berth process, keyed by (host, binary) among live rows; `deleted` = id once deleted."""

    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary", "deleted"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255), default="")
    report_count: Mapped[int] = mapped_column(BigInteger, default=0)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255), nullable=True)
    forced_down: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_up: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    # The liveness last published to watchers; the sweeper flips it on transitions.
    reported_up: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    endpoint: Mapped[str] = mapped_column(String(255), default="")
    build_version: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deleted: Mapped[int] = mapped_column(Integer, default=0)


class Aggregate(Base):
    """A named group of hosts; metadata `availability_zone` makes it a zone."""

    __tablename__ = "aggregates"
    __table_args__ = (UniqueConstraint("name", "deleted"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    deleted: Mapped[int] = mapped_column(Integer, default=0)


class AggregateHost(Base):
    __tablename__ = "aggregate_hosts"
    __table_args__ = (UniqueConstraint("aggregate_id", "host"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aggregate_id: Mapped[int] = mapped_column(
        ForeignKey("aggregates.id", ondelete="CASCADE"), index=True
    )
    host: Mapped[str] = mapped_column(String(255), index=True)


class AggregateMetadata(Base):
    __tablename__ = "aggregate_metadata"
    __table_args__ = (UniqueConstraint("aggregate_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    aggregate_id: Mapped[int] = mapped_column(
        ForeignKey("aggregates.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))


class HostMaintenance(Base):
    """A host that is or was in maintenance, and which registry conducts its moves.

    `moving` is true from the start of a pass of moves until it ends; a pass whose lease
    expired (its registry died) or was released early (its registry stopped) is resumed.
    """

    __tablename__ = "host_maintenance"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    moving: Mapped[bool] = mapped_column(Boolean, default=False)
    # The registry process conducting the moves, and until when its claim holds.
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class InstanceMove(Base):
    """One instance moving off a host in maintenance:
    PENDING -> SELECTED (destination and claim) -> BUILT (there too) -> DONE (deleted here),
    or FAILED with the reason it stays. `reason` on a SELECTED or BUILT row: the pass gave up
    on it for now (an agent unreachable); the next pass resumes it."""

    __tablename__ = "instance_moves"
    __table_args__ = (UniqueConstraint("host", "instance_uuid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    instance_uuid: Mapped[str] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16))
    destination_host: Mapped[str] = mapped_column(String(255), default="")
    destination_nodename: Mapped[str] = mapped_column(String(255), default="")
    claim_id: Mapped[str] = mapped_column(String(64), default="")
    reason: Mapped[str] = mapped_column(String(1024), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RevisionCounter(RevisionCounterColumns, Base):
    __tablename__ = "registry_revision"


class Event(EventColumns, Base):
    __tablename__ = "registry_events"
