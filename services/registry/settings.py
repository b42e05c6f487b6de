"""The registry's settings (BERTH_* variables; see services/common/settings.py for the rest)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.settings import ServerSettings


class RegistrySettings(ServerSettings):
    binary: ClassVar[str] = "berth-registry"
    default_port: ClassVar[int] = 50051

    database_timeout: float = Field(
        5.0, gt=0, description="seconds one database operation may take; then UNAVAILABLE"
    )
    database_url: str = Field("sqlite:///data/registry.sqlite3", min_length=1)
    service_down_time: float = Field(
        60.0, gt=0, description="seconds without a heartbeat before down"
    )
    default_availability_zone: str = Field("nova", min_length=1, max_length=255)
    # How often liveness transitions are published, and how fast other replicas' changes arrive.
    sweep_interval: float = Field(1.0, gt=0)
    watch_poll_interval: float = Field(0.25, gt=0)
    event_retention: int = Field(100_000, ge=1000, description="events kept for watchers resuming")
    auto_migrate: bool = Field(True, description="walk the schema to head at start")
    # The node service: host-describe reads its usage, and a compute service is deleted
    # only after the node service deleted the host's nodes (refused while instances remain).
    node_url: str = Field("127.0.0.1:50052", min_length=1)
    # The scheduler: maintenance mode asks it where each of the host's instances goes.
    scheduler_url: str = Field("127.0.0.1:50053", min_length=1)
    # Maintenance moves: how long an unreachable agent or scheduler is retried (with
    # backoff) before the instance is reported as staying, and how long a registry's claim
    # on conducting one host's moves lasts without renewal (another replica then resumes).
    maintenance_retry_for: float = Field(60.0, gt=0, description="seconds")
    maintenance_lease: float = Field(15.0, ge=1, description="seconds")
