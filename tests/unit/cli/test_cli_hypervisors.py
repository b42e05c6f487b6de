"""hypervisor-* commands: the node view, joined with the registry's liveness where needed."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from berth.cli.main import DEFAULT_NODE, build_parser, connect_server, main
from berth.client import NodeClient, RegistryClient, errors
from berth.v1.node_pb2 import ComputeNode
from cli_fakes import IRONIC_UUID, NODE_UUID, FakeNode, FakeRegistry, Run, node


def header(text: str) -> list[str]:
    return [cell.strip() for cell in text.splitlines()[1].strip("|").split("|")]


def rows(text: str) -> list[list[str]]:
    lines = text.splitlines()[3:-1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def properties(text: str) -> dict[str, str]:
    return {name: value for name, value in rows(text) if name}


# -- hypervisor-list -------------------------------------------------------------------------


def test_hypervisor_list_takes_state_and_status_from_the_hosts_compute_service():
    run = Run(["hypervisor-list"])

    assert run.code == 0, run.err
    assert header(run.out) == [
        "ID",
        "Hypervisor hostname",
        "State",
        "Status",
        "Hypervisor type",
        "Host",
    ]
    # In order of host, then hypervisor hostname.
    assert rows(run.out)[::2] == [
        [NODE_UUID, "cmp1", "up", "enabled", "fake", "cmp1"],
        ["n2", "cmp2", "down", "disabled", "fake", "cmp2"],
        # ironic-1 has no berth-compute row in the registry: nobody vouches it is alive.
        [IRONIC_UUID, "bm-0", "down", "-", "ironic", "ironic-1"],
    ]
    assert run.node.calls == [("list_nodes", (), {"host": ""})]
    assert run.fake.calls == [("list_services", (), {"host": "", "binary": "berth-compute"})]


def test_hypervisor_list_for_one_host_filters_both_the_nodes_and_the_services():
    run = Run(["hypervisor-list", "--host", "ironic-1"])

    assert [row[1] for row in rows(run.out)] == ["bm-0", "bm-1"]
    assert run.node.calls == [("list_nodes", (), {"host": "ironic-1"})]
    assert run.fake.calls == [
        ("list_services", (), {"host": "ironic-1", "binary": "berth-compute"})
    ]


def test_hypervisor_list_json_is_the_node_dicts_plus_state_and_status():
    nodes = json.loads(Run(["hypervisor-list", "--json"]).out)

    assert len(nodes) == 6
    assert (nodes[0]["uuid"], nodes[0]["state"], nodes[0]["status"]) == (NODE_UUID, "up", "enabled")
    assert nodes[0]["total"] == {"vcpus": 16, "memory_mb": 65536, "disk_gb": 900}
    assert (nodes[4]["state"], nodes[4]["status"]) == ("down", None)
    # What each node offers: VMs (no class), or a bare-metal class taken whole.
    assert (nodes[0]["resource_class"], nodes[0]["whole_machine"]) == ("", False)
    assert (nodes[4]["resource_class"], nodes[4]["whole_machine"]) == (
        "CUSTOM_BAREMETAL_GOLD",
        True,
    )


def test_hypervisor_list_asks_for_the_node_and_the_registry_client_and_closes_both():
    run = Run(["hypervisor-list"])

    assert run.servers == ["node", "registry"]
    assert run.node.closed and run.fake.closed


@pytest.mark.parametrize(
    ("argv", "servers"),
    [
        (["hypervisor-show", NODE_UUID], ["node", "registry"]),
        (["hypervisor-search", "cmp"], ["node"]),
        (["hypervisor-stats"], ["node"]),
        (["hypervisor-servers", "--host", "cmp1"], ["node"]),
        (["host-describe", "cmp1"], ["registry"]),
        (["service-list"], ["registry"]),
    ],
    ids=lambda value: value[0] if isinstance(value, list) and "-" in value[0] else "",
)
def test_each_command_connects_only_the_servers_it_needs(argv, servers):
    run = Run(argv)

    assert run.code == 0, run.err
    assert run.servers == servers


def test_a_one_argument_connect_still_serves_the_registry_commands():
    out, err = io.StringIO(), io.StringIO()

    code = main(
        ["service-list"], connect=lambda args: FakeRegistry(), env={}, stdout=out, stderr=err
    )

    assert (code, err.getvalue()) == (0, "")


def test_the_registry_being_down_fails_hypervisor_list_with_one_line():
    unreachable = errors.Unavailable("cannot reach the registry at 127.0.0.1:50051: refused")

    run = Run(["hypervisor-list"], FakeRegistry(fail={"list_services": unreachable}))

    assert run.code == 1
    assert run.err == f"ERROR (Unavailable): {unreachable.message}\n"


# -- naming a node ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "calls", "uuid"),
    [
        (NODE_UUID, [("get_node", (), {"uuid": NODE_UUID})], NODE_UUID),
        ("cmp2/cmp2", [("get_node", (), {"host": "cmp2", "nodename": "cmp2"})], "n2"),
        ("bm-1", [("search_nodes", ("bm-1",), {})], "n4"),
    ],
    ids=["uuid", "host/nodename", "bare nodename"],
)
def test_a_node_is_named_by_uuid_host_slash_nodename_or_a_bare_nodename(name, calls, uuid):
    run = Run(["hypervisor-show", name, "--json"])

    assert run.code == 0, run.err
    assert json.loads(run.out)["uuid"] == uuid
    assert run.node.calls == calls


def test_a_uuid_that_names_no_node_is_tried_as_a_nodename():
    # Bare-metal nodes are named by a uuid of their own (Ironic's), not the node's.
    name = "0e0e0e0e-0e0e-4d8d-8c4c-1b1b9a9a9a9a"
    fake = FakeNode()
    fake.nodes.append(node(uuid="n7", host="ironic-2", nodename=name))

    run = Run(["hypervisor-show", name, "--json"], node=fake)

    assert run.code == 0, run.err
    assert json.loads(run.out)["uuid"] == "n7"
    assert [call[0] for call in fake.calls] == ["get_node", "search_nodes"]


def test_a_nodename_two_hosts_have_is_an_error_that_lists_both():
    run = Run(["hypervisor-show", "shared"])

    assert run.code == 1
    assert run.err.splitlines() == [
        "ERROR (InvalidArgument): node: 2 hypervisors are named 'shared': "
        "cmp1/shared (n5), cmp2/shared (n6); name one as HOST/NODENAME or by UUID"
    ]


def test_an_unknown_nodename_is_not_found_and_names_the_hostnames_that_contain_it():
    run = Run(["hypervisor-show", "bm"])

    assert run.code == 1
    assert run.err == (
        "ERROR (NotFound): no hypervisor has the uuid or hostname 'bm' "
        "(hostnames containing it: ironic-1/bm-0, ironic-1/bm-1)\n"
    )


@pytest.mark.parametrize("name", ["cmp1/", "/cmp1", " "])
def test_a_half_named_node_is_a_usage_error(name, capsys):
    run = Run(["hypervisor-show", name])

    assert run.code == 2
    assert run.node.calls == []
    assert "usage:" in capsys.readouterr().err


# -- hypervisor-show -------------------------------------------------------------------------


def test_hypervisor_show_flattens_every_field_into_property_value_rows():
    run = Run(["hypervisor-show", "cmp1/cmp1"])

    assert header(run.out) == ["Property", "Value"]
    shown = properties(run.out)
    assert shown == {
        "id": NODE_UUID,
        "hypervisor_hostname": "cmp1",
        "host": "cmp1",
        "host_ip": "192.0.2.10",
        "hypervisor_type": "fake",
        "hypervisor_version": "1.0",
        "state": "up",
        "status": "enabled",
        "resource_class": "-",
        "whole_machine": "False",
        "vcpus": "16",
        "vcpus_used": "4",
        "memory_mb": "65536",
        "memory_mb_used": "8704",
        "local_gb": "900",
        "local_gb_used": "80",
        "free_ram_mb": "56832",
        "free_disk_gb": "820",
        "disk_available_least": "800",
        "running_vms": "2",
        "current_workload": "1",
        "io_ops": "0",
        "cpu_allocation_ratio": "16.0",
        "ram_allocation_ratio": "1.5",
        "disk_allocation_ratio": "1.0",
        "reserved_host_cpus": "0",
        "reserved_host_memory_mb": "512",
        "reserved_host_disk_mb": "0",
        "cpu_info": '{"arch": "x86_64"}',
        "pci_device_pools": "2",
        "pci_devices": "6",
        "numa_cells": "0: 4 cpus (2 used), 32768 MB (0 used)",
        "supported_instances": "x86_64/fake/hvm, i686/fake/hvm",
        "generation": "7",
        "created_at": "2023-11-14T22:13:20.000000",
        "updated_at": "2023-11-14T22:14:20.500000",
    }


def test_a_bare_metal_node_shows_the_resource_class_it_offers_whole():
    shown = properties(Run(["hypervisor-show", "ironic-1/bm-0"]).out)
    assert (shown["hypervisor_type"], shown["resource_class"]) == (
        "ironic",
        "CUSTOM_BAREMETAL_GOLD",
    )
    assert shown["whole_machine"] == "True"
    data = json.loads(Run(["hypervisor-show", "ironic-1/bm-0", "--json"]).out)
    assert (data["resource_class"], data["whole_machine"]) == ("CUSTOM_BAREMETAL_GOLD", True)


def test_each_numa_cell_is_a_line_of_its_own_in_the_value_cell():
    run = Run(["hypervisor-show", NODE_UUID])

    lines = run.out.splitlines()
    at = next(i for i, line in enumerate(lines) if "numa_cells" in line)
    assert "1: 4 cpus (0 used), 32768 MB (4096 used)" in lines[at + 1]


def test_an_empty_node_shows_dashes_not_blanks():
    fake = FakeNode()
    fake.nodes = [ComputeNode(uuid=NODE_UUID, host="h", nodename="n")]

    shown = properties(Run(["hypervisor-show", NODE_UUID], node=fake).out)

    assert shown["host_ip"] == shown["cpu_info"] == shown["numa_cells"] == "-"
    assert shown["supported_instances"] == shown["created_at"] == "-"


# -- hypervisor-search and hypervisor-stats --------------------------------------------------


def test_hypervisor_search_shows_id_hostname_and_host():
    run = Run(["hypervisor-search", "bm-"])

    assert header(run.out) == ["ID", "Hypervisor hostname", "Host"]
    assert rows(run.out) == [[IRONIC_UUID, "bm-0", "ironic-1"], ["n4", "bm-1", "ironic-1"]]
    assert run.node.calls == [("search_nodes", ("bm-",), {})]


def test_hypervisor_search_without_a_match_prints_an_empty_table():
    run = Run(["hypervisor-search", "zzz"])

    assert (run.code, rows(run.out)) == (0, [])


def test_hypervisor_stats_shows_novaclients_sums():
    run = Run(["hypervisor-stats"])

    assert header(run.out) == ["Property", "Value"]
    assert rows(run.out) == [
        ["count", "3"],
        ["vcpus", "48"],
        ["vcpus_used", "12"],
        ["memory_mb", "196608"],
        ["memory_mb_used", "26112"],
        ["local_gb", "2700"],
        ["local_gb_used", "240"],
        ["free_ram_mb", "170496"],
        ["free_disk_gb", "2460"],
        ["disk_available_least", "2400"],
        ["running_vms", "6"],
        ["current_workload", "1"],
    ]


def test_hypervisor_stats_json_is_one_flat_object_of_numbers():
    stats = json.loads(Run(["hypervisor-stats", "--json"]).out)

    assert stats["count"] == 3 and stats["memory_mb"] == 196608
    assert all(isinstance(value, int) for value in stats.values())


# -- hypervisor-servers ----------------------------------------------------------------------


def test_hypervisor_servers_of_a_node_lists_by_the_nodes_uuid():
    run = Run(["hypervisor-servers", "cmp1/cmp1"])

    assert header(run.out) == [
        "ID",
        "Name",
        "Flavor",
        "Project",
        "User",
        "vcpus",
        "memory_mb",
        "disk_gb",
        "State",
        "Hypervisor hostname",
    ]
    assert rows(run.out) == [
        ["inst-2", "-", "-", "-", "-", "2", "4096", "40", "-", "cmp1"],
        ["inst-1", "web-1", "m1.medium", "p-alpha", "u-1", "2", "4096", "40", "active", "cmp1"],
    ]
    assert run.node.calls[-1] == ("node_instances", (), {"uuid": NODE_UUID})


def test_hypervisor_servers_with_host_lists_every_node_of_the_host():
    run = Run(["hypervisor-servers", "--host", "ironic-1"])

    assert run.code == 0
    assert run.node.calls == [("node_instances", (), {"host": "ironic-1"})]


@pytest.mark.parametrize(
    "argv", [["hypervisor-servers"], ["hypervisor-servers", "cmp1", "--host", "cmp1"]]
)
def test_hypervisor_servers_needs_a_node_or_a_host_but_not_both(argv, capsys):
    run = Run(argv)

    assert run.code == 2
    assert run.node.calls == []
    assert "give a NODE, or --host" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["hypervisor-list"],
        ["hypervisor-show", NODE_UUID],
        ["hypervisor-search", "cmp"],
        ["hypervisor-servers", "--host", "cmp1"],
    ],
    ids=lambda argv: argv[0],
)
def test_the_list_commands_print_a_json_array(argv):
    run = Run([*argv, "--json"])

    data = json.loads(run.out)
    assert isinstance(data, dict if argv[0] == "hypervisor-show" else list)


# -- the --node option and the real clients --------------------------------------------------


def test_node_defaults_to_the_local_node_service_or_berth_node_url():
    assert DEFAULT_NODE == "127.0.0.1:50052"
    assert build_parser({}).parse_args(["hypervisor-stats"]).node == DEFAULT_NODE
    env = {"BERTH_NODE_URL": "grpcs://node.example:443"}
    assert build_parser(env).parse_args(["hypervisor-stats"]).node == "grpcs://node.example:443"
    after = build_parser(env).parse_args(["hypervisor-stats", "--node", "n:1"])
    assert after.node == "n:1"


def test_the_real_connect_builds_the_client_of_the_server_asked_for():
    args = build_parser({}).parse_args(
        ["--registry", "r:1", "--node", "n:2", "--timeout", "3", "hypervisor-list"]
    )

    with connect_server(args) as registry, connect_server(args, "node") as node:
        assert (type(registry), registry.target) == (RegistryClient, "r:1")
        assert (type(node), node.target, node.timeout) == (NodeClient, "n:2", 3.0)


def test_a_bad_node_address_is_reported_before_any_call():
    out, err = io.StringIO(), io.StringIO()

    code = main(["--node", "http://n:1", "hypervisor-stats"], env={}, stdout=out, stderr=err)

    assert code == 1
    assert err.getvalue().startswith("ERROR (InvalidArgument): target: unsupported scheme")


@pytest.mark.parametrize(
    "argv", [["hypervisor-show", "cmp1/cmp1"], ["hypervisor-servers", "cmp1/cmp1"]]
)
def test_the_node_argument_leaves_the_node_service_address_alone(argv):
    run = Run([*argv, "--node", "n:9"])

    assert run.code == 0, run.err
    assert run.connected[0].node == "n:9"


def test_no_sub_command_argument_shadows_a_global_option():
    parser = build_parser({})
    global_options = {action.dest: action.option_strings for action in parser._actions}
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))

    for name, subparser in commands.choices.items():
        for action in subparser._actions:
            if action.dest in global_options and action.dest != "help":
                assert action.option_strings == global_options[action.dest], (name, action.dest)


def test_a_long_cpu_info_is_wrapped_and_reads_back_as_the_same_json():
    from berth.cli.hypervisors import cpu_info_text

    members = [{"name": f"esx-{i}", "vcpus": 16, "memory_mb": 65536} for i in range(3)]
    raw = json.dumps({"members": members, "vendor": ["Intel"]}, separators=(",", ":"))

    text = cpu_info_text(raw, width=40)

    assert len(text.splitlines()) > 1
    assert all(len(line) <= 40 for line in text.splitlines())
    assert json.loads(" ".join(text.splitlines())) == json.loads(raw)


@pytest.mark.parametrize(("raw", "shown"), [("", "-"), ("not json", "not json")])
def test_a_short_or_non_json_cpu_info_is_shown_as_it_is(raw, shown):
    from berth.cli.hypervisors import cpu_info_text

    assert cpu_info_text(raw) == shown


def test_hypervisor_uptime_counts_from_the_agents_last_start():
    from datetime import UTC, datetime

    from berth.cli.hypervisors import uptime_text
    from berth.v1 import node_pb2

    node = node_pb2.ComputeNode(uuid=NODE_UUID, nodename="cmp1")
    assert uptime_text(node) == "-"  # never reported
    node.boot_epoch.FromDatetime(datetime(2026, 12, 3, 3, 56, 55, tzinfo=UTC))
    now = datetime(2026, 12, 5, 7, 1, 0, tzinfo=UTC)
    assert uptime_text(node, now) == "up 2 days, 3:04:05 (since 2026-12-03T03:56:55Z)"


def test_hypervisor_uptime_shows_the_hosts_state_and_status():
    run = Run(["hypervisor-uptime", "cmp1/cmp1"])
    assert run.code == 0, run.err
    assert header(run.out) == ["ID", "Hypervisor hostname", "State", "Status", "Uptime"]
    assert rows(run.out)[0][:4] == [NODE_UUID, "cmp1", "up", "enabled"]
