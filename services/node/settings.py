"""The node service's settings (BERTH_* variables; see services/common/settings.py for the rest)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.settings import ServerSettings


class NodeSettings(ServerSettings):
    binary: ClassVar[str] = "berth-node"
    default_port: ClassVar[int] = 50052

    database_timeout: float = Field(
        5.0, gt=0, description="seconds one database operation may take; then UNAVAILABLE"
    )
    database_url: str = Field("sqlite:///data/node.sqlite3", min_length=1)
    watch_poll_interval: float = Field(
        0.25, gt=0, description="how fast other replicas' changes arrive"
    )
    event_retention: int = Field(100_000, ge=1000, description="events kept for watchers resuming")
    auto_migrate: bool = Field(True, description="walk the schema to head at start")
    snapshot_batch: int = Field(500, ge=1, le=5000, description="snapshots per transaction at most")
    snapshot_writers: int = Field(
        2, ge=1, le=16, description="snapshot batches committed side by side (nodes split by key)"
    )
