"""availability-zone-list and server-group-list, read from the registry's services and
the node service's instances."""

from __future__ import annotations

import json

from berth.v1 import common_pb2
from cli_fakes import FakeNode, FakeRegistry, Run, instance, service


def header(text: str) -> list[str]:
    return [cell.strip() for cell in text.splitlines()[1].strip("|").split("|")]


def rows(text: str) -> list[list[str]]:
    lines = text.splitlines()[3:-1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_a_zone_is_available_while_one_of_its_compute_services_is_up_and_enabled():
    fake = FakeRegistry()
    fake.services += [
        service(host="cmp3", availability_zone="az1", up=False),
        service(host="ctl-1", binary="berth-scheduler", availability_zone=""),
    ]
    run = Run(["availability-zone-list"], fake)
    assert run.code == 0, run.err
    assert header(run.out) == ["Zone Name", "Zone Status", "Hosts"]
    table = rows(run.out)
    assert ["az1", "not available", "cmp3"] in table
    assert ["internal", "available", "ctl-1"] in table
    assert ["nova", "available", "cmp1"] in table  # cmp1 up; cmp2 down and disabled
    assert ["", "", "cmp2"] in table  # the cell's second line


def test_availability_zone_list_long_has_a_row_per_host_and_service():
    run = Run(
        [
            "availability-zone-list",
            "--long",
            "-f",
            "value",
            "-c",
            "host_name",
            "-c",
            "service_status",
        ],
        FakeRegistry(),
    )
    assert run.out.splitlines() == ["cmp1 enabled up", "cmp2 disabled down"]
    data = json.loads(Run(["availability-zone-list", "--json"], FakeRegistry()).out)
    assert data[0]["hosts"]["cmp1"]["berth-compute"] == {"available": True, "active": True}


def test_server_groups_with_their_policy_members_and_hosts():
    node = FakeNode()
    anti = common_pb2.GROUP_POLICY_ANTI_AFFINITY
    node.instances = (
        instance(uuid="b", name="web-2", server_group="web", group_policy=anti, host="cmp2"),
        instance(uuid="a", name="web-1", server_group="web", group_policy=anti, host="cmp1"),
        instance(uuid="c", name=""),
    )
    run = Run(["server-group-list"], node=node)
    assert run.code == 0, run.err
    assert header(run.out) == ["Name", "Policy", "Members", "Hosts"]
    assert rows(run.out) == [["web", "anti-affinity", "web-1", "cmp1"], ["", "", "web-2", "cmp2"]]
    data = json.loads(Run(["server-group-list", "--json"], node=node).out)
    assert data == [
        {
            "name": "web",
            "policy": "anti-affinity",
            "members": ["a", "b"],
            "member_names": ["web-1", "web-2"],
            "hosts": ["cmp1", "cmp2"],
        }
    ]
