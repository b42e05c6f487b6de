"""migration-list: the registry's moves joined with the node service's instance names."""

from __future__ import annotations

import json

from cli_fakes import Run


def rows(text: str) -> list[list[str]]:
    lines = text.splitlines()[3:-1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_each_move_shows_its_instance_by_name_in_order_of_source_host_then_name():
    run = Run(["migration-list"])

    assert run.code == 0, run.err
    assert rows(run.out) == [
        # inst-9 is known to no node (deleted since): no name, still listed.
        ["inst-9", "-", "cmp1", "-", "-", "failed", "no room for it in the aggregate", "-"],
        ["inst-1", "web-1", "cmp1", "cmp3", "cmp3", "done", "-", "2023-11-14T22:13:20.000000"],
        ["inst-2", "-", "cmp2", "-", "-", "pending", "-", "-"],
    ]
    assert run.node.calls == [
        ("node_instances", (), {"instance_uuids": ["inst-1", "inst-2", "inst-9"]})
    ]


def test_migration_list_of_one_host_as_json_carries_the_instance_name():
    run = Run(["migration-list", "--host", "cmp1", "--json"])

    moves = json.loads(run.out)
    assert run.fake.calls == [("list_migrations", ("cmp1",), {})]
    assert [(m["instance_uuid"], m["instance_name"], m["state"]) for m in moves] == [
        ("inst-9", "", "failed"),
        ("inst-1", "web-1", "done"),
    ]
