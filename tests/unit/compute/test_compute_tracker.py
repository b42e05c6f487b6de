"""ResourceTracker: usage is instances plus reserved amounts, claims fit as Placement decides
(reserved out of the total before the ratio, no instance above the total), a bare-metal
node is taken whole by an instance of its resource class, and every snapshot has the next
sequence."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from berth.client.errors import ResourceExhausted
from berth.v1 import node_pb2

from services.compute.drivers.base import NodeInventory
from services.compute.state import AgentState, InstanceRecord, InstanceState, Resources
from services.compute.tracker import CapacityPolicy, ResourceTracker

KVM = NodeInventory(
    nodename="kvm-1",
    hypervisor_type="QEMU",
    hypervisor_version="8.2.2",
    cpu_info="{}",
    total=Resources(16, 65536, 1000),
    host_ip="127.0.0.1",
)
METAL = NodeInventory(
    nodename="metal-1",
    hypervisor_type="ironic",
    hypervisor_version="1.82",
    cpu_info="{}",
    total=Resources(32, 131072, 500),
    host_ip="127.0.0.1",
    whole_machine=True,
    resource_class="CUSTOM_BAREMETAL_GOLD",
    uuid=str(uuid.uuid4()),
)
GOLD = {"resources:CUSTOM_BAREMETAL_GOLD": "1"}
NOVA_DEFAULTS = CapacityPolicy(
    reserved_host_cpus=0,
    reserved_host_memory_mb=512,
    reserved_host_disk_mb=0,
    cpu_allocation_ratio=16.0,
    ram_allocation_ratio=1.5,
    disk_allocation_ratio=1.0,
)


def tracker(inventory: NodeInventory = KVM, policy: CapacityPolicy = NOVA_DEFAULTS):
    state = AgentState("host-1")
    return ResourceTracker(
        "host-1",
        inventory,
        str(uuid.uuid4()),
        state,
        policy,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )


def instance(
    vcpus: int = 1,
    memory_mb: int = 512,
    disk_gb: int = 10,
    *,
    nodename: str = "kvm-1",
    state: InstanceState = InstanceState.ACTIVE,
    specs: dict[str, str] | None = None,
) -> InstanceRecord:
    return InstanceRecord(
        uuid=str(uuid.uuid4()),
        project_id="demo",
        user_id="alice",
        resources=Resources(vcpus, memory_mb, disk_gb),
        state=state,
        claim_id="",
        nodename=nodename,
        flavor_extra_specs=tuple(sorted((specs or {}).items())),
    )


def metal(vcpus: int = 1, memory_mb: int = 1024, disk_gb: int = 10, **kwargs) -> InstanceRecord:
    """An instance whose flavor asks for METAL's resource class."""
    return instance(vcpus, memory_mb, disk_gb, nodename="metal-1", specs=GOLD, **kwargs)


def test_an_empty_node_uses_only_what_is_reserved_for_the_host():
    policy = CapacityPolicy(2, 1024, 1536, 1.0, 1.0, 1.0)
    # 1536 MiB of disk reserved is 2 GiB: a partly reserved GiB cannot be used.
    assert tracker(policy=policy).usage() == Resources(2, 1024, 2)


def test_usage_adds_every_instance_to_the_reserved_amounts():
    t = tracker()
    t.instance_claim(instance(2, 2048, 20))
    t.instance_claim(instance(4, 4096, 40))
    assert t.usage() == Resources(6, 6144 + 512, 60)


def test_allocation_ratios_let_a_node_hold_more_than_it_has():
    t = tracker()  # 16 vCPUs x 16 = 256
    for _ in range(16):
        t.instance_claim(instance(16, 1, 1))
    assert t.usage().vcpus == 256
    with pytest.raises(ResourceExhausted) as refused:
        t.instance_claim(instance(1, 1, 1))
    assert refused.value.message == (
        "node kvm-1 cannot hold 1 vCPUs: 0 free ((total 16 - reserved 0) × allocation ratio 16"  # noqa: RUF001
        " - 256 used by instances)"
    )


def test_a_refusal_names_node_resource_request_and_free_amount():
    t = tracker()
    # (65536 total - 512 reserved) x 1.5 = 97536; 97536 - 92160 used = 5376 free.
    t.instance_claim(instance(1, 46080, 1))
    t.instance_claim(instance(1, 46080, 1))
    with pytest.raises(ResourceExhausted) as refused:
        t.instance_claim(instance(1, 8192, 1))
    error = refused.value
    assert error.message == (
        "node kvm-1 cannot hold 8192 MiB of memory: 5376 MiB free ((total 65536 MiB - reserved"
        " 512 MiB) × allocation ratio 1.5 - 92160 MiB used by instances)"  # noqa: RUF001
    )
    assert error.reason == "INSUFFICIENT_RESOURCES"
    assert error.metadata == {
        "node": "kvm-1",
        "resource": "memory_mb",
        "requested": "8192",
        "free": "5376",
    }


# Placement's capacity: floor((total - reserved) x ratio), of which the instances use some.
# The node: 16 vCPUs, 65536 MiB, 1000 GiB.
@pytest.mark.parametrize(
    ("policy", "size", "fitting"),
    [
        pytest.param(
            CapacityPolicy(reserved_host_cpus=4, cpu_allocation_ratio=16.0),
            Resources(16, 0, 0),
            12,
            id="reserved vCPUs come out of the total before the ratio: (16 - 4) x 16 = 192, "
            "12 instances of 16 (not 15, as 16 x 16 - 4 would let in)",
        ),
        pytest.param(
            CapacityPolicy(reserved_host_memory_mb=1536, ram_allocation_ratio=0.5),
            Resources(0, 8000, 0),
            4,
            id="an under-commit ratio applies to what the reserve leaves: (65536 - 1536) x 0.5 "
            "= 32000 MiB, 4 instances of 8000 (not 3)",
        ),
        pytest.param(
            CapacityPolicy(reserved_host_disk_mb=1025, disk_allocation_ratio=2.0),
            Resources(0, 0, 666),
            2,
            id="reserved disk counts in whole GiB: 1025 MiB keep 2 back, (1000 - 2) x 2 = 1996 "
            "GiB, 2 instances of 666 (not 3)",
        ),
    ],
)
def test_capacity_is_total_less_reserved_times_the_ratio(policy, size, fitting):
    t = tracker(policy=policy)
    for _ in range(fitting):
        t.instance_claim(instance(size.vcpus, size.memory_mb, size.disk_gb))
    with pytest.raises(ResourceExhausted, match=r"free \(\(total"):
        t.instance_claim(instance(size.vcpus, size.memory_mb, size.disk_gb))
    assert len(t.instances()) == fitting


def test_one_instance_may_not_ask_more_than_the_nodes_total_whatever_the_ratio():
    big = NodeInventory(**{**KVM.__dict__, "total": Resources(32, 65536, 1000)})
    t = tracker(big)  # 32 cores x 16: room for 512 vCPUs, but at most 32 in one instance
    with pytest.raises(ResourceExhausted) as refused:
        t.instance_claim(instance(40, 1024, 10))
    error = refused.value
    assert error.message == (
        "node kvm-1 cannot hold 40 vCPUs: one instance may use at most the node's total, 32"
    )
    assert error.metadata["max_unit"] == "32" and error.metadata["free"] == "512"
    t.instance_claim(instance(32, 1024, 10))
    assert t.usage().vcpus == 32


def test_disk_is_not_over_committed_by_default():
    t = tracker()
    t.instance_claim(instance(1, 1, 1000))
    with pytest.raises(ResourceExhausted, match="cannot hold 1 GiB of disk: 0 GiB free"):
        t.instance_claim(instance(1, 1, 1))


def test_a_refused_claim_records_nothing():
    t = tracker()
    with pytest.raises(ResourceExhausted):
        t.instance_claim(instance(1000, 1, 1))
    assert t.instances() == [] and t.usage() == Resources(0, 512, 0)


def test_a_request_for_none_of_a_resource_fits_even_on_a_full_node():
    t = tracker(policy=CapacityPolicy(reserved_host_memory_mb=70000))  # more than the node
    t.instance_claim(instance(1, 0, 1))
    assert len(t.instances()) == 1


def test_a_bare_metal_node_is_used_whole_by_one_instance_and_reserves_nothing():
    t = tracker(METAL)
    assert t.usage() == Resources()
    t.instance_claim(metal())
    assert t.usage() == METAL.total
    snapshot = t.snapshot()
    assert snapshot.used == METAL.total.to_proto()
    assert (snapshot.reserved_host_memory_mb, snapshot.reserved_host_cpus) == (0, 0)
    assert snapshot.cpu_allocation_ratio == 1.0


def test_a_snapshot_states_the_nodes_resource_class_and_whether_it_is_taken_whole():
    bare_metal = tracker(METAL).snapshot()
    assert (bare_metal.resource_class, bare_metal.whole_machine) == ("CUSTOM_BAREMETAL_GOLD", True)
    vms = tracker(KVM).snapshot()
    assert (vms.resource_class, vms.whole_machine) == ("", False)


def test_a_second_claim_on_a_bare_metal_node_is_refused():
    t = tracker(METAL)
    first = metal()
    t.instance_claim(first)
    with pytest.raises(ResourceExhausted) as refused:
        t.instance_claim(metal())
    assert f"already taken by instance {first.uuid}" in refused.value.message
    assert refused.value.reason == "INSUFFICIENT_RESOURCES"


def test_a_bare_metal_claim_larger_than_the_server_is_refused():
    with pytest.raises(ResourceExhausted) as refused:
        tracker(METAL).instance_claim(metal(64))
    assert refused.value.message == (
        "node metal-1 cannot hold 64 vCPUs: the bare-metal server has 32"
    )


@pytest.mark.parametrize(
    ("inventory", "specs", "says"),
    [
        pytest.param(
            METAL,
            {},
            "node metal-1 is a bare-metal server of resource class CUSTOM_BAREMETAL_GOLD: it "
            "takes only an instance whose flavor asks for that class (extra spec "
            "resources:CUSTOM_BAREMETAL_GOLD=1, e.g. berth boot --resource-class "
            "CUSTOM_BAREMETAL_GOLD), not one sized in vCPUs, memory and disk",
            id="a VM flavor is refused by a bare-metal node however well it fits",
        ),
        pytest.param(
            METAL,
            {"resources:CUSTOM_BAREMETAL_SILVER": "1"},
            "node metal-1 offers resource class CUSTOM_BAREMETAL_GOLD, not "
            "CUSTOM_BAREMETAL_SILVER, which the flavor asks for "
            "(resources:CUSTOM_BAREMETAL_SILVER=1)",
            id="a bare-metal node refuses another class",
        ),
        pytest.param(
            KVM,
            {"resources:CUSTOM_BAREMETAL_GOLD": "1"},
            "node kvm-1 is a node of VMs (vCPUs, memory and disk): it has none of resource "
            "class CUSTOM_BAREMETAL_GOLD, which the flavor asks for "
            "(resources:CUSTOM_BAREMETAL_GOLD=1); such an instance goes to a bare-metal node "
            "of that class",
            id="a node of VMs refuses a class request",
        ),
        pytest.param(
            NodeInventory(**{**METAL.__dict__, "resource_class": ""}),
            {},
            "node metal-1 is a bare-metal server that states no resource class, so no flavor "
            "can ask for it; give its driver a class",
            id="a bare-metal node without a class takes nothing",
        ),
    ],
)
def test_an_instance_goes_only_to_a_node_of_the_class_its_flavor_asks_for(inventory, specs, says):
    t = tracker(inventory)
    record = instance(1, 1024, 10, nodename=inventory.nodename, specs=specs)
    with pytest.raises(ResourceExhausted) as refused:
        t.instance_claim(record)
    error = refused.value
    assert error.message == says
    assert error.reason == "RESOURCE_CLASS_MISMATCH"
    assert error.metadata == {
        "node": inventory.nodename,
        "resource_class": inventory.resource_class,
        "requested": record.resource_class,
    }
    assert t.instances() == []


def test_a_class_turned_off_with_zero_is_no_class_request():
    t = tracker()
    t.instance_claim(instance(specs={"resources:CUSTOM_BAREMETAL_GOLD": "0", "ssd": "true"}))
    assert len(t.instances()) == 1


def test_each_snapshot_has_the_next_sequence_and_the_same_boot_epoch():
    t = tracker()
    first, second = t.snapshot(), t.snapshot()
    assert (first.sequence, second.sequence) == (1, 2)
    assert first.boot_epoch == second.boot_epoch
    assert t.queue_snapshot() == 3


def test_a_snapshot_carries_totals_usage_policy_and_every_instance():
    t = tracker()
    building = instance(2, 2048, 20, state=InstanceState.BUILDING)
    t.instance_claim(building)
    t.instance_claim(instance(1, 1024, 10))
    snapshot = t.snapshot()
    assert snapshot.host == "host-1" and snapshot.nodename == "kvm-1"
    assert snapshot.node_uuid == t.node_uuid
    assert snapshot.total == KVM.total.to_proto()
    assert snapshot.used == Resources(3, 3072 + 512, 30).to_proto()
    assert snapshot.disk_available_least_gb == 970
    assert (snapshot.current_workload, snapshot.io_ops) == (1, 1)
    assert (snapshot.cpu_allocation_ratio, snapshot.ram_allocation_ratio) == (16.0, 1.5)
    assert snapshot.reserved_host_memory_mb == 512
    assert len(snapshot.instances) == 2
    built = next(i for i in snapshot.instances if i.uuid == building.uuid)
    assert built.state == node_pb2.INSTANCE_STATE_BUILDING
    assert (built.host, built.nodename, built.node_uuid) == ("host-1", "kvm-1", t.node_uuid)


def test_fresh_inventory_from_the_driver_shows_in_the_next_snapshot():
    t = tracker()
    grown = NodeInventory(**{**KVM.__dict__, "total": Resources(32, 65536, 1000)})
    sequence = t.update_available_resource(grown)
    assert t.last_snapshot is not None and t.last_snapshot.sequence == sequence
    assert t.last_snapshot.total.vcpus == 32
