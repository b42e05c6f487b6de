"""The virt driver interface: what a hypervisor tells the agent, and what the agent asks of it."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

from services.compute.state import InstanceRecord, Resources


@dataclass(frozen=True)
class PciPool:
    """Identical PCI devices on one NUMA node."""

    vendor_id: str
    product_id: str
    numa_node: int
    count: int
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class NumaCell:
    id: int
    cpus: tuple[int, ...]
    memory_mb: int


@dataclass(frozen=True)
class NodeInventory:
    """One node as its driver sees it: what it is and what it can hold."""

    nodename: str
    hypervisor_type: str
    hypervisor_version: str
    cpu_info: str  # JSON text, driver-specific
    total: Resources
    host_ip: str
    supported_instances: tuple[str, ...] = ()
    pci_pools: tuple[PciPool, ...] = ()
    numa_cells: tuple[NumaCell, ...] = ()
    # Disk really free (Nova's disk_available_least); None: total minus what instances use.
    disk_available_least_gb: int | None = None
    # Bare metal: one instance takes the whole node, and reserved host amounts do not apply.
    whole_machine: bool = False
    # The driver's own stable identity for the node (an Ironic node uuid); None: the agent
    # makes one and keeps it in its state file.
    uuid: str | None = None


class Driver(abc.ABC):
    """A hypervisor behind the agent. Power actions and maintenance moves will join this
    interface with the Host API maintenance work; until then the agent refuses them."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def nodes(self) -> list[NodeInventory]:
        """Every node this driver manages now; asked at start and every refresh."""

    @abc.abstractmethod
    async def spawn(self, instance: InstanceRecord, nodename: str) -> None:
        """Start `instance` on `nodename`; the tracker has already claimed its resources."""

    @abc.abstractmethod
    async def destroy(self, instance: InstanceRecord) -> None:
        """Stop and remove `instance`; an instance the driver does not know is no error."""
