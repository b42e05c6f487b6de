"""The `local` driver: this machine's real CPUs, memory and disk, as inventory only."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
from pathlib import Path

from berth.client.errors import Unimplemented

from services.compute.drivers.base import Driver, NodeInventory, PowerAction, PowerOutcome
from services.compute.state import InstanceRecord, Resources

GIB = 2**30


def memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemTotal from /proc/meminfo, or pages x page size where there is no /proc."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024  # the kernel says kB
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20


class LocalDriver(Driver):
    """One node named like the host, sized like this machine; it cannot build instances."""

    name = "local"

    def __init__(self, host: str, host_ip: str, data_dir: Path) -> None:
        self.host = host
        self.host_ip = host_ip
        self.data_dir = data_dir

    async def nodes(self) -> list[NodeInventory]:
        return [await asyncio.to_thread(self._inventory)]

    def _inventory(self) -> NodeInventory:
        disk = shutil.disk_usage(self.data_dir)
        vcpus = os.cpu_count() or 1
        arch = platform.machine() or "unknown"
        return NodeInventory(
            nodename=self.host,
            hypervisor_type="local",
            hypervisor_version=platform.release(),
            cpu_info=json.dumps({"arch": arch, "count": vcpus, "system": platform.system()}),
            total=Resources(vcpus, memory_mb(), disk.total // GIB),
            host_ip=self.host_ip,
            disk_available_least_gb=disk.free // GIB,
        )

    async def spawn(self, instance: InstanceRecord, nodename: str) -> None:
        raise Unimplemented(
            "the local driver reports inventory only; it cannot build instances "
            "(use BERTH_DRIVER=fake for an agent that can)",
            reason="DRIVER_CANNOT_BUILD",
            metadata={"driver": self.name},
        )

    async def destroy(self, instance: InstanceRecord) -> None:
        return None  # it never built one

    async def power_action(self, action: PowerAction, nodename: str | None) -> PowerOutcome:
        raise self.cannot(
            action, "it reports this machine's inventory only and never powers the machine"
        )
