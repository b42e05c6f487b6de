"""Real processes: registry, node service, schedulers on a real Redis and compute agents of
every fake driver; instances booted and deleted through berth.client.servers over real
gRPC, as a user would.

Each test is one user story on a fleet of its own (a few small agents, heartbeats every
0.5 s, a host down after DOWN_TIME s without one)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from berth.cli.scheduler import free
from berth.client import (
    BootResult,
    ComputeClient,
    NodeClient,
    RegistryClient,
    ResourceExhausted,
)
from berth.client.servers import delete
from berth.v1 import common_pb2, scheduler_pb2

from tests.e2e.fleet import (
    DOWN_TIME,
    RESERVED_MB,
    SMALL_MB,
    Fleet,
    built,
    eventually,
    room_for_small,
    spec,
)
from tests.redis_keys import delete_keys

pytestmark = pytest.mark.slow

Hints = scheduler_pb2.SchedulerHints


@pytest.fixture
def fleet(tmp_path, redis_url, redis_prefix) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path, redis_url=redis_url, redis_prefix=redis_prefix)
    try:
        fleet.services(wait=False)
        yield fleet
    finally:
        fleet.close()


def launch(
    fleet: Fleet,
    agents: dict[str, tuple[str, dict[str, str]]],
    *,
    nodes: int,
    schedulers: int = 1,
    **scheduler_env: str,
) -> None:
    """Start the agents ({host: (driver, env)}) and schedulers together; return once every
    scheduler can place on all `nodes` nodes."""
    for host, (driver, env) in agents.items():
        fleet.agent(host, driver, wait=False, **env)
    for index in range(1, schedulers + 1):
        fleet.scheduler(f"scheduler-{index}", wait=False, **scheduler_env)
    fleet.wait_serving()
    fleet.ready(nodes)


def states_of(fleet: Fleet, host: str, count: int = 1) -> list[scheduler_pb2.HostState]:
    """The scheduler's HostStates of `host`'s nodes; an AssertionError (for eventually())
    while fewer than `count` are listed, as for a moment after Redis lost its cache."""
    states = [s for s in fleet.host_states() if s.host == host]
    assert len(states) == count, f"{len(states)} of {count} nodes of {host} listed"
    return states


def no_room_on(fleet: Fleet, host: str, nodename: str) -> bool:
    """The scheduler's HostState says nothing more fits on the node (pending or reported)."""
    states = [s for s in fleet.host_states() if (s.host, s.nodename) == (host, nodename)]
    assert len(states) == 1, f"{host}/{nodename} not listed"
    assert free(states[0]) == (0, 0, 0), states[0]
    return True


def used(state: scheduler_pb2.HostState) -> tuple[int, int, int]:
    return state.used.vcpus, state.used.memory_mb, state.used.disk_gb


def filter_counts(error: ResourceExhausted) -> dict[str, int]:
    """{filter: nodes it removed} of a no-valid-host answer."""
    return {k: int(v) for k, v in error.metadata.items() if k not in ("nodes", "placed")}


# -- stories -----------------------------------------------------------------------------------


def test_boots_reach_agents_of_every_driver_and_bare_metal_is_taken_whole(fleet):
    launch(
        fleet,
        {
            "kvm-1": ("fake", {}),
            "vmware-1": ("fake-cluster", {"BERTH_FAKE_CLUSTER_MEMBERS": "2"}),
            "ironic-1": ("fake-ironic", {"BERTH_FAKE_NODES": "2"}),
        },
        nodes=4,
    )
    placed: dict[str, str] = {}
    # Forced onto each host in turn.
    for host in ("kvm-1", "vmware-1"):
        (result,) = built(fleet.boot(spec("m1.small", hints=Hints(force_hosts=[host]))))
        assert result.host == host and result.attempts == 1
        placed[result.instance_uuid] = host
    # A flavor of VMs never goes to bare metal, even forced there: a bare-metal node offers
    # its resource class (fake-ironic's default, CUSTOM_BAREMETAL), not vCPUs.
    with pytest.raises(ResourceExhausted) as refused:
        fleet.boot(spec("m1.small", hints=Hints(force_hosts=["ironic-1"])))
    assert filter_counts(refused.value).get("ResourceClassFilter") == 2, refused.value
    # The baremetal flavor asks for that class: a whole node.
    (metal,) = built(fleet.boot(spec("baremetal", hints=Hints(force_hosts=["ironic-1"]))))
    assert metal.host == "ironic-1"
    placed[metal.instance_uuid] = "ironic-1"
    # The bare-metal node is taken whole: nothing left on it, pending claim or reported.
    eventually(lambda: no_room_on(fleet, "ironic-1", metal.nodename), 5)
    # A second bare-metal boot lands on the other node ...
    (second,) = built(fleet.boot(spec("baremetal", hypervisor_type="ironic")))
    assert second.host == "ironic-1" and second.nodename != metal.nodename
    eventually(lambda: no_room_on(fleet, "ironic-1", second.nodename), 5)
    placed[second.instance_uuid] = "ironic-1"
    # ... and a third finds none, naming what removed each of the four nodes.
    with pytest.raises(ResourceExhausted) as exhausted:
        fleet.boot(spec("baremetal", hypervisor_type="ironic"))
    error = exhausted.value
    assert error.reason == "NO_VALID_HOST", error
    assert sum(filter_counts(error).values()) == 4, error  # kvm-1, the cluster, both taken
    # Without hints: VMs go to the KVM node and the cluster only.
    for result in built(fleet.boot(spec("m1.tiny", count=3))):
        assert result.host in ("kvm-1", "vmware-1"), result
        placed[result.instance_uuid] = result.host

    def listed() -> dict[str, str]:
        shown = {s["uuid"]: s["host"] for s in fleet.berth("server-list")}
        assert shown == placed
        return shown

    eventually(listed)
    assert fleet.instances() == placed

    # Once reported, each bare-metal node's whole machine counts as used.
    def metal_full() -> bool:
        for state in states_of(fleet, "ironic-1", 2):
            assert state.num_instances == 1 and not state.pending_claims, state
            assert used(state) == (state.total.vcpus, state.total.memory_mb, state.total.disk_gb)
        return True

    eventually(metal_full)


def test_claims_are_confirmed_by_the_agents_report(fleet):
    launch(fleet, {"kvm-1": ("fake", {})}, nodes=1)
    results = built(fleet.boot(spec("m1.small", count=2)))
    assert {r.host for r in results} == {"kvm-1"}

    def confirmed() -> scheduler_pb2.HostState:
        (state,) = states_of(fleet, "kvm-1")
        assert not state.pending_claims, state.pending_claims
        assert (state.claimed.vcpus, state.claimed.memory_mb, state.claimed.disk_gb) == (0, 0, 0)
        assert state.num_instances == 2
        assert used(state) == (2, RESERVED_MB + 2 * SMALL_MB, 2 * 20)
        return state

    eventually(confirmed)
    # The agent built each instance under the claim the scheduler made for it.
    with ComputeClient.connect(fleet.agents["kvm-1"]) as agent:
        claims = {i.uuid: i.claim_id for i in agent.list_instances()}
    assert claims == {r.instance_uuid: r.claim_id for r in results}


def test_anti_affinity_spreads_a_group_over_hosts_and_refuses_a_member_too_many(fleet):
    launch(fleet, {f"kvm-{i}": ("fake", {}) for i in (1, 2, 3)}, nodes=3)
    group = Hints(group="web", group_policy=common_pb2.GROUP_POLICY_ANTI_AFFINITY)
    results = built(fleet.boot(spec("m1.tiny", count=3, hints=group)))
    assert sorted(r.host for r in results) == ["kvm-1", "kvm-2", "kvm-3"]
    with pytest.raises(ResourceExhausted) as exhausted:
        fleet.boot(spec("m1.tiny", hints=group))
    assert filter_counts(exhausted.value) == {"ServerGroupAntiAffinityFilter": 3}, exhausted.value
    # Another group is not held back by this one.
    other = Hints(group="db", group_policy=common_pb2.GROUP_POLICY_ANTI_AFFINITY)
    assert len(built(fleet.boot(spec("m1.tiny", count=3, hints=other)))) == 3


def test_a_host_that_goes_down_or_is_disabled_receives_no_more_instances(fleet):
    launch(fleet, {f"kvm-{i}": ("fake", {}) for i in (1, 2, 3)}, nodes=3)
    fleet.send("kvm-3", signal.SIGSTOP)  # frozen: its sockets stay open, it says nothing
    stopped = time.monotonic()
    with RegistryClient.connect(fleet.registry) as registry:
        eventually(
            lambda: not registry.get_service(host="kvm-3", binary="berth-compute").up,
            DOWN_TIME + 5,
        )
    # The scheduler hears it from the registry's watch stream, within the liveness window.
    eventually(lambda: not states_of(fleet, "kvm-3")[0].service_up, 3)
    assert time.monotonic() - stopped < DOWN_TIME + 4
    for _ in range(3):
        with fleet.scheduler_client() as scheduler:
            selections = scheduler.select_destinations(spec("m1.tiny", count=2))
            claims = [c for s in selections for c in (s.primary, *s.alternates)]
            scheduler.release_claims(c.claim_id for c in claims)
        assert "kvm-3" not in {c.host for c in claims}
    for result in built(fleet.boot(spec("m1.tiny", count=4))):
        assert result.host in ("kvm-1", "kvm-2") and result.attempts == 1, result
    # An operator disables kvm-2: it stops receiving instances too.
    with RegistryClient.connect(fleet.registry) as registry:
        registry.disable_service(host="kvm-2", binary="berth-compute", reason="maintenance")
    eventually(lambda: states_of(fleet, "kvm-2")[0].service_disabled, 3)
    for result in built(fleet.boot(spec("m1.tiny", count=3))):
        assert result.host == "kvm-1", result
    with pytest.raises(ResourceExhausted) as exhausted:
        fleet.boot(spec("m1.tiny", hints=Hints(force_hosts=["kvm-2"])))
    assert filter_counts(exhausted.value) == {"SchedulerHints": 2, "ComputeFilter": 1}
    assert not [u for u, h in fleet.instances().items() if h == "kvm-3"]


def test_scheduling_goes_on_when_redis_is_flushed_and_the_cache_comes_back(fleet):
    launch(fleet, {f"kvm-{i}": ("fake", {}) for i in (1, 2)}, nodes=2)
    booted = built(fleet.boot(spec("m1.tiny", count=2)))
    delete_keys(fleet.redis_url, fleet.redis_prefix)  # the scheduler's cache is flushed
    # At once: the scheduler places from its mirror and puts the nodes it claims on back.
    booted += built(fleet.boot(spec("m1.tiny", count=2)))
    booted += built(fleet.boot(spec("m1.tiny", count=2)))

    def rebuilt() -> bool:
        states = fleet.host_states()
        assert sorted(s.host for s in states) == ["kvm-1", "kvm-2"]
        assert all(s.service_up and not s.service_disabled for s in states), states
        assert sum(s.num_instances for s in states) == len(booted)
        assert not [c for s in states for c in s.pending_claims]
        return True

    eventually(rebuilt)
    eventually(lambda: "lost the HostState cache" in fleet.log("scheduler-1"))
    assert sorted(fleet.instances()) == sorted(r.instance_uuid for r in booted)


def test_anti_affinity_still_holds_after_redis_is_flushed(fleet):
    launch(fleet, {f"kvm-{i}": ("fake", {}) for i in (1, 2)}, nodes=2)
    group = Hints(group="web", group_policy=common_pb2.GROUP_POLICY_ANTI_AFFINITY)
    members = built(fleet.boot(spec("m1.tiny", count=2, hints=group)))
    assert sorted(r.host for r in members) == ["kvm-1", "kvm-2"]
    eventually(lambda: len(fleet.instances()) == 2, 10)
    delete_keys(fleet.redis_url, fleet.redis_prefix)  # the scheduler's cache is flushed
    eventually(lambda: "resync done" in fleet.log("scheduler-1").split("lost the HostState")[-1], 5)
    fleet.ready(2)
    try:
        extra = fleet.boot(spec("m1.tiny", hints=group))
    except ResourceExhausted as exc:
        assert filter_counts(exc) == {"ServerGroupAntiAffinityFilter": 2}, exc
        return
    raise AssertionError(f"a third member of an anti-affinity group over two hosts: {extra}")


@pytest.mark.parametrize(
    "max_attempts",
    [
        pytest.param("1", id="primaries-only"),
        pytest.param("3", id="with-alternates"),
    ],
)
def test_two_scheduler_replicas_under_concurrent_boots_fill_the_room_exactly(fleet, max_attempts):
    # Three KVM nodes with room for four m1.small each and two bare-metal nodes (one
    # baremetal each): fourteen rooms, asked for by 24 boots at once through two schedulers,
    # one in four of the baremetal flavor.
    per_kvm, kvm_hosts, metal_nodes = 4, 3, 2
    agents = {f"kvm-{i}": ("fake", room_for_small(per_kvm)) for i in range(1, kvm_hosts + 1)}
    agents["ironic-1"] = ("fake-ironic", {"BERTH_FAKE_NODES": str(metal_nodes)})
    launch(
        fleet, agents, nodes=kvm_hosts + metal_nodes, schedulers=2, BERTH_MAX_ATTEMPTS=max_attempts
    )
    rooms = per_kvm * kvm_hosts + metal_nodes
    schedulers = list(fleet.schedulers)

    def one(index: int) -> BootResult | ResourceExhausted:
        flavor = "baremetal" if index % 4 == 0 else "m1.small"
        try:
            (result,) = fleet.boot(spec(flavor), schedulers[index % 2])
        except ResourceExhausted as exc:
            return exc
        return result

    with ThreadPoolExecutor(24) as pool:
        outcomes = list(pool.map(one, range(24)))
    ok = [o for o in outcomes if isinstance(o, BootResult) and o.ok]
    failed_builds = [o for o in outcomes if isinstance(o, BootResult) and not o.ok]
    no_host = [o for o in outcomes if isinstance(o, ResourceExhausted)]
    # A claim is the right to build: no agent refused one.
    assert not failed_builds, [(r.host, r.error) for r in failed_builds]
    assert {e.reason for e in no_host} <= {"NO_VALID_HOST"}
    # No node over-committed, as the boots saw it ...
    by_node = Counter((r.host, r.nodename) for r in ok)
    assert all(n <= per_kvm for (h, _), n in by_node.items() if h.startswith("kvm")), by_node
    assert all(n == 1 for (h, _), n in by_node.items() if h == "ironic-1"), by_node
    # ... as the agents see it ...
    for host in agents:
        with ComputeClient.connect(fleet.agents[host]) as agent:
            held = Counter(i.nodename for i in agent.list_instances())
        most = per_kvm if host.startswith("kvm") else 1
        assert max(held.values(), default=0) <= most, (host, held)
    # ... and as the node service sees it.
    with NodeClient.connect(fleet.node) as nodes:
        for node in nodes.list_nodes():
            total, used_now = node.total, node.used
            assert used_now.vcpus <= total.vcpus * node.cpu_allocation_ratio, node
            assert used_now.memory_mb <= total.memory_mb * node.ram_allocation_ratio, node
            assert used_now.disk_gb <= total.disk_gb * node.disk_allocation_ratio, node

    # Every claim was confirmed by its node's report or released: none is left pending.
    def settled(scheduler: str) -> bool:
        states = fleet.host_states(scheduler)
        assert not [c for s in states for c in s.pending_claims], scheduler
        assert sum(s.num_instances for s in states) == len(ok)
        return True

    for scheduler in schedulers:
        eventually(lambda scheduler=scheduler: settled(scheduler), 10)
    # Every room taken, and no "no valid host" while room remained: the bare-metal rooms
    # by the baremetal flavor, the others by m1.small.
    assert len(ok) == rooms, (len(ok), "\n".join(e.message for e in no_host))
    assert sum(1 for r in ok if r.host == "ironic-1") == metal_nodes, by_node


def test_deleting_an_instance_frees_its_room(fleet):
    launch(fleet, {"kvm-1": ("fake", room_for_small(1))}, nodes=1)
    (first,) = built(fleet.boot(spec("m1.small")))
    with pytest.raises(ResourceExhausted):
        fleet.boot(spec("m1.small"))
    with (
        NodeClient.connect(fleet.node) as nodes,
        RegistryClient.connect(fleet.registry) as registry,
    ):
        eventually(lambda: list(nodes.node_instances(instance_uuids=[first.instance_uuid])), 10)
        (deleted,) = delete([first.instance_uuid], node=nodes, registry=registry)
    assert deleted.ok and deleted.host == "kvm-1", deleted

    def boots() -> BootResult:
        try:
            (result,) = fleet.boot(spec("m1.small"))
        except ResourceExhausted as exc:
            raise AssertionError(exc.message) from None
        return result

    again = eventually(boots)
    assert again.ok and again.host == "kvm-1"
    eventually(lambda: list(fleet.instances()) == [again.instance_uuid], 10)


def test_instances_deleted_before_any_report_named_them_release_their_claims(fleet):
    # The node service is frozen while five instances are built and deleted: the agent's
    # snapshots that named their claims are replaced by newer ones before any is sent.
    launch(fleet, {"kvm-1": ("fake", room_for_small(5))}, nodes=1)
    fleet.send("node", signal.SIGSTOP)
    try:
        booted = built(fleet.boot(spec("m1.small", count=5)))
        with ComputeClient.connect(fleet.agents["kvm-1"]) as agent:
            for result in booted:
                agent.delete_instance(result.instance_uuid)
            assert list(agent.list_instances()) == []
    finally:
        fleet.send("node", signal.SIGCONT)

    # The agent's next report says which claims ended: the room is free again at once,
    # not after BERTH_CLAIM_TTL (5 minutes).
    def released() -> bool:
        (state,) = states_of(fleet, "kvm-1")
        assert not state.pending_claims, [c.instance_uuid for c in state.pending_claims]
        assert state.num_instances == 0
        return True

    eventually(released)
    again = built(fleet.boot(spec("m1.small", count=5)))
    assert {r.host for r in again} == {"kvm-1"}


def test_simultaneous_group_boots_over_two_replicas_keep_the_group_policies(fleet):
    agents = {f"kvm-{i}": ("fake", room_for_small(5)) for i in range(1, 5)}
    launch(fleet, agents, nodes=4, schedulers=2, BERTH_HOST_SUBSET_SIZE="4")
    schedulers = list(fleet.schedulers)

    def boots(hints: Hints, count: int) -> list[BootResult]:
        def one(index: int) -> BootResult:
            (result,) = fleet.boot(spec("m1.small", hints=hints), schedulers[index % 2])
            return result

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(one, range(count)))

    together = built(boots(Hints(group="db", group_policy=common_pb2.GROUP_POLICY_AFFINITY), 5))
    assert len({r.host for r in together}) == 1, Counter(r.host for r in together)
    apart = boots(Hints(group="web", group_policy=common_pb2.GROUP_POLICY_ANTI_AFFINITY), 3)
    hosts = [r.host for r in apart if r.ok]
    assert hosts and len(hosts) == len(set(hosts)), [(r.host, r.error) for r in apart]
