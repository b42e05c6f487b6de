"""host-update in-process: a registry (on each database backend) conducting maintenance moves
through a real scheduler (on Redis), a real node service and compute agents of the fake
driver, all over real channels.

Agents here hold 4 one-vCPU instances each (no over-commit, nothing reserved). The registry's
clock stands still: every agent that registered stays up, and no lease expires unless a test
moves the clock."""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import (
    common_pb2,
    compute_pb2,
    compute_pb2_grpc,
    host_pb2,
    host_pb2_grpc,
    node_pb2,
    registry_pb2,
    registry_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from grpc import aio
from sqlalchemy.ext.asyncio import async_sessionmaker

from services.compute.app import Agent, start_agent
from services.compute.settings import ComputeSettings
from services.registry.app import Registry, start_registry
from services.registry.settings import RegistrySettings
from services.registry.store import maintenance as store
from services.scheduler.app import Scheduler, start_scheduler
from services.scheduler.settings import SchedulerSettings
from tests.integration.scheduler.cloud import eventually
from tests.ports import free_port

ENTER = host_pb2.MAINTENANCE_MODE_ENABLED
LEAVE = host_pb2.MAINTENANCE_MODE_DISABLED
ROOM = 4  # one-vCPU instances per agent


@dataclass
class Stack:
    registry: Registry
    node_url: str
    scheduler: Scheduler
    tmp_path: Path
    agents: dict[str, Agent] = field(default_factory=dict)
    channels: list[aio.Channel] = field(default_factory=list)
    aggregates: dict[str, set[str]] = field(default_factory=dict)  # host -> its aggregates

    def channel(self, address: str) -> aio.Channel:
        channel = aio.insecure_channel(address)
        self.channels.append(channel)
        return channel

    @property
    def hosts(self) -> host_pb2_grpc.HostServiceStub:
        return host_pb2_grpc.HostServiceStub(self.channel(self.registry.address))

    @property
    def registry_stub(self) -> registry_pb2_grpc.RegistryServiceStub:
        return registry_pb2_grpc.RegistryServiceStub(self.channel(self.registry.address))

    @property
    def scheduler_stub(self) -> scheduler_pb2_grpc.SchedulerServiceStub:
        return scheduler_pb2_grpc.SchedulerServiceStub(self.channel(self.scheduler.address))

    def agent(self, host: str) -> compute_pb2_grpc.ComputeAgentServiceStub:
        return compute_pb2_grpc.ComputeAgentServiceStub(self.channel(self.agents[host].address))

    def sessions(self) -> async_sessionmaker:
        return async_sessionmaker(self.registry.engine, expire_on_commit=False)

    async def start_agent(self, host: str, **overrides: object) -> Agent:
        values: dict[str, object] = {
            "host": host,
            "listen": "127.0.0.1:0",
            "data_dir": self.tmp_path / host,
            "registry_url": self.registry.address,
            "node_url": self.node_url,
            "update_resources_interval": 3600,
            "fake_vcpus": ROOM,
            "fake_memory_mb": ROOM * 1024,
            "fake_disk_gb": ROOM * 10,
            "cpu_allocation_ratio": 1.0,
            "ram_allocation_ratio": 1.0,
            "reserved_host_memory_mb": 0,
        }
        settings = ComputeSettings(**(values | overrides))
        agent = await start_agent(settings, report_self=True)
        self.agents[host] = agent

        async def registered() -> bool:
            try:
                service = await self.service(host)
            except aio.AioRpcError:
                return False
            return service.endpoint == settings.endpoint(agent.port)

        await eventually(registered, 60, f"{host} registered")
        return agent

    async def aggregate(self, name: str, *hosts: str) -> None:
        stub = self.registry_stub
        await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name=name))
        for host in hosts:
            self.aggregates.setdefault(host, set()).add(name)
            await stub.AddAggregateHost(
                registry_pb2.AddAggregateHostRequest(
                    aggregate=registry_pb2.AggregateRef(name=name), host=host
                )
            )

    async def build(self, host: str, count: int = 1, **instance: object) -> list[str]:
        """Instances built straight on `host`'s agent (as a boot would, without a claim)."""
        uuids = []
        for _ in range(count):
            request = compute_pb2.BuildInstanceRequest(
                instance=node_pb2.Instance(
                    uuid=str(uuidlib.uuid4()),
                    project_id="demo",
                    user_id="alice",
                    resources=common_pb2.Resources(vcpus=1, memory_mb=1024, disk_gb=10),
                    **instance,
                )
            )
            uuids.append((await self.agent(host).BuildInstance(request)).instance.uuid)
        return uuids

    async def on(self, host: str) -> set[str]:
        response = await self.agent(host).ListInstances(compute_pb2.ListInstancesRequest())
        return {i.uuid for i in response.instances}

    async def everywhere(self) -> dict[str, list[str]]:
        """instance uuid -> the hosts whose agents hold it."""
        where: dict[str, list[str]] = {}
        for host in self.agents:
            for uuid in await self.on(host):
                where.setdefault(uuid, []).append(host)
        return where

    async def ready(self, nodes: int, instances: int = 0) -> None:
        """The scheduler sees `nodes` usable nodes holding `instances` in all, and each
        host's aggregates."""

        async def seen() -> bool:
            listed = await self.scheduler_stub.ListHostStates(scheduler_pb2.ListHostStatesRequest())
            states = listed.host_states
            usable = [s for s in states if s.service_up and not s.service_disabled]
            grouped = all(set(s.aggregates) == self.aggregates.get(s.host, set()) for s in states)
            held = sum(s.num_instances for s in states)
            return len(usable) == nodes and held == instances and grouped

        await eventually(seen, 60, f"{nodes} nodes, {instances} instances in the scheduler")

    async def update(self, host: str, **fields: object) -> list[host_pb2.UpdateHostResponse]:
        request = host_pb2.UpdateHostRequest(host=host, **fields)
        return [m async for m in self.hosts.UpdateHost(request, timeout=60)]

    async def service(self, host: str) -> registry_pb2.Service:
        ref = registry_pb2.ServiceRef(
            key=registry_pb2.ServiceKey(host=host, binary="berth-compute")
        )
        response = await self.registry_stub.GetService(registry_pb2.GetServiceRequest(service=ref))
        return response.service

    async def agent_mode(self, host: str) -> int:
        status = await self.agent(host).GetMaintenance(compute_pb2.GetMaintenanceRequest())
        return status.status.mode


@pytest.fixture
async def stack(start, start_node, redis_url, redis_prefix, tmp_path) -> AsyncIterator[Stack]:
    node = await start_node()
    port = free_port()
    registry = await start(
        node_url=node.address,
        scheduler_url=f"127.0.0.1:{port}",
        maintenance_retry_for=1.5,
    )
    scheduler = await start_scheduler(
        SchedulerSettings(
            listen=f"127.0.0.1:{port}",
            data_dir=tmp_path,
            registry_url=registry.address,
            node_url=node.address,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            cache_check_interval=0.2,
        ),
        report_self=False,
        wait_ready_s=10,
    )
    world = Stack(registry, node.address, scheduler, tmp_path)
    try:
        yield world
    finally:
        for agent in world.agents.values():
            await agent.stop(0)
        await scheduler.stop(0)
        for channel in world.channels:
            await channel.close()


async def three_hosts(stack: Stack, *, in_rack: tuple[str, ...] = ("kvm-1", "kvm-2")) -> None:
    """kvm-1 .. kvm-3 up; the hosts `in_rack` share the aggregate `rack`."""
    for host in ("kvm-1", "kvm-2", "kvm-3"):
        await stack.start_agent(host)
    if in_rack:
        await stack.aggregate("rack", *in_rack)


async def copy_on(stack: Stack, host: str, instance_uuid: str) -> None:
    """What a move cut short after its build leaves: a copy of the instance on `host`."""
    copy = compute_pb2.BuildInstanceRequest(
        instance=node_pb2.Instance(
            uuid=instance_uuid,
            project_id="demo",
            user_id="alice",
            resources=common_pb2.Resources(vcpus=1, memory_mb=1024, disk_gb=10),
        )
    )
    await stack.agent(host).BuildInstance(copy)


def final(messages: list[host_pb2.UpdateHostResponse]) -> host_pb2.UpdateHostResponse:
    assert messages and messages[-1].done, messages
    assert not any(m.done for m in messages[:-1]), messages
    return messages[-1]


async def refusal(coro) -> object:
    with pytest.raises(aio.AioRpcError) as err:
        await coro
    return from_rpc_error(err.value)


# -- stories -----------------------------------------------------------------------------


async def test_maintenance_moves_every_instance_within_the_aggregate_and_leaving_moves_none_back(
    stack,
):
    await three_hosts(stack)
    moving = await stack.build("kvm-1", 3)
    await stack.ready(3, 3)

    messages = await stack.update("kvm-1", maintenance_mode=ENTER)
    last = final(messages)
    assert (last.moved, last.remaining, list(last.failures)) == (3, 0, [])
    assert last.status == host_pb2.HOST_STATUS_DISABLED
    assert last.maintenance_mode == ENTER
    # Progress came as it went: the counts only ever move forward.
    assert [m.moved for m in messages] == sorted(m.moved for m in messages)
    # Within the aggregate only: kvm-3 had room too.
    assert await stack.on("kvm-2") == set(moving)
    assert await stack.on("kvm-1") == set() and await stack.on("kvm-3") == set()
    service = await stack.service("kvm-1")
    assert service.disabled and service.disabled_reason == "maintenance"
    assert await stack.agent_mode("kvm-1") == ENTER

    left = final(await stack.update("kvm-1", maintenance_mode=LEAVE))
    assert (left.status, left.maintenance_mode) == (host_pb2.HOST_STATUS_ENABLED, LEAVE)
    assert not (await stack.service("kvm-1")).disabled
    assert await stack.agent_mode("kvm-1") == LEAVE
    await asyncio.sleep(0.3)
    assert await stack.on("kvm-2") == set(moving) and await stack.on("kvm-1") == set()


async def test_instances_without_room_stay_with_their_reason_and_asking_again_moves_them(stack):
    await three_hosts(stack)
    moving = await stack.build("kvm-1", 3)
    await stack.build("kvm-2", ROOM - 1)  # room for one more
    await stack.ready(3, 3 + ROOM - 1)

    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, last.remaining, len(last.failures)) == (1, 0, 2)
    stayed = {f.instance_uuid for f in last.failures}
    assert stayed < set(moving) and await stack.on("kvm-1") == stayed
    for failure in last.failures:
        assert "no room for it in the aggregate" in failure.reason, failure.reason
    assert last.maintenance_mode == ENTER and (await stack.service("kvm-1")).disabled

    # kvm-3 joins the aggregate: asking again moves the two that stayed, and only them.
    stack.aggregates["kvm-3"] = {"rack"}
    await stack.registry_stub.AddAggregateHost(
        registry_pb2.AddAggregateHostRequest(
            aggregate=registry_pb2.AggregateRef(name="rack"), host="kvm-3"
        )
    )
    await stack.ready(2, 3 + ROOM - 1)  # kvm-1 is disabled now
    again = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (again.moved, again.remaining, list(again.failures)) == (3, 0, [])
    assert await stack.on("kvm-3") == stayed
    where = await stack.everywhere()
    assert all(len(where[u]) == 1 for u in moving), where


async def test_a_host_in_no_aggregate_keeps_its_instances_and_says_why(stack):
    await three_hosts(stack, in_rack=())
    kept = await stack.build("kvm-1", 2)
    await stack.ready(3, 2)

    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, last.remaining) == (0, 0)
    assert {f.instance_uuid for f in last.failures} == set(kept)
    assert all("in no aggregate" in f.reason for f in last.failures)
    assert await stack.on("kvm-1") == set(kept)
    assert last.maintenance_mode == ENTER


async def test_a_destination_in_maintenance_refuses_and_the_next_one_takes_it(stack):
    await three_hosts(stack, in_rack=("kvm-1", "kvm-2", "kvm-3"))
    (moving,) = await stack.build("kvm-1")
    await stack.build("kvm-3", 2)  # kvm-2 has the most room: the scheduler's first choice
    await stack.ready(3, 3)
    # kvm-2's agent is in maintenance, but the scheduler has not heard (its service is up).
    enter = compute_pb2.SetMaintenanceRequest(mode=ENTER)
    await stack.agent("kvm-2").SetMaintenance(enter)

    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, list(last.failures)) == (1, [])
    assert await stack.on("kvm-3") >= {moving} and await stack.on("kvm-2") == set()


async def test_anti_affinity_holds_during_moves_and_the_moved_instance_keeps_its_group(stack):
    await three_hosts(stack, in_rack=("kvm-1", "kvm-2", "kvm-3"))
    web = {"server_group": "web", "group_policy": common_pb2.GROUP_POLICY_ANTI_AFFINITY}
    (moving,) = await stack.build("kvm-1", **web)
    await stack.build("kvm-2", **web)
    await stack.build("kvm-3", 2)  # kvm-2 has more room, but holds a member of the group
    await stack.ready(3, 4)

    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, list(last.failures)) == (1, [])
    listed = await stack.agent("kvm-3").ListInstances(compute_pb2.ListInstancesRequest())
    (moved,) = [i for i in listed.instances if i.uuid == moving]
    assert (moved.server_group, moved.group_policy) == (
        "web",
        common_pb2.GROUP_POLICY_ANTI_AFFINITY,
    )


async def test_a_moved_instance_keeps_its_flavors_extra_specs_which_choose_where_it_goes(stack):
    await three_hosts(stack, in_rack=("kvm-1", "kvm-2", "kvm-3"))
    # Only kvm-3 is in an aggregate with ssd=true.
    stub = stack.registry_stub
    fast = registry_pb2.AggregateRef(name="fast")
    await stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name="fast"))
    await stub.SetAggregateMetadata(
        registry_pb2.SetAggregateMetadataRequest(aggregate=fast, metadata={"ssd": "true"})
    )
    await stub.AddAggregateHost(registry_pb2.AddAggregateHostRequest(aggregate=fast, host="kvm-3"))
    stack.aggregates["kvm-3"].add("fast")
    specs = {"ssd": "true", "hw:cpu_policy": "dedicated"}
    (moving,) = await stack.build("kvm-1", flavor_extra_specs=specs)
    await stack.build("kvm-3", 2)  # kvm-2 has more room, but its aggregates set no ssd
    await stack.ready(3, 3)

    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, list(last.failures)) == (1, [])
    listed = await stack.agent("kvm-3").ListInstances(compute_pb2.ListInstancesRequest())
    (moved,) = [i for i in listed.instances if i.uuid == moving]
    assert dict(moved.flavor_extra_specs) == specs
    assert await stack.on("kvm-2") == set()


async def test_a_move_left_selected_or_built_is_finished_by_the_next_request(stack):
    await three_hosts(stack)
    selected, built = await stack.build("kvm-1", 2)
    await stack.ready(3, 2)
    # As if a registry died mid-pass: one move has its destination and claim, the other
    # was built on kvm-2 and not yet deleted from kvm-1.
    spec = scheduler_pb2.RequestSpec(
        flavor=scheduler_pb2.Flavor(vcpus=1, memory_mb=1024, root_gb=10),
        num_instances=1,
        project_id="demo",
        instance_uuids=[selected],
        hints=scheduler_pb2.SchedulerHints(same_aggregate_as_host="kvm-1", ignore_hosts=["kvm-1"]),
    )
    response = await stack.scheduler_stub.SelectDestinations(
        scheduler_pb2.SelectDestinationsRequest(spec=spec)
    )
    claim = response.selections[0].primary
    assert claim.host == "kvm-2"
    await copy_on(stack, "kvm-2", built)
    now = stack.registry.liveness.clock()
    sessions = stack.sessions()
    async with sessions() as session, session.begin():
        store.add(session, "kvm-1", now)
    async with sessions() as session, session.begin():
        await store.set_enabled(session, "kvm-1", True, now)
        store.add_moves(session, "kvm-1", [selected, built], now)
    async with sessions() as session, session.begin():
        for row in await store.moves(session, "kvm-1"):
            if row.instance_uuid == selected:
                await store.save_move(
                    session, row.id, now, state=store.SELECTED, destination_host="kvm-2",
                    destination_nodename="kvm-2", claim_id=claim.claim_id,
                )  # fmt: skip
            else:
                await store.save_move(
                    session, row.id, now, state=store.BUILT, destination_host="kvm-2",
                    destination_nodename="kvm-2",
                )  # fmt: skip

    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, last.remaining, list(last.failures)) == (2, 0, [])
    assert await stack.everywhere() == {selected: ["kvm-2"], built: ["kvm-2"]}
    listed = await stack.agent("kvm-2").ListInstances(compute_pb2.ListInstancesRequest())
    claims = {i.uuid: i.claim_id for i in listed.instances}
    assert claims[selected] == claim.claim_id  # built under the claim recorded before


async def test_leaving_finishes_a_move_under_way_and_waits_for_its_source_to_do_so(stack):
    await three_hosts(stack)
    (moving,) = await stack.build("kvm-1")
    await stack.ready(3, 1)
    # A move cut short after the build on kvm-2: the instance is on both hosts.
    await copy_on(stack, "kvm-2", moving)
    now = stack.registry.liveness.clock()
    sessions = stack.sessions()
    async with sessions() as session, session.begin():
        store.add(session, "kvm-1", now)
    async with sessions() as session, session.begin():
        await store.set_enabled(session, "kvm-1", True, now)
        store.add_moves(session, "kvm-1", [moving], now, state=store.BUILT)
    async with sessions() as session, session.begin():
        (row,) = await store.moves(session, "kvm-1")
        await store.save_move(session, row.id, now, destination_host="kvm-2")
    await stack.update("kvm-1", status=host_pb2.HOST_STATUS_DISABLED, disabled_reason="maintenance")

    await stack.agents["kvm-1"].stop(0)
    error = await refusal(stack.update("kvm-1", maintenance_mode=LEAVE))
    assert error.code is grpc.StatusCode.UNAVAILABLE and error.reason == "MOVES_UNFINISHED"
    assert moving in error.message
    assert (await stack.service("kvm-1")).disabled  # out of service while on two hosts

    await stack.start_agent("kvm-1")
    left = final(await stack.update("kvm-1", maintenance_mode=LEAVE))
    assert (left.status, left.maintenance_mode, left.moved) == (
        host_pb2.HOST_STATUS_ENABLED,
        LEAVE,
        1,
    )
    assert await stack.everywhere() == {moving: ["kvm-2"]}


async def test_an_unreachable_destination_holds_the_move_and_asking_again_resumes_it(stack):
    await three_hosts(stack)
    (moving,) = await stack.build("kvm-1")
    await stack.ready(3, 1)
    await stack.agents["kvm-2"].stop(0)  # still up for the registry: its clock stands still

    held = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert held.moved == 0 and [f.instance_uuid for f in held.failures] == [moving]
    assert "cannot build it on kvm-2 yet" in held.failures[0].reason
    assert await stack.on("kvm-1") == {moving}

    await stack.start_agent("kvm-2")  # the same data directory, a new port
    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, list(last.failures)) == (1, [])
    assert await stack.everywhere() == {moving: ["kvm-2"]}


async def test_the_moves_go_on_when_the_caller_leaves(stack):
    await three_hosts(stack)
    moving = await stack.build("kvm-1", 4)
    await stack.ready(3, 4)
    call = stack.hosts.UpdateHost(host_pb2.UpdateHostRequest(host="kvm-1", maintenance_mode=ENTER))
    await call.read()
    call.cancel()

    async def all_moved() -> bool:
        return await stack.on("kvm-2") == set(moving)

    await eventually(all_moved)
    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, last.remaining, list(last.failures)) == (4, 0, [])


async def test_a_second_replica_follows_the_pass_instead_of_starting_another(
    stack, start, caplog, monkeypatch
):
    await three_hosts(stack)
    moving = await stack.build("kvm-1", ROOM)
    await stack.ready(3, ROOM)
    twin = await start(
        node_url=stack.node_url,
        scheduler_url=stack.scheduler.address,
        maintenance_retry_for=1.5,
    )
    twin_hosts = host_pb2_grpc.HostServiceStub(stack.channel(twin.address))
    request = host_pb2.UpdateHostRequest(host="kvm-1", maintenance_mode=ENTER)
    caplog.set_level(logging.INFO, logger="services.registry.maintenance")
    # The destination builds only once the twin has been asked: the first pass is certainly
    # still running then, however slowly the twin's call arrives on a busy machine.
    twin_asked = asyncio.Event()
    manager = stack.agents["kvm-2"].manager
    build = manager.build_instance

    async def build_once_the_twin_is_asked(*args, **kwargs):
        await twin_asked.wait()
        return await build(*args, **kwargs)

    monkeypatch.setattr(manager, "build_instance", build_once_the_twin_is_asked)

    async def follow_on_twin() -> list[host_pb2.UpdateHostResponse]:
        await eventually(lambda: "kvm-1" in stack.registry.maintenance._passes)
        call = twin_hosts.UpdateHost(request, timeout=60)
        answers = []
        while (answer := await call.read()) != aio.EOF:
            answers.append(answer)
            twin_asked.set()  # the twin answers once it follows the pass
        return answers

    first, second = await asyncio.gather(
        stack.update("kvm-1", maintenance_mode=ENTER), follow_on_twin()
    )
    assert final(first).moved == final(second).moved == ROOM
    starts = [r for r in caplog.records if r.getMessage() == "maintenance pass starts"]
    assert [r.owner for r in starts] == [stack.registry.maintenance.owner]
    assert await stack.on("kvm-2") == set(moving)


async def test_a_pass_whose_registry_died_is_resumed_once_its_lease_expired(stack, start):
    await three_hosts(stack)
    moving = await stack.build("kvm-1", 2)
    await stack.ready(3, 2)
    # A registry that died holding the lease, before moving anything.
    now = stack.registry.liveness.clock()
    sessions = stack.sessions()
    async with sessions() as session, session.begin():
        store.add(session, "kvm-1", now)
    async with sessions() as session, session.begin():
        await store.set_enabled(session, "kvm-1", True, now)
        await store.take_lease(session, "kvm-1", "dead-registry", now, now + timedelta(seconds=5))
    # A registry whose resumer looks every second, once the lease has expired.
    resumer = await start(
        node_url=stack.node_url, scheduler_url=stack.scheduler.address, maintenance_lease=1
    )
    await asyncio.sleep(1.5)
    assert await stack.on("kvm-1") == set(moving)  # the lease still holds
    stack.registry.liveness.clock.advance(10)  # the fixtures' registries share the clock

    async def pass_ended() -> bool:
        async with sessions() as session:
            row = await store.get(session, "kvm-1")
        return row is not None and not row.moving and row.lease_owner is None

    await eventually(pass_ended)
    assert await stack.everywhere() == {u: ["kvm-2"] for u in moving}
    assert "kvm-1" not in resumer.maintenance._passes


async def test_a_stopping_registry_ends_the_stream_and_another_resumes_the_pass(
    stack, database, clock
):
    await three_hosts(stack)
    moving = await stack.build("kvm-1", 2)
    await stack.ready(3, 2)
    await stack.agents["kvm-2"].stop(0)  # the pass waits for it (30 s) when it stops
    settings = RegistrySettings(
        listen="127.0.0.1:0",
        database_url=database.url,
        data_dir=stack.tmp_path,
        report_interval=10,
        sweep_interval=3600,
        watch_poll_interval=0.05,
        node_url=stack.node_url,
        scheduler_url=stack.scheduler.address,
        maintenance_retry_for=30,
    )
    doomed = await start_registry(settings, clock=clock, report_self=False)
    try:
        hosts = host_pb2_grpc.HostServiceStub(stack.channel(doomed.address))
        call = hosts.UpdateHost(host_pb2.UpdateHostRequest(host="kvm-1", maintenance_mode=ENTER))
        first = await call.read()
        assert first.remaining == 2 and not first.done
        started = asyncio.get_running_loop().time()
        await doomed.stop(1.0)
        error = await refusal(call.read())
        assert error.code is grpc.StatusCode.UNAVAILABLE and error.reason == "SHUTTING_DOWN"
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await doomed.stop(0)
    async with stack.sessions()() as session:
        row = await store.get(session, "kvm-1")
    assert row is not None and row.moving and row.lease_owner is None  # to be resumed

    await stack.start_agent("kvm-2")
    last = final(await stack.update("kvm-1", maintenance_mode=ENTER))
    assert (last.moved, last.remaining, list(last.failures)) == (2, 0, [])
    assert await stack.everywhere() == {u: ["kvm-2"] for u in moving}


# -- host status and bad input -----------------------------------------------------------


async def test_status_enables_and_disables_the_service_but_not_out_of_maintenance(stack):
    await stack.start_agent("kvm-1")
    (message,) = await stack.update(
        "kvm-1", status=host_pb2.HOST_STATUS_DISABLED, disabled_reason="new disks"
    )
    assert message.done and message.status == host_pb2.HOST_STATUS_DISABLED
    assert message.maintenance_mode == LEAVE
    assert (await stack.service("kvm-1")).disabled_reason == "new disks"
    (message,) = await stack.update("kvm-1", status=host_pb2.HOST_STATUS_ENABLED)
    assert message.status == host_pb2.HOST_STATUS_ENABLED
    assert not (await stack.service("kvm-1")).disabled

    final(await stack.update("kvm-1", maintenance_mode=ENTER))  # nothing to move
    error = await refusal(stack.update("kvm-1", status=host_pb2.HOST_STATUS_ENABLED))
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    assert error.reason == "HOST_IN_MAINTENANCE"
    assert (await stack.service("kvm-1")).disabled


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param(
            {"status": host_pb2.HOST_STATUS_ENABLED, "maintenance_mode": ENTER},
            "status",
            id="status-and-maintenance",
        ),
        pytest.param({}, "status", id="neither"),
        pytest.param({"status": 9}, "status", id="unknown-status"),
        pytest.param({"maintenance_mode": 9}, "maintenance_mode", id="unknown-mode"),
        pytest.param(
            {"status": host_pb2.HOST_STATUS_ENABLED, "disabled_reason": "why"},
            "disabled_reason",
            id="reason-when-enabling",
        ),
        pytest.param({"host": "", "maintenance_mode": ENTER}, "host", id="no-host"),
    ],
)
async def test_bad_host_updates_are_invalid_naming_the_field(hosts, fields, field):
    request = host_pb2.UpdateHostRequest(**({"host": "kvm-1"} | fields))
    error = await refusal(_drain(hosts.UpdateHost(request)))
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == [field]


async def test_an_unknown_host_is_not_found(hosts):
    request = host_pb2.UpdateHostRequest(host="nowhere", maintenance_mode=ENTER)
    error = await refusal(_drain(hosts.UpdateHost(request)))
    assert error.code is grpc.StatusCode.NOT_FOUND and error.reason == "HOST_NOT_FOUND"


async def _drain(call) -> list:
    return [m async for m in call]
