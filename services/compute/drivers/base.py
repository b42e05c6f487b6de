"""The virt driver interface: what a hypervisor tells the agent, and what the agent asks of it."""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import ClassVar

from berth.client.errors import Unimplemented

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
    # What the node offers one unit of, as Placement's custom resource class (an Ironic
    # node's resource_class, e.g. CUSTOM_BAREMETAL_GOLD); '' for a node of VMs.
    resource_class: str = ""
    # The driver's own stable identity for the node (an Ironic node uuid); None: the agent
    # makes one and keeps it in its state file.
    uuid: str | None = None


class PowerAction(enum.StrEnum):
    """What host-action asks of a host (the proto's PowerAction, without the prefix)."""

    STARTUP = "startup"
    SHUTDOWN = "shutdown"
    REBOOT = "reboot"


class PowerState(enum.StrEnum):
    """A node's power, as Ironic says it."""

    ON = "power on"
    OFF = "power off"


class AfterAnswer(enum.Enum):
    """What becomes of the agent once it has answered a power action."""

    STAY = "stay"  # the agent keeps running (a conductor powering other machines)
    STOP = "stop"  # the agent runs on the host that is going off: it stops
    RESTART = "restart"  # off for a while, then back on the same endpoint


@dataclass(frozen=True)
class PowerOutcome:
    """What a driver did for a power action, for the operator and for the agent."""

    result: str  # a few words for people, e.g. `shutting down`
    then: AfterAnswer = AfterAnswer.STAY
    # RESTART: seconds the host stays off; None: long enough for the registry to see it down.
    off_s: float | None = None
    # Bare metal: each node acted on with its power state afterwards.
    nodes: tuple[tuple[str, PowerState], ...] = ()


class Driver(abc.ABC):
    """A hypervisor behind the agent."""

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

    async def power_action(self, action: PowerAction, nodename: str | None) -> PowerOutcome:
        """Start up, shut down or reboot the host (bare metal: every node, or `nodename`).
        A driver that cannot does not override this."""
        raise self.cannot(action)

    def cannot(self, action: PowerAction, why: str = "") -> Unimplemented:
        """The refusal of a power action this driver cannot do, naming driver and action."""
        return Unimplemented(
            f"the {self.name} driver does not support the {action.value} power action"
            + (f": {why}" if why else ""),
            reason="POWER_ACTION_UNSUPPORTED",
            metadata={"driver": self.name, "action": action.value},
        )
