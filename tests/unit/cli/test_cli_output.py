"""What the commands print: novaclient's columns as tables, and JSON with --json."""

from __future__ import annotations

import json

import pytest
from cli_fakes import AGG_UUID, UUID, FakeNode, FakeRegistry, Run


def header(text: str) -> list[str]:
    return [cell.strip() for cell in text.splitlines()[1].strip("|").split("|")]


def rows(text: str) -> list[list[str]]:
    lines = text.splitlines()[3:-1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_service_list_shows_novaclients_columns_with_words_for_status_and_state():
    run = Run(["service-list"])

    assert header(run.out) == [
        "ID",
        "Binary",
        "Host",
        "Zone",
        "Status",
        "State",
        "Updated At",
        "Disabled Reason",
        "Forced Down",
    ]
    when = "2023-11-14T22:13:20.123456"  # last_seen_up in UTC, as novaclient prints times
    assert rows(run.out) == [
        [UUID, "berth-compute", "cmp1", "nova", "enabled", "up", when, "-", "False"],
        ["u2", "berth-compute", "cmp2", "nova", "disabled", "down", when, "bad disk", "True"],
    ]


def test_service_list_json_is_an_array_of_services_with_proto_field_names_and_defaults():
    run = Run(["service-list", "--json"])

    services = json.loads(run.out)
    assert isinstance(services, list) and len(services) == 2
    first = services[0]
    assert first["uuid"] == UUID
    assert first["availability_zone"] == "nova"
    assert first["disabled"] is False  # a default value is still printed
    assert first["up"] is True
    assert first["last_seen_up"] == "2023-11-14T22:13:20.123456Z"
    assert services[1]["disabled_reason"] == "bad disk"


def test_host_list_shows_host_name_service_and_zone():
    run = Run(["host-list"])

    assert header(run.out) == ["host_name", "service", "zone"]
    assert rows(run.out) == [["cmp1", "compute", "nova"], ["ctl1", "registry", "internal"]]
    assert json.loads(Run(["host-list", "--json"]).out)[0] == {
        "host_name": "cmp1",
        "service": "compute",
        "zone": "nova",
    }


def test_host_describe_shows_total_used_now_used_max_then_one_row_per_project():
    run = Run(["host-describe", "cmp1"])

    assert header(run.out) == ["HOST", "PROJECT", "cpu", "memory_mb", "disk_gb"]
    assert rows(run.out) == [
        ["cmp1", "(total)", "16", "65536", "900"],
        ["cmp1", "(used_now)", "4", "8192", "80"],
        ["cmp1", "(used_max)", "3", "6144", "60"],
        ["cmp1", "p-alpha", "2", "4096", "40"],
        ["cmp1", "p-beta", "1", "2048", "20"],
    ]


def test_host_describe_json_nests_resources_and_writes_numbers_as_numbers():
    rows_json = json.loads(Run(["host-describe", "cmp1", "--json"]).out)

    assert rows_json[0] == {
        "host": "cmp1",
        "project": "(total)",
        "resources": {"vcpus": 16, "memory_mb": 65536, "disk_gb": 900},
    }


def test_aggregate_show_quotes_hosts_and_metadata_as_novaclient_does():
    run = Run(["aggregate-show", "rack1"])

    assert header(run.out) == ["ID", "Name", "Availability Zone", "Hosts", "Metadata"]
    assert rows(run.out) == [
        [AGG_UUID, "rack1", "az1", "'cmp1', 'cmp2'", "'availability_zone=az1', 'ssd=true'"]
    ]


def test_aggregate_list_shows_a_dash_for_an_aggregate_without_zone():
    run = Run(["aggregate-list"])

    assert header(run.out) == ["ID", "Name", "Availability Zone"]
    assert rows(run.out)[1] == ["a2", "rack2", "-"]


def test_adding_a_host_says_so_before_the_table_but_json_stays_pure():
    run = Run(["aggregate-add-host", "rack1", "cmp3"])
    assert run.out.startswith("Host cmp3 has been successfully added for aggregate rack1\n+")

    shown = json.loads(Run(["aggregate-add-host", "rack1", "cmp3", "--json"]).out)
    assert shown["hosts"] == ["cmp1", "cmp2"]


def test_service_delete_prints_nothing_but_answers_an_object_with_json():
    assert Run(["service-delete", UUID]).out == ""
    assert json.loads(Run(["--json", "service-delete", "cmp1", "b"]).out) == {
        "deleted": {"host": "cmp1", "binary": "b"}
    }


@pytest.mark.parametrize(
    ("argv", "shape"),
    [
        (["service-list"], list),
        (["service-enable", "cmp1", "berth-compute"], dict),
        (["service-disable", "cmp1", "berth-compute", "--reason", "r"], dict),
        (["service-force-down", "cmp1", "berth-compute"], dict),
        (["service-delete", UUID], dict),
        (["host-list"], list),
        (["host-describe", "cmp1"], list),
        (["aggregate-create", "rack1", "az1"], dict),
        (["aggregate-delete", "rack1"], dict),
        (["aggregate-list"], list),
        (["aggregate-show", "rack1"], dict),
        (["aggregate-add-host", "rack1", "h"], dict),
        (["aggregate-remove-host", "rack1", "h"], dict),
        (["aggregate-set-metadata", "rack1", "k=v"], dict),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_every_command_prints_one_json_array_or_object_with_json(argv, shape):
    run = Run([*argv, "--json"])

    assert run.code == 0
    assert isinstance(json.loads(run.out), shape)


# --- formats for scripts (-f, -c, --sort-column) -----------------------------------------


def test_csv_and_value_formats_print_the_chosen_columns_in_the_chosen_order():
    csv_run = Run(["aggregate-list", "-f", "csv", "-c", "Name", "-c", "ID"])
    assert csv_run.out.splitlines()[0] == '"Name","ID"'
    assert '"rack2","a2"' in csv_run.out.splitlines()
    value_run = Run(["aggregate-list", "-f", "value", "-c", "name"])
    assert value_run.out.split() == ["rack1", "rack2"]


def test_sort_column_orders_rows_numbers_by_value():
    run = Run(["host-describe", "cmp1", "--sort-column", "cpu", "-f", "value", "-c", "cpu"])
    cpus = [int(v) for v in run.out.split()]
    assert cpus == sorted(cpus)


def test_an_unknown_column_is_a_usage_error_naming_the_columns(capsys):
    run = Run(["aggregate-list", "-c", "Nope"])
    assert run.code == 2  # argparse's usage line and the sentence go to stderr
    said = capsys.readouterr().err
    assert "no column 'Nope'; the columns are: ID, Name, Availability Zone" in said


def test_json_writes_enums_as_words_and_int64_as_numbers():
    from berth.cli.output import message_dict
    from berth.v1 import common_pb2, node_pb2

    instance = node_pb2.Instance(
        uuid="i-1",
        state=node_pb2.INSTANCE_STATE_ACTIVE,
        group_policy=common_pb2.GROUP_POLICY_ANTI_AFFINITY,
        resources=common_pb2.Resources(vcpus=2, memory_mb=4096, disk_gb=40),
    )
    data = message_dict(instance)
    assert data["state"] == "active" and data["group_policy"] == "anti-affinity"
    assert data["resources"] == {"vcpus": 2, "memory_mb": 4096, "disk_gb": 40}


def test_aggregate_update_renames_and_rezones_in_one_call():
    run = Run(["aggregate-update", "rack1", "--name", "rack9", "--availability-zone", ""])
    assert run.code == 0, run.err
    assert run.fake.calls[-1] == (
        "update_aggregate",
        ("rack1",),
        {"name": "rack9", "availability_zone": ""},
    )
    assert "Aggregate rack9 has been successfully updated." in run.out


def test_aggregate_update_needs_something_to_change(capsys):
    assert Run(["aggregate-update", "rack1"]).code == 2
    assert "give --name, --availability-zone, or both" in capsys.readouterr().err


# --- JSON with -c and --sort-column, single objects, default order --------------------------


def test_json_with_columns_is_one_object_per_row_keyed_by_the_headers_as_openstack_prints_it():
    run = Run(["aggregate-list", "-f", "json", "-c", "Name", "-c", "ID"])

    assert json.loads(run.out) == [{"Name": "rack1", "ID": AGG_UUID}, {"Name": "rack2", "ID": "a2"}]


def test_json_columns_keep_numbers_as_numbers():
    run = Run(["host-describe", "cmp1", "--json", "-c", "PROJECT", "-c", "cpu"])

    assert json.loads(run.out)[0] == {"PROJECT": "(total)", "cpu": 16}


def test_sort_column_orders_the_json_objects_as_it_orders_the_rows():
    run = Run(["host-describe", "cmp1", "--json", "--sort-column", "cpu"])

    assert [row["resources"]["vcpus"] for row in json.loads(run.out)] == [1, 2, 3, 4, 16]


def test_columns_of_a_single_object_are_its_properties():
    value = Run(["hypervisor-show", "cmp1", "-f", "value", "-c", "vcpus", "-c", "state"])
    assert value.out.splitlines() == ["16", "up"]
    as_json = Run(["hypervisor-show", "cmp1", "-f", "json", "-c", "vcpus", "-c", "state"])
    assert json.loads(as_json.out) == {"vcpus": 16, "state": "up"}
    table = Run(["hypervisor-stats", "-c", "count"])
    assert rows(table.out) == [["count", "3"]]


def test_an_unknown_property_is_a_usage_error_naming_the_properties(capsys):
    assert Run(["hypervisor-stats", "-c", "nope"]).code == 2
    assert "no column 'nope'; the columns are: count, vcpus, vcpus_used" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "column", "expected"),
    [
        (["service-list"], "Host", ["cmp1", "cmp2"]),
        (["hypervisor-list"], "Host", ["cmp1", "cmp1", "cmp2", "cmp2", "ironic-1", "ironic-1"]),
        (["hypervisor-search", "s"], "Hypervisor hostname", ["shared", "shared"]),
    ],
    ids=lambda value: value[0] if isinstance(value, list) and value[0].islower() else "",
)
def test_lists_come_sorted_whatever_order_the_server_answers_in(argv, column, expected):
    registry = FakeRegistry()
    registry.services.reverse()
    node = FakeNode()
    node.nodes.reverse()
    run = Run([*argv, "-f", "value", "-c", column], fake=registry, node=node)

    assert run.out.split() == expected
