"""Each driver reports the nodes of its kind: a KVM node, a cluster, a rack, this machine."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from berth.client.errors import Unimplemented

from services.compute.drivers import build_driver, host_ip
from services.compute.drivers.fake import (
    FakeClusterDriver,
    FakeDriver,
    FakeIronicDriver,
    numa_cells,
)
from services.compute.drivers.local import LocalDriver, memory_mb
from services.compute.settings import (
    MAX_DISK_GB,
    MAX_FAKE_VCPUS,
    MAX_MEMORY_MB,
    MAX_VCPUS,
    ComputeSettings,
)
from services.compute.state import InstanceRecord, InstanceState, Resources

MACHINE = Resources(16, 65536, 1000)


async def test_the_fake_driver_reports_one_kvm_node_named_like_the_host():
    [node] = await FakeDriver("kvm-1", "10.0.0.5", MACHINE).nodes()
    assert (node.nodename, node.hypervisor_type) == ("kvm-1", "QEMU")
    assert node.total == MACHINE and node.host_ip == "10.0.0.5"
    assert node.supported_instances == ("x86_64/kvm/hvm",)
    assert not node.whole_machine and node.uuid is None
    assert [len(c.cpus) for c in node.numa_cells] == [8, 8]
    assert sum(c.memory_mb for c in node.numa_cells) == 65536
    assert json.loads(node.cpu_info)["topology"]["sockets"] == 2


@pytest.mark.parametrize(("vcpus", "split"), [(1, [1]), (2, [1, 1]), (5, [3, 2])])
def test_numa_cells_share_out_every_cpu_and_all_memory(vcpus, split):
    cells = numa_cells(Resources(vcpus, 1001, 1))
    assert [len(c.cpus) for c in cells] == split
    assert sorted(cpu for c in cells for cpu in c.cpus) == list(range(vcpus))
    assert sum(c.memory_mb for c in cells) == 1001


async def test_a_cluster_node_totals_the_sum_of_its_members():
    [node] = await FakeClusterDriver("vmware-1", "127.0.0.1", MACHINE, members=3).nodes()
    assert node.nodename == "vmware-1-cluster"
    assert node.hypervisor_type == "VMware vCenter Server"
    assert node.total == Resources(48, 3 * 65536, 3000)
    members = json.loads(node.cpu_info)["members"]
    assert members == {"count": 3, "each": {"vcpus": 16, "memory_mb": 65536, "disk_gb": 1000}}


async def test_the_largest_cluster_stays_within_what_the_node_service_accepts():
    biggest = Resources(MAX_FAKE_VCPUS, 2**30, 2**30)
    [node] = await FakeClusterDriver("vmware-1", "127.0.0.1", biggest, members=1000).nodes()
    assert node.total.vcpus <= MAX_VCPUS and node.total.memory_mb <= MAX_MEMORY_MB
    assert node.total.disk_gb <= MAX_DISK_GB and len(node.cpu_info) < 65536


async def test_an_ironic_rack_reports_one_whole_machine_node_per_server():
    nodes = await FakeIronicDriver("ironic-1", "127.0.0.1", MACHINE, 4, "rack-a").nodes()
    assert len(nodes) == 4
    assert all(n.whole_machine and n.hypervisor_type == "ironic" for n in nodes)
    assert all(n.nodename == n.uuid and uuid.UUID(n.uuid) for n in nodes)
    assert len({n.uuid for n in nodes}) == 4


async def test_an_ironic_rack_offers_the_resource_class_it_is_given_or_custom_baremetal():
    default = await FakeIronicDriver("ironic-1", "", MACHINE, 2, "rack-a").nodes()
    assert {n.resource_class for n in default} == {"CUSTOM_BAREMETAL"}
    settings = ComputeSettings(
        host="ironic-1", driver="fake-ironic", fake_ironic_resource_class="CUSTOM_BAREMETAL_GOLD"
    )
    gold = await build_driver(settings).nodes()
    assert {n.resource_class for n in gold} == {"CUSTOM_BAREMETAL_GOLD"}


async def test_vm_drivers_report_no_resource_class_and_no_whole_machine():
    for driver in (
        FakeDriver("kvm-1", "", MACHINE),
        FakeClusterDriver("vmware-1", "", MACHINE, members=2),
    ):
        (node,) = await driver.nodes()
        assert (node.resource_class, node.whole_machine) == ("", False)


async def test_agents_of_one_pool_report_the_same_node_uuids_and_other_pools_differ():
    async def uuids(host: str, pool: str) -> list[str | None]:
        return [n.uuid for n in await FakeIronicDriver(host, "", MACHINE, 3, pool).nodes()]

    assert await uuids("ironic-1", "rack-a") == await uuids("ironic-2", "rack-a")
    assert not set(await uuids("ironic-1", "rack-a")) & set(await uuids("ironic-1", "rack-b"))


def test_the_ironic_pool_defaults_to_the_host_name():
    settings = ComputeSettings(host="ironic-7", driver="fake-ironic")
    driver = build_driver(settings)
    assert isinstance(driver, FakeIronicDriver) and driver.pool == "ironic-7"


async def test_the_local_driver_reads_this_machines_real_sizes(tmp_path: Path):
    [node] = await LocalDriver("here", "127.0.0.1", tmp_path).nodes()
    assert node.nodename == "here" and node.hypervisor_type == "local"
    assert node.total.vcpus == os.cpu_count()
    assert node.total.memory_mb > 0 and node.total.disk_gb > 0
    assert node.disk_available_least_gb is not None and node.disk_available_least_gb >= 0


def test_memory_is_memtotal_from_proc_meminfo_or_sysconf_without_it(tmp_path: Path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2048000 kB\nMemFree:  1024 kB\n")
    assert memory_mb(meminfo) == 2000
    assert memory_mb(tmp_path / "missing") > 0


async def test_the_local_driver_cannot_build_instances(tmp_path: Path):
    record = InstanceRecord(
        str(uuid.uuid4()), "p", "", Resources(1, 1, 1), InstanceState.BUILDING, "", "here"
    )
    with pytest.raises(Unimplemented, match="reports inventory only"):
        await LocalDriver("here", "127.0.0.1", tmp_path).spawn(record, "here")


@pytest.mark.parametrize(
    ("listen", "advertise", "ip"),
    [
        pytest.param("10.1.2.3:50054", "", "10.1.2.3", id="listening"),
        pytest.param("0.0.0.0:50054", "", "127.0.0.1", id="every-interface"),
        pytest.param("0.0.0.0:50054", "192.0.2.9:6000", "192.0.2.9", id="advertised"),
        pytest.param("[::1]:50054", "", "::1", id="ipv6"),
        pytest.param("127.0.0.1:0", "compute-1.example:6000", "", id="a-name-only"),
    ],
)
def test_the_host_ip_is_the_advertised_or_listening_address(listen, advertise, ip):
    assert host_ip(ComputeSettings(host="h", listen=listen, advertise=advertise)) == ip
