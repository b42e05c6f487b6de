"""Fake hypervisors with the shapes of Nova's three kinds of node.

* `fake`: one KVM-like node named like the host.
* `fake-cluster`: one VMware-like node that is a whole cluster of member machines.
* `fake-ironic`: many bare-metal nodes, each taken whole by one instance and offering one
  unit of the agent's resource class (BERTH_FAKE_IRONIC_RESOURCE_CLASS).

They run nothing: an instance exists as a record in the agent's state file, which the
manager persists, so a restarted agent finds its instances again.

Power actions: `fake` and `fake-cluster` run on the host they power, so shutting it down
stops the agent and a reboot takes it away for a while; they cannot start up a host (off,
nothing would answer). `fake-ironic` is a conductor: it powers each bare-metal node through
a simulated BMC and stays up.
"""

from __future__ import annotations

import json
import uuid as uuidlib

from berth.client.errors import NotFound
from berth.client.flavors import DEFAULT_BAREMETAL_CLASS

from services.compute.drivers.base import (
    AfterAnswer,
    Driver,
    NodeInventory,
    NumaCell,
    PciPool,
    PowerAction,
    PowerOutcome,
    PowerState,
)
from services.compute.state import InstanceRecord, Resources

# Fixed, so every agent of a pool derives the same node uuids (as Ironic's are shared).
IRONIC_NAMESPACE = uuidlib.UUID("3f1f3a43-2c96-455d-8fe5-d5874357f406")


def _json(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def numa_cells(size: Resources) -> tuple[NumaCell, ...]:
    """Two cells sharing cpus and memory (one when there is a single cpu)."""
    if size.vcpus < 2:
        return (NumaCell(0, tuple(range(size.vcpus)), size.memory_mb),)
    cpus = (size.vcpus + 1) // 2
    memory = (size.memory_mb + 1) // 2
    return (
        NumaCell(0, tuple(range(cpus)), memory),
        NumaCell(1, tuple(range(cpus, size.vcpus)), size.memory_mb - memory),
    )


class _FakeDriver(Driver):
    """What all fakes share: sizes of one machine, and nothing to do to spawn or destroy."""

    def __init__(
        self, host: str, host_ip: str, machine: Resources, *, reboot_s: float | None = None
    ) -> None:
        self.host = host
        self.host_ip = host_ip
        self.machine = machine
        self.reboot_s = reboot_s  # how long a reboot keeps the host off; None: the agent picks

    async def spawn(self, instance: InstanceRecord, nodename: str) -> None:
        return None

    async def destroy(self, instance: InstanceRecord) -> None:
        return None

    async def power_action(self, action: PowerAction, nodename: str | None) -> PowerOutcome:
        """The agent runs on the host it powers: it goes off with it."""
        match action:
            case PowerAction.SHUTDOWN:
                return PowerOutcome("shutting down", AfterAnswer.STOP)
            case PowerAction.REBOOT:
                return PowerOutcome("rebooting", AfterAnswer.RESTART, off_s=self.reboot_s)
        raise self.cannot(
            action,
            f"a host that is off cannot start itself (its agent runs on it); power "
            f"{self.host} on from its BMC or console",
        )


class FakeDriver(_FakeDriver):
    """One QEMU/KVM-like node named like the host."""

    name = "fake"

    async def nodes(self) -> list[NodeInventory]:
        cells = numa_cells(self.machine)
        cpu_info = {
            "arch": "x86_64",
            "vendor": "Intel",
            "model": "Skylake-Server-IBRS",
            "topology": {"sockets": len(cells), "cores": len(cells[0].cpus), "threads": 1},
            "features": ["avx2", "pdpe1gb", "vmx"],
        }
        return [
            NodeInventory(
                nodename=self.host,
                hypervisor_type="QEMU",
                hypervisor_version="8.2.2",
                cpu_info=_json(cpu_info),
                total=self.machine,
                host_ip=self.host_ip,
                supported_instances=("x86_64/kvm/hvm",),
                # Two SR-IOV capable NICs, as a scheduler's PCI filters expect to find them.
                pci_pools=(PciPool("8086", "154d", 0, 2, (("physical_network", "physnet1"),)),),
                numa_cells=cells,
            )
        ]


class FakeClusterDriver(_FakeDriver):
    """One node that is a cluster of identical member machines (vCenter-like): its totals
    are the members' sums, and the scheduler sees one big node."""

    name = "fake-cluster"

    def __init__(
        self,
        host: str,
        host_ip: str,
        machine: Resources,
        members: int,
        *,
        reboot_s: float | None = None,
    ) -> None:
        super().__init__(host, host_ip, machine, reboot_s=reboot_s)
        self.members = members

    @property
    def nodename(self) -> str:
        return f"{self.host}-cluster"

    async def nodes(self) -> list[NodeInventory]:
        m = self.machine
        total = Resources(
            m.vcpus * self.members, m.memory_mb * self.members, m.disk_gb * self.members
        )
        cpu_info = {
            "vendor": ["Intel"],
            "model": ["Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz"],
            "topology": {"sockets": self.members, "cores": m.vcpus, "threads": 1},
            # Identical machines: one description and a count keeps cpu_info small (the
            # node service takes at most 64 KiB) however large the cluster.
            "members": {
                "count": self.members,
                "each": {"vcpus": m.vcpus, "memory_mb": m.memory_mb, "disk_gb": m.disk_gb},
            },
        }
        return [
            NodeInventory(
                nodename=self.nodename,
                hypervisor_type="VMware vCenter Server",
                hypervisor_version="8.0.2",
                cpu_info=_json(cpu_info),
                total=total,
                host_ip=self.host_ip,
                supported_instances=("i686/vmware/hvm", "x86_64/vmware/hvm"),
            )
        ]


def ironic_node_uuid(pool: str, index: int) -> str:
    return str(uuidlib.uuid5(IRONIC_NAMESPACE, f"{pool}/{index}"))


class FakeIronicDriver(_FakeDriver):
    """A rack of bare-metal servers: nodename = node uuid, derived from the pool name, so
    agents sharing a pool report the same nodes (how an Ironic rebalance is exercised)."""

    name = "fake-ironic"

    def __init__(
        self,
        host: str,
        host_ip: str,
        machine: Resources,
        count: int,
        pool: str,
        resource_class: str = DEFAULT_BAREMETAL_CLASS,
    ) -> None:
        super().__init__(host, host_ip, machine)
        self.count = count
        self.pool = pool
        self.resource_class = resource_class
        # The simulated BMCs: each node's power, by nodename; every node starts powered on.
        self.power: dict[str, PowerState] = {
            ironic_node_uuid(pool, index): PowerState.ON for index in range(count)
        }

    async def nodes(self) -> list[NodeInventory]:
        cpu_info = _json({"arch": "x86_64", "pool": self.pool})
        nodes = []
        for index in range(self.count):
            node_uuid = ironic_node_uuid(self.pool, index)
            nodes.append(
                NodeInventory(
                    nodename=node_uuid,
                    hypervisor_type="ironic",
                    hypervisor_version="1.82",
                    cpu_info=cpu_info,
                    total=self.machine,
                    host_ip=self.host_ip,
                    supported_instances=("x86_64/baremetal/hvm",),
                    whole_machine=True,
                    resource_class=self.resource_class,
                    uuid=node_uuid,
                )
            )
        return nodes

    async def spawn(self, instance: InstanceRecord, nodename: str) -> None:
        self.power[nodename] = PowerState.ON  # deploying powers the node on, as Ironic does

    async def power_action(self, action: PowerAction, nodename: str | None) -> PowerOutcome:
        """Through each node's BMC: every node of the host, or the one named."""
        if nodename is not None and nodename not in self.power:
            raise NotFound(
                f"no bare-metal node {nodename!r} on host {self.host}",
                reason="NODE_NOT_FOUND",
                metadata={"host": self.host, "nodename": nodename},
            )
        targets = [nodename] if nodename is not None else list(self.power)
        after = PowerState.OFF if action is PowerAction.SHUTDOWN else PowerState.ON
        for target in targets:
            self.power[target] = after  # a reboot is power off, then on
        done = {
            PowerAction.STARTUP: "powered on",
            PowerAction.SHUTDOWN: "powered off",
            PowerAction.REBOOT: "rebooted",
        }[action]
        which = f"node {nodename}" if nodename is not None else f"{len(targets)} nodes"
        return PowerOutcome(
            f"{done} {which} through the BMC",
            nodes=tuple((target, after) for target in targets),
        )
