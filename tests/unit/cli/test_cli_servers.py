"""boot, delete, server-list, scheduler-hosts and scheduler-resync against fake clients."""

from __future__ import annotations

import json

import pytest
from berth.cli.main import DEFAULT_SCHEDULER, build_parser, connect_server
from berth.client import ComputeClient, SchedulerClient, errors
from berth.v1 import common_pb2
from berth.v1 import scheduler_pb2 as spb
from cli_fakes import NODE_UUID, FakeAgent, FakeNode, FakeRegistry, FakeScheduler, Run, instance

UUID_A = "aaaaaaaa-0000-4000-8000-000000000001"
UUID_B = "bbbbbbbb-0000-4000-8000-000000000002"


def header(text: str) -> list[str]:
    return [cell.strip() for cell in text.splitlines()[1].strip("|").split("|")]


def rows(text: str) -> list[list[str]]:
    lines = text.splitlines()[3:-1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def spec_of(run: Run) -> spb.RequestSpec:
    (call,) = [c for c in run.scheduler.calls if c[0] == "select_destinations"]
    return call[1][0]


def both_up() -> FakeRegistry:
    registry = FakeRegistry()
    registry.services[1].up = True
    return registry


# -- boot ------------------------------------------------------------------------------------


def test_boot_builds_every_instance_on_its_primary_and_prints_a_table():
    run = Run(["boot", "web", "--flavor", "m1.small", "--count", "2"])

    assert run.code == 0, run.err
    assert header(run.out) == ["ID", "Host", "Node", "Status"]
    spec = spec_of(run)
    assert rows(run.out) == [[uuid, "cmp1", "cmp1", "active"] for uuid in spec.instance_uuids]
    assert (spec.flavor.name, spec.flavor.vcpus, spec.flavor.memory_mb) == ("m1.small", 1, 2048)
    assert (spec.num_instances, spec.project_id, len(spec.instance_uuids)) == (2, "demo", 2)
    (agent,) = run.agents.values()
    assert agent.endpoint == "cmp1:50054" and agent.closed
    assert sorted(c[1][0] for c in agent.calls) == sorted(spec.instance_uuids)


def test_boot_prints_one_progress_line_per_instance_on_stderr():
    run = Run(["boot", "web", "--flavor", "m1.tiny", "--count", "2"])

    lines = run.err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[1/2] web-")
    assert lines[1].startswith("[2/2] web-")
    assert all("built on cmp1/cmp1" in line for line in lines)
    labels = sorted(line.split()[1] for line in lines)
    assert labels == ["web-1", "web-2"]


def test_boot_releases_the_alternates_it_did_not_use():
    run = Run(["boot", "--flavor", "m1.tiny", "--count", "2"])

    spec = spec_of(run)
    assert sorted(run.scheduler.released) == sorted(
        f"claim-{uuid[:8]}-cmp2" for uuid in spec.instance_uuids
    )


def test_boot_connects_the_scheduler_the_registry_and_each_agent_it_builds_on():
    run = Run(["boot", "--flavor", "m1.tiny"])

    assert run.servers == ["scheduler", "registry", "node", "compute"]
    assert run.scheduler.closed and run.fake.closed


def test_a_refusing_primary_gives_way_to_the_alternate():
    full = FakeAgent("cmp1:50054", errors.ResourceExhausted("cmp1 is full"))
    run = Run(["boot", "--flavor", "m1.tiny"], fake=both_up(), agents={"cmp1:50054": full})

    assert run.code == 0, run.err
    assert rows(run.out)[0][1:] == ["cmp2", "cmp2", "active"]
    uuid = spec_of(run).instance_uuids[0]
    assert run.scheduler.released == [f"claim-{uuid[:8]}-cmp1"]


def test_an_instance_no_host_builds_fails_the_command_naming_it():
    full = FakeAgent("cmp1:50054", errors.ResourceExhausted("cmp1 is full"))
    # cmp2, the alternate, is down in the registry.
    run = Run(["boot", "--flavor", "m1.tiny"], agents={"cmp1:50054": full})

    assert run.code == 1
    uuid = spec_of(run).instance_uuids[0]
    assert rows(run.out) == [[uuid, "-", "-", "error"]]
    assert f"ERROR: instance {uuid} was not built: cmp1/cmp1: cmp1 is full" in run.err
    assert "the compute agent of host cmp2 is down" in run.err
    assert "1 of 1 instance(s) not built" in run.err
    assert sorted(run.scheduler.released) == sorted(
        [f"claim-{uuid[:8]}-cmp1", f"claim-{uuid[:8]}-cmp2"]
    )


def test_nothing_placeable_is_the_schedulers_error():
    refusal = errors.ResourceExhausted("no node fits: RamFilter removed 3")
    run = Run(
        ["boot", "--flavor", "m1.xlarge"],
        scheduler=FakeScheduler(fail={"select_destinations": refusal}),
    )

    assert run.code == 1
    assert run.err.startswith("ERROR (ResourceExhausted): no node fits: RamFilter removed 3")


def test_explicit_sizes_make_a_nameless_flavor():
    run = Run(["boot", "--vcpus", "3", "--memory-mb", "3000", "--disk-gb", "30"])

    assert run.code == 0, run.err
    flavor = spec_of(run).flavor
    assert (flavor.name, flavor.vcpus, flavor.memory_mb, flavor.root_gb) == ("", 3, 3000, 30)


def test_every_placement_option_reaches_the_request_spec():
    run = Run(
        [
            "boot",
            "--flavor",
            "m1.tiny",
            "--project",
            "p1",
            "--user",
            "u1",
            "--az",
            "az1",
            "--hypervisor-type",
            "QEMU",
            "--seed",
            "42",
            "--group",
            "web",
            "--group-policy",
            "anti-affinity",
            "--hint",
            f"same_host={UUID_A}",
            "--hint",
            f"different_host={UUID_B}",
            "--hint",
            "force_host=cmp1",
            "--hint",
            "force_node=bm-0",
            "--hint",
            "ignore_host=cmp2",
            "--hint",
            "ignore_host=cmp3",
            "--hint",
            "same_aggregate_as_host=cmp9",
        ]
    )

    assert run.code == 0, run.err
    spec = spec_of(run)
    assert (spec.project_id, spec.user_id, spec.availability_zone) == ("p1", "u1", "az1")
    assert (spec.hypervisor_type, spec.seed) == ("QEMU", 42)
    assert spec.hints == spb.SchedulerHints(
        same_host=[UUID_A],
        different_host=[UUID_B],
        force_hosts=["cmp1"],
        force_nodes=["bm-0"],
        ignore_hosts=["cmp2", "cmp3"],
        group="web",
        group_policy=common_pb2.GROUP_POLICY_ANTI_AFFINITY,
        same_aggregate_as_host="cmp9",
    )


def test_the_baremetal_flavor_asks_for_a_custom_baremetal_node():
    run = Run(["boot", "--flavor", "baremetal"])

    assert run.code == 0, run.err
    flavor = spec_of(run).flavor
    assert flavor.name == "baremetal"
    assert dict(flavor.extra_specs) == {"resources:CUSTOM_BAREMETAL": "1"}


@pytest.mark.parametrize(
    ("size", "specs"),
    [
        pytest.param(
            ["--flavor", "m1.medium"],
            {"resources:CUSTOM_BAREMETAL_GOLD": "1"},
            id="added to a flavor of VMs",
        ),
        pytest.param(
            ["--flavor", "baremetal"],
            {"resources:CUSTOM_BAREMETAL_GOLD": "1"},
            id="instead of the class the flavor asks for",
        ),
        pytest.param(
            ["--vcpus", "2", "--memory-mb", "4096"],
            {"resources:CUSTOM_BAREMETAL_GOLD": "1"},
            id="with explicit sizes",
        ),
    ],
)
def test_resource_class_asks_the_flavor_for_a_whole_node_of_that_class(size, specs):
    run = Run(["boot", *size, "--resource-class", "CUSTOM_BAREMETAL_GOLD"])

    assert run.code == 0, run.err
    assert dict(spec_of(run).flavor.extra_specs) == specs
    # The agent is told the same class, to check it against its node's.
    (build,) = [c for agent in run.agents.values() for c in agent.calls if c[0] == "build_instance"]
    assert build[2]["flavor_extra_specs"] == specs


def test_without_a_seed_the_spec_has_none():
    run = Run(["boot", "--flavor", "m1.tiny"])

    assert not spec_of(run).HasField("seed")


@pytest.mark.parametrize(
    ("hint", "says"),
    [
        ("nonsense", "'nonsense' is not KEY=VALUE"),
        ("=cmp1", "'=cmp1' is not KEY=VALUE"),
        ("force_host=", "'force_host=' is not KEY=VALUE"),
        ("near_host=cmp1", "unknown hint 'near_host'"),
    ],
)
def test_a_malformed_hint_is_a_usage_error_naming_it(hint, says, capsys):
    run = Run(["boot", "--flavor", "m1.tiny", "--hint", hint])

    assert run.code == 2
    err = capsys.readouterr().err
    assert f"berth boot: error: --hint {hint!r}" in err
    assert says in err
    assert run.scheduler.calls == []


def test_an_instance_hint_takes_a_name_only_one_instance_has():
    node = named((UUID_A, "web-1"), (UUID_B, "db"))
    run = Run(
        [
            "boot",
            "--flavor",
            "m1.tiny",
            "--hint",
            "different_host=web-1",
            "--hint",
            "same_host=" + UUID_B,
        ],
        node=node,
    )

    assert run.code == 0, run.err
    hints = spec_of(run).hints
    assert (list(hints.different_host), list(hints.same_host)) == ([UUID_A], [UUID_B])


def test_an_instance_hint_naming_several_instances_places_nothing():
    run = Run(
        ["boot", "--flavor", "m1.tiny", "--hint", "different_host=web"],
        node=named((UUID_A, "web"), (UUID_B, "web")),
    )

    assert run.code == 1
    assert f"2 instances are named 'web' ({UUID_A}, {UUID_B})" in run.err
    assert run.scheduler.calls == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--flavor", "m1.huge"], "unknown flavor 'm1.huge'; known flavors: m1.tiny, m1.small"),
        (["--flavor", "m1.tiny", "--vcpus", "2"], "give --flavor or sizes, not both"),
        (
            [],
            "give --flavor (m1.tiny, m1.small, m1.medium, m1.large, m1.xlarge, baremetal) or --vcpus",
        ),
        (["--vcpus", "2"], "or --vcpus and --memory-mb"),
        (["--flavor", "m1.tiny", "--group", "web"], "--group and --group-policy go together"),
        (["--flavor", "m1.tiny", "--count", "0"], "must be at least 1"),
        (["--flavor", "m1.tiny", "--group-policy", "pack"], "invalid choice: 'pack'"),
        (
            ["--flavor", "m1.tiny", "--resource-class", "baremetal_gold"],
            "--resource-class: 'baremetal_gold' is not a custom resource class: CUSTOM_ followed",
        ),
    ],
)
def test_bad_boot_options_are_usage_errors(argv, says, capsys):
    run = Run(["boot", *argv])

    assert run.code == 2
    assert says in capsys.readouterr().err
    assert run.scheduler.calls == []


def test_boot_json_gives_each_instance_with_its_name_and_status():
    run = Run(["boot", "db", "--flavor", "m1.tiny", "--json"])

    (result,) = json.loads(run.out)
    assert (result["name"], result["host"], result["nodename"]) == ("db", "cmp1", "cmp1")
    assert (result["status"], result["error"]) == ("active", "")
    assert result["instance_uuid"] == spec_of(run).instance_uuids[0]
    assert result["claim_id"].endswith("-cmp1")


# -- delete ----------------------------------------------------------------------------------


def node_with(*uuids: str) -> FakeNode:
    node = FakeNode()
    node.instances = tuple(instance(uuid=uuid) for uuid in uuids)
    return node


def test_delete_finds_the_host_of_each_instance_and_deletes_it_there():
    run = Run(["delete", UUID_A], node=node_with(UUID_A))

    assert run.code == 0, run.err
    assert rows(run.out) == [[UUID_A, "web-1", "cmp1", "deleted"]]
    assert run.node.calls == [("node_instances", (), {"instance_uuids": [UUID_A]})]
    assert run.agents["cmp1:50054"].calls == [("delete_instance", (UUID_A,), {})]
    assert run.servers == ["node", "registry", "compute"]


def test_deleting_an_unknown_instance_says_not_found_and_fails():
    run = Run(["delete", UUID_A, UUID_B], node=node_with(UUID_A))

    assert run.code == 1
    assert rows(run.out) == [
        [UUID_A, "web-1", "cmp1", "deleted"],
        [UUID_B, "-", "-", "not found"],
    ]
    assert f"ERROR: instance {UUID_B} was not deleted: no compute node reports" in run.err


def named(*pairs: tuple[str, str]) -> FakeNode:
    node = FakeNode()
    node.instances = tuple(instance(uuid=uuid, name=name) for uuid, name in pairs)
    return node


def test_delete_by_a_name_only_one_instance_has_deletes_that_instance():
    run = Run(["delete", "web-1"], node=named((UUID_A, "web-1"), (UUID_B, "web-2")))

    assert run.code == 0, run.err
    assert rows(run.out) == [[UUID_A, "web-1", "cmp1", "deleted"]]
    assert run.node.calls[0] == ("node_instances", (), {"name": "web-1"})


def test_a_name_no_instance_has_deletes_nothing_and_says_so():
    run = Run(["delete", UUID_A, "web-9"], node=named((UUID_A, "web-1")))

    assert run.code == 1
    assert "no instance is named 'web-9'" in run.err
    assert run.agents == {}


def test_a_name_several_instances_have_names_them_and_deletes_nothing():
    run = Run(["delete", "web"], node=named((UUID_A, "web"), (UUID_B, "web")))

    assert run.code == 1
    assert f"2 instances are named 'web' ({UUID_A}, {UUID_B})" in run.err
    assert run.agents == {}


def test_delete_json():
    run = Run(["delete", UUID_A, "--json"], node=node_with(UUID_A))

    (result,) = json.loads(run.out)
    assert (result["instance_uuid"], result["host"], result["status"]) == (
        UUID_A,
        "cmp1",
        "deleted",
    )


# -- server-list -----------------------------------------------------------------------------


def test_server_list_shows_every_instance_of_every_node():
    run = Run(["server-list"])

    assert run.code == 0, run.err
    assert header(run.out) == [
        "ID",
        "Name",
        "Flavor",
        "Host",
        "Node",
        "Project",
        "vcpus",
        "memory_mb",
        "disk_gb",
        "State",
    ]
    assert rows(run.out) == [  # sorted by name: the unnamed one first
        ["inst-2", "-", "-", "cmp1", "cmp1", "-", "2", "4096", "40", "-"],
        ["inst-1", "web-1", "m1.medium", "cmp1", "cmp1", "p-alpha", "2", "4096", "40", "active"],
    ]
    assert run.node.calls == [("node_instances", (), {})]


@pytest.mark.parametrize(
    ("argv", "calls"),
    [
        (["--host", "cmp1"], [("node_instances", (), {"host": "cmp1"})]),
        (
            ["--hypervisor", "cmp1/cmp1"],
            [
                ("get_node", (), {"host": "cmp1", "nodename": "cmp1"}),
                ("node_instances", (), {"uuid": NODE_UUID}),
            ],
        ),
        (
            ["--host", "cmp1", "--hypervisor", "cmp1"],
            [
                ("get_node", (), {"host": "cmp1", "nodename": "cmp1"}),
                ("node_instances", (), {"uuid": NODE_UUID}),
            ],
        ),
    ],
    ids=["host", "node", "host and nodename"],
)
def test_server_list_of_one_host_or_one_node(argv, calls):
    run = Run(["server-list", *argv])

    assert run.code == 0, run.err
    assert run.node.calls == calls


def test_server_list_of_a_node_on_another_host_is_a_usage_error(capsys):
    run = Run(["server-list", "--host", "cmp2", "--hypervisor", NODE_UUID])

    assert run.code == 2
    assert "node cmp1/cmp1 is not on host cmp2" in capsys.readouterr().err


def test_server_list_json_is_the_instances():
    data = json.loads(Run(["server-list", "--json"]).out)

    assert [i["uuid"] for i in data] == ["inst-2", "inst-1"]  # sorted by name, as the table
    assert (data[1]["name"], data[1]["flavor_name"]) == ("web-1", "m1.medium")
    assert data[1]["resources"] == {"vcpus": 2, "memory_mb": 4096, "disk_gb": 40}


# -- scheduler-hosts and scheduler-resync -----------------------------------------------------


def test_scheduler_hosts_shows_free_capacity_after_ratios_use_and_claims():
    run = Run(["scheduler-hosts"])

    assert run.code == 0, run.err
    assert header(run.out) == [
        "Node",
        "Host",
        "State",
        "Status",
        "Zone",
        "Free vCPUs",
        "Free RAM MB",
        "Free disk GB",
        "Claims",
        "Instances",
        "Generation",
    ]
    # cmp1: 16 x 16 - 4 - 1; 65536 x 1.5 - 8704 - 2048; 900 x 1 - 80 - 20.
    # bm-0 (bare metal, empty): the whole server.
    assert rows(run.out) == [
        ["cmp1", "cmp1", "up", "enabled", "nova", "251", "87552", "800", "1", "2", "7"],
        ["bm-0", "ironic-1", "down", "disabled", "-", "32", "131072", "1000", "0", "0", "3"],
    ]
    assert run.scheduler.calls == [("list_host_states", (), {"host": ""})]
    assert run.servers == ["scheduler"]


def test_a_taken_bare_metal_node_has_nothing_free():
    scheduler = FakeScheduler()
    scheduler.states[1].num_instances = 1

    run = Run(["scheduler-hosts", "--host", "ironic-1"], scheduler=scheduler)

    assert rows(run.out) == [
        ["bm-0", "ironic-1", "down", "disabled", "-", "0", "0", "0", "0", "1", "3"]
    ]
    assert scheduler.calls == [("list_host_states", (), {"host": "ironic-1"})]


def test_scheduler_hosts_json_has_every_field_the_pending_claims_and_free():
    data = json.loads(Run(["scheduler-hosts", "--json"]).out)

    assert data[0]["free"] == {"vcpus": 251, "memory_mb": 87552, "disk_gb": 800}
    (pending,) = data[0]["pending_claims"]
    assert pending["host"] == "cmp1" and pending["claim_id"].startswith("claim-")
    assert data[0]["cpu_allocation_ratio"] == 16.0
    assert data[1]["pending_claims"] == []


def test_scheduler_resync_shows_what_was_rebuilt():
    run = Run(["scheduler-resync"])

    assert run.code == 0, run.err
    assert rows(run.out) == [["nodes", "6"], ["services", "3"], ["duration_ms", "42"]]


# -- the --scheduler option and the real clients ----------------------------------------------


def test_scheduler_defaults_to_the_local_scheduler_or_berth_scheduler_url():
    assert DEFAULT_SCHEDULER == "127.0.0.1:50053"
    assert build_parser({}).parse_args(["scheduler-hosts"]).scheduler == DEFAULT_SCHEDULER
    env = {"BERTH_SCHEDULER_URL": "grpcs://sched.example:443"}
    assert build_parser(env).parse_args(["scheduler-hosts"]).scheduler == (
        "grpcs://sched.example:443"
    )
    after = build_parser(env).parse_args(["scheduler-hosts", "--scheduler", "s:1"])
    assert after.scheduler == "s:1"


def test_the_real_connect_builds_scheduler_and_agent_clients():
    args = build_parser({}).parse_args(["--scheduler", "s:3", "--timeout", "4", "boot"])

    with (
        connect_server(args, "scheduler") as scheduler,
        connect_server(args, "compute", "cmp1:50054") as agent,
    ):
        assert (type(scheduler), scheduler.target, scheduler.timeout) == (
            SchedulerClient,
            "s:3",
            4.0,
        )
        assert (type(agent), agent.target, agent.timeout) == (ComputeClient, "cmp1:50054", 4.0)
