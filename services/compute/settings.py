"""The compute agent's settings (BERTH_* variables; see services/common/settings.py for the rest)."""

from __future__ import annotations

from typing import ClassVar, Literal

from berth.client.channel import parse_target
from berth.client.errors import InvalidArgument
from berth.client.flavors import DEFAULT_BAREMETAL_CLASS, resource_class_problem
from pydantic import Field, field_validator

from services.common.settings import COMPUTE_BINARY, CommonSettings

# The widest amounts the node service accepts in a snapshot (its services/node/snapshots.py);
# the agent keeps within them, or its snapshots would be refused.
MAX_VCPUS = 1 << 24
MAX_MEMORY_MB = 1 << 42
MAX_DISK_GB = 1 << 40
MAX_RATIO = 1000.0
# A fake node lists every cpu in its NUMA cells, so its size stays in the realm of machines;
# a whole cluster of them (x 1000 members) still fits MAX_VCPUS.
MAX_FAKE_VCPUS = 1 << 14


class ComputeSettings(CommonSettings):
    binary: ClassVar[str] = COMPUTE_BINARY
    default_port: ClassVar[int] = 50054

    # The node service that receives this agent's snapshots; empty: report to nobody.
    node_url: str = "127.0.0.1:50052"
    driver: Literal["fake", "fake-cluster", "fake-ironic", "local"] = "fake"
    update_resources_interval: float = Field(
        60.0, gt=0, description="seconds between refreshes from the driver and snapshots"
    )
    # Kept back for the host itself (Nova's reserved_host_*); not applied to bare-metal nodes.
    reserved_host_memory_mb: int = Field(512, ge=0, le=MAX_MEMORY_MB)
    reserved_host_disk_mb: int = Field(0, ge=0, le=MAX_DISK_GB * 1024)
    reserved_host_cpus: int = Field(0, ge=0, le=MAX_VCPUS)
    # Nova's initial_*_allocation_ratio defaults.
    cpu_allocation_ratio: float = Field(16.0, gt=0, le=MAX_RATIO)
    ram_allocation_ratio: float = Field(1.5, gt=0, le=MAX_RATIO)
    disk_allocation_ratio: float = Field(1.0, gt=0, le=MAX_RATIO)
    # Sizes of one fake machine (a KVM node, a cluster member, a bare-metal server).
    fake_vcpus: int = Field(16, gt=0, le=MAX_FAKE_VCPUS)
    fake_memory_mb: int = Field(65536, gt=0, le=2**30)
    fake_disk_gb: int = Field(1000, gt=0, le=2**30)
    fake_nodes: int = Field(4, ge=1, le=10_000, description="fake-ironic: bare-metal servers")
    fake_cluster_members: int = Field(3, ge=1, le=1000, description="fake-cluster: machines")
    # fake-ironic: the rack the servers come from; agents sharing a pool report the same nodes.
    fake_ironic_pool: str = Field("", max_length=255)
    # fake-ironic: the resource class every server of this agent offers one unit of (an
    # Ironic node's resource_class, CUSTOM_ + upper-case as Placement names it); only a
    # flavor asking `resources:<class>=1` lands on them.
    fake_ironic_resource_class: str = DEFAULT_BAREMETAL_CLASS
    # fake, fake-cluster: how long a host-action reboot keeps the host (and so this agent)
    # off. Unset: the registry's service_down_time plus two report intervals, so that the
    # registry reports the host down, then up again.
    fake_reboot_seconds: float | None = Field(None, gt=0, le=3600)

    @field_validator("node_url")
    @classmethod
    def _target(cls, value: str) -> str:
        if value:
            try:
                parse_target(value)
            except InvalidArgument as exc:
                raise ValueError(exc.violations[0].description) from None
        return value

    @field_validator("fake_ironic_resource_class")
    @classmethod
    def _resource_class(cls, value: str) -> str:
        problem = resource_class_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @property
    def ironic_pool(self) -> str:
        return self.fake_ironic_pool or self.host
