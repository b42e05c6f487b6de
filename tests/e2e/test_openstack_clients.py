"""Nova's own clients against berth-api: the real, unmodified `openstack` command
(python-openstackclient) and openstacksdk, over real HTTP, on a real `berth up` stack
(registry, node service, scheduler, three agents). Every answer is checked against what
Berth's own gRPC services say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest
from berth.cli.health import SERVING, health_status
from berth.client import NodeClient, RegistryClient
from openstack import exceptions as sdk_errors

from tests import processes
from tests.e2e.berth_up import Stack, berth_up
from tests.e2e.fleet import eventually
from tests.ports import free_port

pytestmark = pytest.mark.slow

OPENSTACK = str(Path(sys.executable).parent / "openstack")
# A blank local root disk: Berth has no images, and openstackclient asks for a boot source.
BOOT_FROM_FLAVOR = ["--block-device", "source_type=blank,destination_type=local,boot_index=0"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with berth_up(tmp_path_factory.mktemp("openstack") / "data") as running:
        yield running


@pytest.fixture(scope="module")
def registry(stack: Stack) -> Iterator[RegistryClient]:
    with RegistryClient.connect(stack.registry) as client:
        yield client


@pytest.fixture(scope="module")
def node(stack: Stack) -> Iterator[NodeClient]:
    with NodeClient.connect(stack.servers["node"]) as client:
        yield client


def osc(
    endpoint: str,
    *args: str,
    check: bool = True,
    auth: tuple[str, ...] = ("--os-auth-type", "none"),
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [OPENSTACK, *auth, "--os-endpoint", endpoint, "--os-identity-api-version", "3", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("OS_")},
    )
    if check:
        assert done.returncode == 0, f"openstack {' '.join(args)}:\n{done.stderr}"
    return done


def osc_json(stack: Stack, *args: str) -> Any:
    return json.loads(osc(stack.compute_api, *args, "-f", "json").stdout)


def test_compute_service_list_is_the_registrys(stack, registry):
    listed = osc_json(stack, "compute", "service", "list", "--long")
    assert {(s["ID"], s["Binary"], s["Host"], s["Zone"], s["State"]) for s in listed} == {
        (s.uuid, s.binary, s.host, s.availability_zone, "up" if s.up else "down")
        for s in registry.list_services()
    }
    only = osc_json(stack, "compute", "service", "list", "--host", "kvm-1")
    assert [(s["Binary"], s["Host"]) for s in only] == [("berth-compute", "kvm-1")]


def test_compute_service_set_disables_enables_and_forces_down(stack, registry):
    osc(
        stack.compute_api,
        "compute",
        "service",
        "set",
        "--disable",
        "--disable-reason",
        "disk swap",
        "vmware-1",
        "berth-compute",
    )
    service = registry.get_service(host="vmware-1", binary="berth-compute")
    assert (service.disabled, service.disabled_reason) == (True, "disk swap")
    listed = osc_json(stack, "compute", "service", "list", "--long", "--host", "vmware-1")
    assert (listed[0]["Status"], listed[0]["Disabled Reason"]) == ("disabled", "disk swap")

    osc(stack.compute_api, "compute", "service", "set", "--enable", "vmware-1", "berth-compute")
    assert not registry.get_service(host="vmware-1", binary="berth-compute").disabled

    osc(stack.compute_api, "compute", "service", "set", "--down", "vmware-1", "berth-compute")
    fenced = registry.get_service(host="vmware-1", binary="berth-compute")
    assert fenced.forced_down and not fenced.up
    osc(stack.compute_api, "compute", "service", "set", "--up", "vmware-1", "berth-compute")
    assert not registry.get_service(host="vmware-1", binary="berth-compute").forced_down


def test_compute_service_delete_removes_a_host_and_is_refused_while_it_has_instances(
    stack, registry
):
    ghost = registry.register_service("ghost-1", "berth-compute").service
    osc(stack.compute_api, "compute", "service", "delete", ghost.uuid)
    assert "ghost-1" not in {s.host for s in registry.list_services()}

    made = osc_json(
        stack,
        "server",
        "create",
        "--flavor",
        "m1.tiny",
        "--nic",
        "none",
        *BOOT_FROM_FLAVOR,
        "pinned",
    )
    host = osc_json(stack, "server", "show", made["id"])["OS-EXT-SRV-ATTR:host"]
    busy = registry.get_service(host=host, binary="berth-compute")
    refused = osc(stack.compute_api, "compute", "service", "delete", busy.uuid, check=False)
    assert refused.returncode == 1
    assert "409" in refused.stderr or "onflict" in refused.stderr, refused.stderr
    assert registry.get_service(uuid=busy.uuid).uuid == busy.uuid
    osc(stack.compute_api, "server", "delete", made["id"])


def test_hypervisors_are_the_node_services_nodes(stack, node, registry):
    nodes = {n.uuid: n for n in node.list_nodes()}
    listed = osc_json(stack, "hypervisor", "list")
    assert {h["ID"]: h["Hypervisor Hostname"] for h in listed} == {
        u: n.nodename for u, n in nodes.items()
    }
    long = osc_json(stack, "hypervisor", "list", "--long")
    assert {h["ID"]: h["Hypervisor Type"] for h in long} == {
        u: n.hypervisor_type for u, n in nodes.items()
    }

    kvm = next(n for n in nodes.values() if n.host == "kvm-1")
    shown = osc_json(stack, "hypervisor", "show", kvm.uuid)
    service = registry.get_service(host="kvm-1", binary="berth-compute")
    assert (shown["hypervisor_hostname"], shown["service_id"], shown["state"]) == (
        kvm.nodename,
        service.uuid,
        "up",
    )

    # Below 2.88 the resource fields and the statistics are there, as in Nova.
    stats = osc_json(stack, "--os-compute-api-version", "2.87", "hypervisor", "stats", "show")
    totals = node.statistics()
    assert (stats["count"], stats["vcpus"], stats["memory_mb"]) == (
        totals.count,
        totals.total.vcpus,
        totals.total.memory_mb,
    )
    old = osc_json(stack, "--os-compute-api-version", "2.53", "hypervisor", "show", kvm.uuid)
    assert (old["vcpus"], old["memory_mb"]) == (kvm.total.vcpus, kvm.total.memory_mb)


def test_hosts_list_show_and_set(stack, registry):
    listed = osc_json(stack, "host", "list")
    assert {"Host Name": "kvm-1", "Service": "compute", "Zone": "nova"} in listed
    shown = osc_json(stack, "host", "show", "kvm-1")
    assert [row["Project"] for row in shown][:3] == ["(total)", "(used_now)", "(used_max)"]
    rows = registry.hosts.describe_host("kvm-1")
    assert shown[0]["CPU"] == rows[0].resources.vcpus

    osc(stack.compute_api, "host", "set", "--disable", "kvm-1")
    assert registry.get_service(host="kvm-1", binary="berth-compute").disabled
    osc(stack.compute_api, "host", "set", "--enable", "kvm-1")
    assert not registry.get_service(host="kvm-1", binary="berth-compute").disabled

    missing = osc(stack.compute_api, "host", "show", "nowhere-7", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr, missing.stderr


def test_aggregates_from_create_to_delete(stack, registry):
    made = osc_json(stack, "aggregate", "create", "--zone", "az-os", "racks-os")
    assert registry.get_aggregate("racks-os").availability_zone == "az-os"
    osc(stack.compute_api, "aggregate", "set", "--property", "ssd=true", "racks-os")
    osc(stack.compute_api, "aggregate", "add", "host", "racks-os", "ironic-1")
    aggregate = registry.get_aggregate("racks-os")
    assert (list(aggregate.hosts), aggregate.metadata["ssd"]) == (["ironic-1"], "true")
    shown = osc_json(stack, "aggregate", "show", "racks-os")
    assert (shown["id"], shown["uuid"], shown["hosts"]) == (
        made["id"],
        aggregate.uuid,
        ["ironic-1"],
    )
    assert "racks-os" in {a["Name"] for a in osc_json(stack, "aggregate", "list")}
    zone = registry.get_service(host="ironic-1", binary="berth-compute").availability_zone
    assert zone == "az-os"

    refused = osc(stack.compute_api, "aggregate", "delete", "racks-os", check=False)
    assert refused.returncode == 1  # hosts first, as in Nova
    osc(stack.compute_api, "aggregate", "remove", "host", "racks-os", "ironic-1")
    osc(stack.compute_api, "aggregate", "delete", "racks-os")
    assert "racks-os" not in {a.name for a in registry.list_aggregates()}


def test_availability_zones_with_their_hosts_and_services(stack, registry):
    zones = osc_json(stack, "availability", "zone", "list", "--compute", "--long")
    computes = {s.host for s in registry.list_services() if s.binary == "berth-compute"}
    assert {z["Host Name"] for z in zones if z["Zone Name"] == "nova"} >= computes - {"ironic-1"}
    assert all(z["Zone Status"] == "available" for z in zones)


def test_flavors(stack):
    listed = osc_json(stack, "flavor", "list")
    assert {f["Name"]: (f["VCPUs"], f["RAM"], f["Disk"]) for f in listed}["m1.small"] == (
        1,
        2048,
        20,
    )
    shown = osc_json(stack, "flavor", "show", "m1.medium")
    assert (shown["id"], shown["vcpus"], shown["ram"]) == ("3", 2, 4096)


def test_servers_boot_through_the_scheduler_and_agents_keep_their_names_and_delete(stack, node):
    made = osc_json(
        stack,
        "server",
        "create",
        "--flavor",
        "m1.small",
        "--nic",
        "none",
        *BOOT_FROM_FLAVOR,
        "--min",
        "2",
        "--max",
        "2",
        "web-os",
    )
    instances = eventually(
        lambda: [i for i in node.node_instances() if i.name.startswith("web-os-")]
    )
    assert sorted(i.name for i in instances) == ["web-os-1", "web-os-2"]
    assert made["id"] in {i.uuid for i in instances}
    assert all(i.flavor_name == "m1.small" and i.resources.memory_mb == 2048 for i in instances)

    listed = osc_json(stack, "server", "list", "--long")
    by_name = {s["Name"]: s for s in listed}
    assert {"web-os-1", "web-os-2"} <= set(by_name)
    assert by_name["web-os-1"]["Status"] == "ACTIVE"
    first = next(i for i in instances if i.name == "web-os-1")
    assert by_name["web-os-1"]["Host"] == first.nodename
    shown = osc_json(stack, "server", "show", first.uuid)
    assert (shown["name"], shown["OS-EXT-SRV-ATTR:host"], shown["status"]) == (
        "web-os-1",
        first.host,
        "ACTIVE",
    )
    # When its agent accepted the build, as the node service keeps it.
    assert first.HasField("created_at")
    assert shown["created"] == first.created_at.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")

    osc(stack.compute_api, "server", "delete", *(i.uuid for i in instances))
    eventually(lambda: not [i for i in node.node_instances() if i.name.startswith("web-os-")])


def test_errors_come_back_in_novas_words(stack):
    too_new = osc(
        stack.compute_api, "--os-compute-api-version", "2.200", "hypervisor", "list", check=False
    )
    assert too_new.returncode != 0
    nowhere = osc(
        stack.compute_api,
        "server",
        "create",
        "--flavor",
        "m1.small",
        "--nic",
        "none",
        *BOOT_FROM_FLAVOR,
        "--availability-zone",
        "no-such-zone",
        "lost",
        check=False,
    )
    assert nowhere.returncode == 1 and "400" in nowhere.stderr, nowhere.stderr
    assert "unknown availability zone 'no-such-zone'" in nowhere.stderr
    # 40 x 16 GB is more than the whole demo fleet: nothing is built, and Nova's words say so.
    no_room = osc(
        stack.compute_api,
        "server",
        "create",
        "--flavor",
        "m1.xlarge",
        "--nic",
        "none",
        *BOOT_FROM_FLAVOR,
        "--min",
        "40",
        "--max",
        "40",
        "huge",
        check=False,
    )
    assert no_room.returncode == 1 and "No valid host" in no_room.stderr, no_room.stderr
    assert not [s for s in osc_json(stack, "server", "list") if s["Name"].startswith("huge")]


def test_openstacksdk_drives_berth(stack, registry, node):
    conn = openstack.connection.Connection(
        auth_type="none", auth={"endpoint": stack.compute_api}, identity_api_version="3"
    )
    try:
        services = {(s.binary, s.host) for s in conn.compute.services()}
        assert services == {(s.binary, s.host) for s in registry.list_services()}
        nodes = {h.name for h in conn.compute.hypervisors(details=True)}
        assert nodes == {n.nodename for n in node.list_nodes()}

        aggregate = conn.compute.create_aggregate(name="sdk-agg", availability_zone="az-sdk")
        conn.compute.add_host_to_aggregate(aggregate, "vmware-1")
        conn.compute.set_aggregate_metadata(aggregate, gpu="none")
        stored = registry.get_aggregate("sdk-agg")
        assert (list(stored.hosts), dict(stored.metadata)) == (
            ["vmware-1"],
            {"availability_zone": "az-sdk", "gpu": "none"},
        )
        conn.compute.remove_host_from_aggregate(aggregate, "vmware-1")
        conn.compute.delete_aggregate(aggregate)
        assert "sdk-agg" not in {a.name for a in registry.list_aggregates()}

        server = conn.compute.create_server(name="sdk-vm", flavor_id="1", networks="none")
        found = eventually(lambda: [i for i in node.node_instances() if i.uuid == server.id])
        assert found[0].name == "sdk-vm"
        assert conn.compute.get_server(server.id).status == "ACTIVE"
        conn.compute.delete_server(server)
        eventually(lambda: not [i for i in node.node_instances() if i.uuid == server.id])
        with pytest.raises(sdk_errors.NotFoundException):
            conn.compute.get_server(server.id)
    finally:
        conn.close()


def test_tokens_and_roles_apply_to_the_compute_api(stack, tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        '[[tokens]]\nname = "ops"\ntoken = "ops-secret"\nroles = ["admin"]\n\n'
        '[[tokens]]\nname = "watcher"\ntoken = "look-only"\nroles = ["reader"]\n'
    )
    address = f"127.0.0.1:{free_port()}"
    env = os.environ | {
        "BERTH_LISTEN": address,
        "BERTH_AUTH_FILE": str(tokens),
        "BERTH_REGISTRY_URL": stack.registry,
        "BERTH_NODE_URL": stack.servers["node"],
        "BERTH_SCHEDULER_URL": stack.servers["scheduler"],
    }
    log = (tmp_path / "api.log").open("wb")
    api = processes.spawn(
        [sys.executable, "-m", "services.api"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://{address}/v2.1"
    try:
        eventually(lambda: health_status(f"http://{address}/readyz") == SERVING)

        def as_(token: str, *args: str) -> subprocess.CompletedProcess[str]:
            auth = ("--os-auth-type", "admin_token", "--os-token", token)
            return osc(endpoint, *args, auth=auth, check=False)

        assert as_("look-only", "compute", "service", "list").returncode == 0
        refused = as_("look-only", "aggregate", "create", "readers-cannot")
        assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
        assert as_("ops-secret", "aggregate", "create", "ops-can").returncode == 0
        assert as_("ops-secret", "aggregate", "delete", "ops-can").returncode == 0
        unknown = as_("guess", "compute", "service", "list")
        assert unknown.returncode == 1 and "401" in unknown.stderr, unknown.stderr
        anonymous = osc(endpoint, "compute", "service", "list", check=False)
        assert anonymous.returncode == 1
    finally:
        processes.kill(api)
        log.close()
