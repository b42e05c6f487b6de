"""Maintenance mode with real processes: a registry conducting the moves, the node service,
a scheduler on a real Redis and compute agents of every fake driver; host-update through
berth.client and the `berth` command, as an operator would.

After every story: each instance is on exactly one node, as the node service and the agents
both say."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from berth.client import (
    ComputeClient,
    HostClient,
    InvalidArgument,
    NodeClient,
    NotFound,
    PermissionDenied,
    RegistryClient,
)
from berth.v1 import host_pb2, scheduler_pb2

from tests.e2e.fleet import Fleet, built, eventually, room_for_small, spec
from tests.e2e.test_processes import BERTH
from tests.ports import free_port

pytestmark = pytest.mark.slow

Hints = scheduler_pb2.SchedulerHints
ENTER = host_pb2.MAINTENANCE_MODE_ENABLED
LEAVE = host_pb2.MAINTENANCE_MODE_DISABLED


@pytest.fixture
def fleet(tmp_path, redis_url, redis_prefix) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path, redis_url=redis_url, redis_prefix=redis_prefix)
    try:
        # Agents restarting in these stories stay "up" for the registry and the scheduler
        # meanwhile; the registry retries an unreachable agent for 30 s.
        fleet.services(wait=False, down_time=30, BERTH_MAINTENANCE_RETRY_FOR="30")
        yield fleet
    finally:
        fleet.close()


def launch(fleet: Fleet, agents: dict[str, tuple[str, dict[str, str]]], *, nodes: int) -> None:
    for host, (driver, env) in agents.items():
        fleet.agent(host, driver, wait=False, **env)
    fleet.scheduler("scheduler-1", wait=False)
    fleet.wait_serving()
    fleet.ready(nodes)


def rack(fleet: Fleet, name: str, *hosts: str) -> None:
    """An aggregate of `hosts`; returns once the scheduler sees each host in it."""
    with RegistryClient.connect(fleet.registry) as registry:
        registry.create_aggregate(name)
        for host in hosts:
            registry.add_aggregate_host(name, host)

    def seen() -> bool:
        for state in fleet.host_states():
            if state.host in hosts:
                assert name in state.aggregates, state
        return True

    eventually(seen)


def boot_on(fleet: Fleet, host: str, count: int = 1, flavor: str = "m1.small") -> list[str]:
    uuids = []
    for _ in range(count):
        (result,) = built(fleet.boot(spec(flavor, hints=Hints(force_hosts=[host]))))
        uuids.append(result.instance_uuid)
    return uuids


def update(fleet: Fleet, host: str, **fields: object) -> list[host_pb2.UpdateHostResponse]:
    with HostClient.connect(fleet.registry, timeout=None) as hosts:
        messages = list(hosts.update_host(host, **fields))
    assert messages and messages[-1].done, messages
    return messages


def agents_say(fleet: Fleet) -> dict[str, list[str]]:
    """instance uuid -> the hosts whose agents hold it."""
    where: dict[str, list[str]] = {}
    for host, address in fleet.agents.items():
        with ComputeClient.connect(address) as agent:
            for instance in agent.list_instances():
                where.setdefault(instance.uuid, []).append(host)
    return where


def settled(fleet: Fleet, expected: set[str]) -> dict[str, str]:
    """Once the node service caught up: every expected instance on exactly one node, the
    same host per the node service and the agents, nothing else anywhere -> uuid: host."""

    def agree() -> dict[str, str]:
        with NodeClient.connect(fleet.node) as nodes:
            listed = list(nodes.node_instances())
        twice = [u for u, n in Counter(i.uuid for i in listed).items() if n > 1]
        assert not twice, f"on two nodes per the node service: {twice}"
        by_node_service = {i.uuid: i.host for i in listed}
        by_agents = agents_say(fleet)
        assert all(len(h) == 1 for h in by_agents.values()), by_agents
        assert set(by_agents) == expected, (sorted(by_agents), sorted(expected))
        assert {u: h[0] for u, h in by_agents.items()} == by_node_service
        return by_node_service

    return eventually(agree)


def hosts_of(placed: dict[str, str], uuids: list[str]) -> set[str]:
    return {placed[u] for u in uuids}


# -- stories -----------------------------------------------------------------------------


def test_maintenance_moves_instances_of_every_driver_within_the_aggregate_only(fleet):
    launch(
        fleet,
        {
            "kvm-1": ("fake", {}),
            "kvm-2": ("fake", {}),
            "kvm-3": ("fake", {}),  # outside the aggregate, with room: receives nothing
            "vmware-1": ("fake-cluster", {"BERTH_FAKE_CLUSTER_MEMBERS": "2"}),
            "vmware-2": ("fake-cluster", {"BERTH_FAKE_CLUSTER_MEMBERS": "2"}),
            "ironic-1": ("fake-ironic", {"BERTH_FAKE_NODES": "2"}),
            "ironic-2": ("fake-ironic", {"BERTH_FAKE_NODES": "2"}),
        },
        nodes=9,
    )
    rack(fleet, "rack", "kvm-1", "kvm-2", "vmware-1", "vmware-2", "ironic-1", "ironic-2")
    kvm, vmware = (boot_on(fleet, h, 2) for h in ("kvm-1", "vmware-1"))
    metal = boot_on(fleet, "ironic-1", 2, flavor="baremetal")
    everything = set(kvm + vmware + metal)
    settled(fleet, everything)

    for host in ("kvm-1", "vmware-1", "ironic-1"):
        last = update(fleet, host, maintenance_mode=ENTER)[-1]
        assert (last.moved, last.remaining, list(last.failures)) == (2, 0, []), last
        assert last.status == host_pb2.HOST_STATUS_DISABLED and last.maintenance_mode == ENTER

    placed = settled(fleet, everything)
    # Each to a host of its own kind in the aggregate: bare metal to bare metal of its
    # resource class (the instances keep their flavor's extra specs), whole.
    assert hosts_of(placed, kvm) == {"kvm-2"}
    assert hosts_of(placed, vmware) == {"vmware-2"}
    assert hosts_of(placed, metal) == {"ironic-2"}
    with NodeClient.connect(fleet.node) as nodes:
        metal_nodes = {i.nodename for i in nodes.node_instances(host="ironic-2")}
    assert len(metal_nodes) == 2
    with RegistryClient.connect(fleet.registry) as registry:
        service = registry.get_service(host="kvm-1", binary="berth-compute")
    assert service.disabled and service.disabled_reason == "maintenance"

    # Leaving maintenance enables the service; nothing moves back.
    last = update(fleet, "kvm-1", maintenance_mode=LEAVE)[-1]
    assert (last.status, last.maintenance_mode) == (host_pb2.HOST_STATUS_ENABLED, LEAVE)
    with RegistryClient.connect(fleet.registry) as registry:
        assert not registry.get_service(host="kvm-1", binary="berth-compute").disabled
    with ComputeClient.connect(fleet.agents["kvm-1"]) as agent:
        assert agent.get_maintenance().mode == LEAVE
    time.sleep(1)
    assert settled(fleet, everything) == placed
    # And kvm-1 takes new instances again.
    assert boot_on(fleet, "kvm-1", flavor="m1.tiny")


def test_the_cli_shows_progress_and_what_stayed_and_asking_again_moves_the_rest(fleet):
    launch(
        fleet,
        {
            "kvm-1": ("fake", {}),
            "kvm-2": ("fake", room_for_small(3)),
            "kvm-3": ("fake", room_for_small(3)),
        },
        nodes=3,
    )
    rack(fleet, "rack", "kvm-1", "kvm-2")
    instances = boot_on(fleet, "kvm-1", 5)
    settled(fleet, set(instances))

    command = [BERTH, "--registry", fleet.registry, "host-update", "kvm-1"]
    done = subprocess.run(
        [*command, "--maintenance", "enable", "--json"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr  # some stayed
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[-1]["done"] and not any(e["done"] for e in events[:-1])
    last = events[-1]
    assert (last["moved"], last["remaining"], len(last["failures"])) == (3, 0, 2), last
    stayed = {f["instance_uuid"] for f in last["failures"]}
    assert all("no room for it in the aggregate" in f["reason"] for f in last["failures"])
    placed = settled(fleet, set(instances))
    assert {u for u, h in placed.items() if h == "kvm-1"} == stayed
    assert hosts_of(placed, [u for u in instances if u not in stayed]) == {"kvm-2"}
    # migration-list shows each move with its state, where it went or why it stayed.
    listed = subprocess.run(
        [
            BERTH,
            "--registry",
            fleet.registry,
            "--node",
            fleet.node,
            "--json",
            "migration-list",
            "--host",
            "kvm-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    migrations = {m["instance_uuid"]: m for m in json.loads(listed.stdout)}
    assert set(migrations) == set(instances)
    assert {u for u, m in migrations.items() if m["state"] == "failed"} == stayed
    done = [m for u, m in migrations.items() if u not in stayed]
    assert all(m["state"] == "done" and m["dest_host"] == "kvm-2" for m in done), done
    assert all("no room" in migrations[u]["reason"] for u in stayed)

    # kvm-3 joins the aggregate; asking again (plain output, not a terminal) moves the rest.
    rack(fleet, "rack-b", "kvm-1", "kvm-3")
    again = subprocess.run(
        [*command, "--maintenance", "enable"], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert "kvm-1: 5/5 moved, 0 stayed, 0 remaining" in again.stderr
    assert "maintenance_mode" in again.stdout and "enabled" in again.stdout
    placed = settled(fleet, set(instances))
    assert hosts_of(placed, sorted(stayed)) == {"kvm-3"}
    assert "kvm-1" not in placed.values()

    # Asking a third time changes nothing and says so.
    last = update(fleet, "kvm-1", maintenance_mode=ENTER)[-1]
    assert (last.moved, last.remaining, list(last.failures)) == (5, 0, [])
    assert settled(fleet, set(instances)) == placed


def test_moves_resume_after_an_agent_restart_mid_way_and_lose_or_double_nothing(fleet):
    launch(fleet, {"kvm-1": ("fake", {}), "kvm-2": ("fake", {})}, nodes=2)
    rack(fleet, "rack", "kvm-1", "kvm-2")
    instances = boot_on(fleet, "kvm-1", 20, flavor="m1.tiny")
    settled(fleet, set(instances))
    count = len(instances)

    progress: list[host_pb2.UpdateHostResponse] = []
    failed: list[BaseException] = []

    def follow() -> None:
        try:
            progress.extend(update(fleet, "kvm-1", maintenance_mode=ENTER))
        except BaseException as exc:
            failed.append(exc)

    follower = threading.Thread(target=follow)
    follower.start()
    eventually(lambda: held_by(fleet, "kvm-2") >= 3, 30)
    # The destination freezes mid-way (maybe mid-build), dies without a goodbye, and comes
    # back on the same data directory and address.
    fleet.send("kvm-2", signal.SIGSTOP)
    assert 0 < held_by(fleet, "kvm-1") < count  # the pass is under way
    fleet.send("kvm-2", signal.SIGKILL)
    fleet.agent("kvm-2", "fake")
    follower.join(90)
    assert not follower.is_alive() and not failed, failed
    last = progress[-1]
    assert (last.moved, last.remaining, list(last.failures)) == (count, 0, []), last
    assert [m.moved for m in progress] == sorted(m.moved for m in progress)
    # While kvm-2 was away the progress said so: which host, why, until when.
    waits = [m for m in progress if m.waiting]
    assert waits, [m.waiting for m in progress]
    assert all("kvm-2" in m.waiting and m.HasField("waiting_until") for m in waits), waits
    assert not last.waiting
    placed = settled(fleet, set(instances))
    assert set(placed.values()) == {"kvm-2"}

    # The source restarts still in maintenance; asking again finds nothing left to move.
    fleet.send("kvm-1", signal.SIGKILL)
    fleet.agent("kvm-1", "fake")
    with ComputeClient.connect(fleet.agents["kvm-1"]) as agent:
        assert agent.get_maintenance().mode == ENTER
    last = update(fleet, "kvm-1", maintenance_mode=ENTER)[-1]
    assert (last.moved, last.remaining, list(last.failures)) == (count, 0, [])
    assert settled(fleet, set(instances)) == placed


def held_by(fleet: Fleet, host: str) -> int:
    """How many instances the host's agent holds."""
    with ComputeClient.connect(fleet.agents[host]) as agent:
        return len(list(agent.list_instances()))


TOKENS = """
[[tokens]]
name = "ops"
token = "ops-secret"
roles = ["admin"]

[[tokens]]
name = "viewer"
token = "viewer-secret"
roles = ["reader"]
"""


def test_host_update_is_admin_only_and_bad_requests_are_refused(tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    fleet = Fleet(tmp_path)
    fleet.registry = f"127.0.0.1:{free_port()}"
    try:
        fleet.start(
            "registry",
            "services.registry",
            fleet.registry,
            BERTH_DATABASE_URL=f"sqlite:///{tmp_path}/registry.sqlite3",
            BERTH_AUTH_FILE=str(tokens),
            BERTH_TOKEN="ops-secret",
        )
        with HostClient.connect(fleet.registry, token="viewer-secret") as reader:
            with pytest.raises(PermissionDenied):
                list(reader.update_host("registry", maintenance_mode=ENTER))
            with pytest.raises(PermissionDenied):
                list(reader.update_host("registry", status=host_pb2.HOST_STATUS_DISABLED))
        with HostClient.connect(fleet.registry, token="ops-secret") as admin:
            with pytest.raises(NotFound) as unknown:
                list(admin.update_host("nowhere", maintenance_mode=ENTER))
            assert unknown.value.reason == "HOST_NOT_FOUND"
            with pytest.raises(InvalidArgument) as both:
                list(
                    admin.update_host(
                        "nowhere", status=host_pb2.HOST_STATUS_ENABLED, maintenance_mode=ENTER
                    )
                )
            assert [v.field for v in both.value.violations] == ["status"]
        # The command line says the same, in one line, and exits 1.
        command = [BERTH, "--registry", fleet.registry, "--token", "ops-secret", "host-update"]
        done = subprocess.run(
            [*command, "nowhere", "--maintenance", "enable"], capture_output=True, text=True
        )
        assert done.returncode == 1 and done.stderr.startswith("ERROR (NotFound): "), done.stderr
        usage = subprocess.run(
            [*command, "nowhere", "--status", "enable", "--maintenance", "enable"],
            capture_output=True,
            text=True,
        )
        assert usage.returncode == 2 and "not allowed with argument" in usage.stderr
        assert "PermissionDenied" not in fleet.log("registry")  # refusals are not errors
        assert "UpdateHost" in fleet.log("registry")  # but they are logged
    finally:
        fleet.close()
