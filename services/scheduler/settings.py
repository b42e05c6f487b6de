"""The scheduler's settings (BERTH_* variables; see services/common/settings.py for the rest)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.common.settings import ServerSettings

# Nova's filter names, in the order they run unless BERTH_ENABLED_FILTERS says otherwise:
# cheap, decisive checks first.
DEFAULT_FILTERS = (
    "ComputeFilter",
    "AvailabilityZoneFilter",
    "ImagePropertiesFilter",
    "RamFilter",
    "CoreFilter",
    "DiskFilter",
    "NumInstancesFilter",
    "IoOpsFilter",
    "AggregateInstanceExtraSpecsFilter",
    "SameHostFilter",
    "DifferentHostFilter",
    "ServerGroupAffinityFilter",
    "ServerGroupAntiAffinityFilter",
)


class SchedulerSettings(ServerSettings):
    binary: ClassVar[str] = "berth-scheduler"
    default_port: ClassVar[int] = 50053

    # The placement store; `redis://host:port/db` (rediss:// for TLS).
    redis_url: str = Field("redis://127.0.0.1:6379/0", min_length=1)
    # Every key the scheduler writes starts with this, so several Berths can share a Redis.
    redis_prefix: str = Field("berth", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    # The node service, whose WatchComputeNodes the scheduler follows.
    node_url: str = Field("127.0.0.1:50052", min_length=1)
    # Comma-separated in the environment (NoDecode: not read as JSON first).
    enabled_filters: Annotated[tuple[str, ...], NoDecode] = DEFAULT_FILTERS
    # Weigher multipliers (Nova's defaults); negative packs instead of spreading, 0 disables.
    ram_weight_multiplier: float = 1.0
    cpu_weight_multiplier: float = 1.0
    disk_weight_multiplier: float = 1.0
    io_ops_weight_multiplier: float = -1.0
    num_instances_weight_multiplier: float = 0.0
    # Choose at random among this many of the best-weighed nodes (Nova's host_subset_size).
    host_subset_size: int = Field(1, ge=1, le=1000)
    # Destinations per instance: the primary plus max_attempts - 1 alternates.
    max_attempts: int = Field(3, ge=1, le=10)
    max_io_ops_per_host: int = Field(8, ge=1)
    max_instances_per_host: int = Field(50, ge=1)
    # Instances one SelectDestinations may place.
    max_instances_per_request: int = Field(1000, ge=1, le=100_000)
    # A claim not confirmed by the node's report or released is dropped after this long.
    claim_ttl: float = Field(300.0, gt=0, le=86_400, description="seconds")
    # Every feasible node is weighed, as Nova does (0). An operator who prefers speed to
    # the best choice may weigh a sample instead: `sample_percentage` % of the fleet, but
    # at least `min_feasible_nodes` (a sample spreads where the weighers would pack).
    min_feasible_nodes: int = Field(100, ge=0)
    sample_percentage: float = Field(0.0, ge=0, le=100)
    # How often the scheduler checks that Redis still holds its cache (a flush or a new
    # Redis triggers a rebuild from the registry and node service).
    cache_check_interval: float = Field(2.0, gt=0)

    @field_validator("enabled_filters", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value
