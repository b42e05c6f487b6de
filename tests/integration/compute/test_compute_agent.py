"""ComputeAgentService over a real channel: build, list and delete instances, and refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import common_pb2, compute_pb2, host_pb2, node_pb2
from grpc import aio

from services.common.server import StartupError
from services.compute.drivers.fake import ironic_node_uuid
from services.compute.state import InstanceState
from tests.integration.compute.support import agent_stub
from tests.integration.registry.support import status_of


def build(
    vcpus: int = 1,
    memory_mb: int = 1024,
    disk_gb: int = 10,
    *,
    nodename: str = "",
    instance_uuid: str | None = None,
    project_id: str = "demo",
    claim_id: str = "",
    specs: dict[str, str] | None = None,
) -> compute_pb2.BuildInstanceRequest:
    return compute_pb2.BuildInstanceRequest(
        instance=node_pb2.Instance(
            uuid=instance_uuid or str(uuid.uuid4()),
            project_id=project_id,
            user_id="alice",
            resources=common_pb2.Resources(vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb),
            flavor_extra_specs=specs or {},
        ),
        nodename=nodename,
        claim_id=claim_id,
    )


# The extra spec of a flavor for fake-ironic's default class (the `baremetal` flavor's).
BAREMETAL = {"resources:CUSTOM_BAREMETAL": "1"}


async def listed(stub, nodename: str = "") -> list[str]:
    response = await stub.ListInstances(compute_pb2.ListInstancesRequest(nodename=nodename))
    return [i.uuid for i in response.instances]


async def refusal(coro):
    with pytest.raises(aio.AioRpcError) as err:
        await coro
    return from_rpc_error(err.value)


async def test_an_instance_is_built_listed_and_deleted(agent, compute):
    node_uuid = agent.manager.trackers["kvm-1"].node_uuid
    built = (await compute.BuildInstance(build(2, 2048, 20, claim_id="claim-7"))).instance
    assert built.state == node_pb2.INSTANCE_STATE_ACTIVE
    assert (built.host, built.nodename, built.node_uuid) == ("kvm-1", "kvm-1", node_uuid)
    assert built.claim_id == "claim-7" and built.resources.memory_mb == 2048
    assert await listed(compute) == [built.uuid]
    assert agent.manager.trackers["kvm-1"].usage().vcpus == 2

    await compute.DeleteInstance(compute_pb2.DeleteInstanceRequest(instance_uuid=built.uuid))
    assert await listed(compute) == []
    assert agent.manager.trackers["kvm-1"].usage().vcpus == 0
    again = compute.DeleteInstance(compute_pb2.DeleteInstanceRequest(instance_uuid=built.uuid))
    assert await status_of(again) is grpc.StatusCode.NOT_FOUND


async def test_a_retried_build_answers_the_instance_and_another_one_already_exists(agent, compute):
    first = build(claim_id="claim-1")
    built = (await compute.BuildInstance(first)).instance
    # The same build again (a caller that lost the answer, a maintenance move resuming).
    again = (await compute.BuildInstance(first)).instance
    assert again == built
    assert await listed(compute) == [built.uuid]
    assert agent.manager.trackers["kvm-1"].usage().vcpus == 1
    # The same uuid with other resources is another instance.
    other = build(vcpus=2, instance_uuid=built.uuid)
    error = await refusal(compute.BuildInstance(other))
    assert error.code is grpc.StatusCode.ALREADY_EXISTS and error.reason == "INSTANCE_EXISTS"
    assert await listed(compute) == [built.uuid]


async def test_a_retried_build_on_another_bare_metal_node_already_exists(start_compute):
    agent = await start_compute(host="ironic-1", driver="fake-ironic", fake_nodes=2)
    first, second = ironic_node_uuid("ironic-1", 0), ironic_node_uuid("ironic-1", 1)
    async with agent_stub(agent) as stub:
        request = build(nodename=first, specs=BAREMETAL)
        await stub.BuildInstance(request)
        elsewhere = build(nodename=second, instance_uuid=request.instance.uuid, specs=BAREMETAL)
        error = await refusal(stub.BuildInstance(elsewhere))
        assert error.code is grpc.StatusCode.ALREADY_EXISTS
        assert await listed(stub, second) == []


async def test_a_build_a_stop_interrupted_is_completed_by_its_retry(start_compute, tmp_path):
    agent = await start_compute()
    request = build(claim_id="claim-1")
    async with agent_stub(agent) as stub:
        await stub.BuildInstance(request)
    # As if the agent stopped mid-build: the state file holds the instance BUILDING.
    record = agent.state.find(request.instance.uuid)
    agent.state.put(dataclasses.replace(record, state=InstanceState.BUILDING))
    await agent.state.persist()
    await agent.stop(0)

    again = await start_compute()
    assert again.state.find(request.instance.uuid).state is InstanceState.ERROR
    async with agent_stub(again) as stub:
        built = (await stub.BuildInstance(request)).instance
        assert built.state == node_pb2.INSTANCE_STATE_ACTIVE
        assert await listed(stub) == [request.instance.uuid]
    assert again.manager.trackers["kvm-1"].usage().vcpus == 1


async def test_in_maintenance_an_agent_refuses_builds_but_deletes_and_remembers_it(
    start_compute,
):
    agent = await start_compute()
    async with agent_stub(agent) as stub:
        kept = (await stub.BuildInstance(build())).instance
        gone = (await stub.BuildInstance(build())).instance
        status = (await stub.GetMaintenance(compute_pb2.GetMaintenanceRequest())).status
        assert status.mode == host_pb2.MAINTENANCE_MODE_DISABLED
        assert not status.HasField("started_at") and status.instances == 2

        enter = compute_pb2.SetMaintenanceRequest(mode=host_pb2.MAINTENANCE_MODE_ENABLED)
        status = (await stub.SetMaintenance(enter)).status
        assert status.mode == host_pb2.MAINTENANCE_MODE_ENABLED and status.HasField("started_at")
        since = status.started_at
        assert (await stub.SetMaintenance(enter)).status.started_at == since  # idempotent

        error = await refusal(stub.BuildInstance(build()))
        assert error.code is grpc.StatusCode.FAILED_PRECONDITION
        assert error.reason == "HOST_IN_MAINTENANCE"
        # A retried build of an instance already here still answers it.
        assert (await stub.BuildInstance(build(instance_uuid=kept.uuid))).instance.uuid == kept.uuid
        await stub.DeleteInstance(compute_pb2.DeleteInstanceRequest(instance_uuid=gone.uuid))
    await agent.stop(0)

    again = await start_compute()
    async with agent_stub(again) as stub:
        status = (await stub.GetMaintenance(compute_pb2.GetMaintenanceRequest())).status
        assert status.mode == host_pb2.MAINTENANCE_MODE_ENABLED
        assert status.started_at == since and status.instances == 1
        assert (await refusal(stub.BuildInstance(build()))).reason == "HOST_IN_MAINTENANCE"

        leave = compute_pb2.SetMaintenanceRequest(mode=host_pb2.MAINTENANCE_MODE_DISABLED)
        status = (await stub.SetMaintenance(leave)).status
        assert status.mode == host_pb2.MAINTENANCE_MODE_DISABLED
        assert not status.HasField("started_at")
        await stub.BuildInstance(build())
        assert len(await listed(stub)) == 2

        for mode in (0, 7):
            bad = compute_pb2.SetMaintenanceRequest(mode=mode)
            assert (await refusal(stub.SetMaintenance(bad))).violations[0].field == "mode"


async def test_an_instance_too_big_for_the_node_is_refused_saying_why(compute):
    # 65536 MiB x 1.5: 97536 MiB for instances, but no instance above the node's total.
    error = await refusal(compute.BuildInstance(build(memory_mb=70_000)))
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.reason == "INSUFFICIENT_RESOURCES"
    assert error.message == (
        "node kvm-1 cannot hold 70000 MiB of memory: one instance may use at most the node's "
        "total, 65536 MiB"
    )
    await compute.BuildInstance(build(memory_mb=65_536))
    error = await refusal(compute.BuildInstance(build(memory_mb=32_001)))
    assert "32000 MiB free ((total 65536 MiB - reserved 512 MiB) × allocation" in error.message  # noqa: RUF001
    assert len(await listed(compute)) == 1


async def test_an_instance_goes_to_a_node_only_if_its_flavor_asks_for_the_nodes_class(
    start_compute, compute, tmp_path
):
    agent = await start_compute(
        host="ironic-1",
        data_dir=tmp_path / "ironic",
        driver="fake-ironic",
        fake_nodes=2,
        fake_ironic_resource_class="CUSTOM_BAREMETAL_GOLD",
    )
    node = ironic_node_uuid("ironic-1", 0)
    gold = {"resources:CUSTOM_BAREMETAL_GOLD": "1"}
    async with agent_stub(agent) as stub:
        # An m1.medium: it would fit the server, but a bare-metal node offers no vCPUs.
        vm = await refusal(stub.BuildInstance(build(2, 4096, 40, nodename=node)))
        assert vm.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert vm.reason == "RESOURCE_CLASS_MISMATCH"
        assert "bare-metal server of resource class CUSTOM_BAREMETAL_GOLD" in vm.message
        assert vm.metadata["requested"] == ""
        other = await refusal(stub.BuildInstance(build(nodename=node, specs=BAREMETAL)))
        assert other.reason == "RESOURCE_CLASS_MISMATCH"
        assert "offers resource class CUSTOM_BAREMETAL_GOLD, not CUSTOM_BAREMETAL" in other.message
        assert await listed(stub) == []
        built = (await stub.BuildInstance(build(nodename=node, specs=gold))).instance
        assert dict(built.flavor_extra_specs) == gold
        listing = await stub.ListInstances(compute_pb2.ListInstancesRequest())
        assert [dict(i.flavor_extra_specs) for i in listing.instances] == [gold]
    assert agent.manager.trackers[node].snapshot().resource_class == "CUSTOM_BAREMETAL_GOLD"
    # A node of VMs takes no class request.
    on_vms = await refusal(compute.BuildInstance(build(specs=gold)))
    assert on_vms.reason == "RESOURCE_CLASS_MISMATCH"
    assert "node kvm-1 is a node of VMs" in on_vms.message
    assert await listed(compute) == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        pytest.param(compute_pb2.BuildInstanceRequest(), "instance", id="no-instance"),
        pytest.param(build(instance_uuid="not-a-uuid"), "instance.uuid", id="bad-uuid"),
        pytest.param(build(project_id=""), "instance.project_id", id="no-project"),
        pytest.param(build(project_id="p" * 256), "instance.project_id", id="long-project"),
        pytest.param(build(vcpus=-1), "instance.resources.vcpus", id="negative-vcpus"),
        pytest.param(build(memory_mb=2**43), "instance.resources.memory_mb", id="huge-memory"),
        pytest.param(build(disk_gb=-5), "instance.resources.disk_gb", id="negative-disk"),
        pytest.param(build(nodename="bad\nname"), "nodename", id="bad-nodename"),
        pytest.param(build(claim_id="c" * 65), "claim_id", id="long-claim"),
        pytest.param(
            build(specs={"resources:CUSTOM_gold": "1"}),
            "instance.flavor_extra_specs[resources:CUSTOM_gold]",
            id="bad-resource-class",
        ),
        pytest.param(
            build(specs={"resources:CUSTOM_A": "1", "resources:CUSTOM_B": "1"}),
            "instance.flavor_extra_specs",
            id="two-resource-classes",
        ),
        pytest.param(
            build(specs={f"k{i}": "v" for i in range(101)}),
            "instance.flavor_extra_specs",
            id="too-many-extra-specs",
        ),
        pytest.param(
            build(specs={"key": "bad\nvalue"}),
            "instance.flavor_extra_specs[key]",
            id="bad-extra-spec-value",
        ),
    ],
)
async def test_bad_build_input_is_refused_naming_the_field(compute, request_, field):
    error = await refusal(compute.BuildInstance(request_))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == [field]
    assert await listed(compute) == []


async def test_other_bad_input_names_the_field(compute):
    delete = compute.DeleteInstance(compute_pb2.DeleteInstanceRequest(instance_uuid="x"))
    assert (await refusal(delete)).violations[0].field == "instance_uuid"
    page = compute.ListInstances(compute_pb2.ListInstancesRequest(page_size=-1))
    assert (await refusal(page)).violations[0].field == "page_size"


async def test_a_build_on_a_node_this_host_does_not_have_is_not_found(compute):
    error = await refusal(compute.BuildInstance(build(nodename="kvm-9")))
    assert error.code is grpc.StatusCode.NOT_FOUND
    assert error.message == "no node 'kvm-9' on host kvm-1; nodes: kvm-1"
    listing = compute.ListInstances(compute_pb2.ListInstancesRequest(nodename="kvm-9"))
    assert await status_of(listing) is grpc.StatusCode.NOT_FOUND


async def test_instances_are_listed_in_pages_each_exactly_once(compute):
    built = sorted([(await compute.BuildInstance(build())).instance.uuid for _ in range(5)])
    seen, token = [], ""
    while True:
        page = await compute.ListInstances(
            compute_pb2.ListInstancesRequest(page_size=2, page_token=token)
        )
        seen += [i.uuid for i in page.instances]
        token = page.next_page_token
        if not token:
            break
    assert seen == built


async def test_concurrent_builds_never_overfill_a_node(start_compute):
    agent = await start_compute(fake_vcpus=8, cpu_allocation_ratio=1.0, reserved_host_memory_mb=0)
    async with agent_stub(agent) as stub:
        results = await asyncio.gather(
            *(stub.BuildInstance(build(vcpus=1)) for _ in range(12)), return_exceptions=True
        )
    built = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, aio.AioRpcError)]
    assert len(built) == 8 and len(refused) == 4
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert agent.manager.trackers["kvm-1"].usage().vcpus == 8


async def test_a_bare_metal_node_takes_one_instance_and_must_be_named(start_compute):
    agent = await start_compute(host="ironic-1", driver="fake-ironic", fake_nodes=3)
    node = ironic_node_uuid("ironic-1", 0)
    async with agent_stub(agent) as stub:
        unnamed = await refusal(stub.BuildInstance(build(specs=BAREMETAL)))
        assert unnamed.code is grpc.StatusCode.INVALID_ARGUMENT
        assert unnamed.violations[0].field == "nodename"

        built = (await stub.BuildInstance(build(nodename=node, specs=BAREMETAL))).instance
        assert (built.nodename, built.node_uuid) == (node, node)
        assert dict(built.flavor_extra_specs) == BAREMETAL
        second = await refusal(stub.BuildInstance(build(nodename=node, specs=BAREMETAL)))
        assert second.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "already taken" in second.message
        assert await listed(stub, node) == [built.uuid]
        assert await listed(stub, ironic_node_uuid("ironic-1", 1)) == []
    assert agent.manager.trackers[node].snapshot().used.vcpus == 16


async def test_the_local_driver_cannot_build_and_keeps_no_claim(start_compute):
    agent = await start_compute(driver="local")
    async with agent_stub(agent) as stub:
        error = await refusal(stub.BuildInstance(build(vcpus=1, memory_mb=1, disk_gb=0)))
        assert error.code is grpc.StatusCode.UNIMPLEMENTED
        assert "reports inventory only" in error.message
        assert await listed(stub) == []
    assert list(agent.state.all_instances()) == []


async def test_a_restarted_agent_keeps_its_node_uuids_and_instances(start_compute, tmp_path):
    ironic = {"host": "ironic-1", "driver": "fake-ironic", "fake_nodes": 2}
    kvm = {"data_dir": tmp_path / "kvm"}  # a fake node's uuid is made by the agent
    first, first_kvm = await start_compute(**ironic), await start_compute(**kvm)
    node = ironic_node_uuid("ironic-1", 1)
    async with agent_stub(first) as stub:
        built = (await stub.BuildInstance(build(nodename=node, specs=BAREMETAL))).instance
    kvm_uuid = first_kvm.manager.trackers["kvm-1"].node_uuid
    await first.stop(0)
    await first_kvm.stop(0)

    again, again_kvm = await start_compute(**ironic), await start_compute(**kvm)
    async with agent_stub(again) as stub:
        assert await listed(stub, node) == [built.uuid]
    assert again.manager.trackers[node].usage().vcpus == 16
    assert again_kvm.manager.trackers["kvm-1"].node_uuid == kvm_uuid


async def test_an_agent_refuses_a_data_directory_of_another_host(start_compute):
    await (await start_compute(host="kvm-1")).stop(0)
    with pytest.raises(StartupError, match="belongs to host 'kvm-1' but BERTH_HOST is 'kvm-2'"):
        await start_compute(host="kvm-2")


async def test_an_agent_refuses_to_start_when_the_reserve_cannot_fit_its_node(
    start_compute, tmp_path
):
    with pytest.raises(StartupError, match="BERTH_RESERVED_HOST_MEMORY_MB keeps back 512 MiB"):
        await start_compute(host="kvm-1", fake_memory_mb=256)
    # Bare metal reserves nothing, so the same sizes are fine there.
    await start_compute(
        host="ironic-1", driver="fake-ironic", fake_memory_mb=256, data_dir=tmp_path / "ironic"
    )


def grouped(group: str, policy: int) -> compute_pb2.BuildInstanceRequest:
    request = build()
    request.instance.server_group, request.instance.group_policy = group, policy
    return request


async def test_concurrent_builds_of_an_anti_affinity_group_admit_one_member_per_host(
    start_compute,
):
    # Two scheduler replicas may both choose this host for members of one group: the agent
    # is the last guard, as Nova's compute re-checks the group policy.
    agent = await start_compute(fake_cluster_members=3, driver="fake-cluster")
    anti = common_pb2.GROUP_POLICY_ANTI_AFFINITY
    async with agent_stub(agent) as stub:
        results = await asyncio.gather(
            *(stub.BuildInstance(grouped("web", anti)) for _ in range(3)), return_exceptions=True
        )
        refused = [from_rpc_error(r) for r in results if isinstance(r, aio.AioRpcError)]
        assert len(refused) == 2
        assert {e.reason for e in refused} == {"GROUP_POLICY_VIOLATION"}
        assert "anti-affinity server group 'web'" in refused[0].message
        # Another group, an affinity group and no group are not limited.
        await stub.BuildInstance(grouped("db", anti))
        affinity = common_pb2.GROUP_POLICY_AFFINITY
        await stub.BuildInstance(grouped("cache", affinity))
        await stub.BuildInstance(grouped("cache", affinity))
        await stub.BuildInstance(build())
        listed_groups = sorted(
            i.server_group
            for i in (await stub.ListInstances(compute_pb2.ListInstancesRequest())).instances
        )
    assert listed_groups == ["", "cache", "cache", "db", "web"]
