"""`berth host-action`: a table of what was done (and, on bare metal, each node's power),
JSON with --json, and the server's sentence when it refuses."""

from __future__ import annotations

import json

from berth.client import errors
from cli_fakes import FakeRegistry, Run


def tables(text: str) -> list[list[list[str]]]:
    """Each table printed, as rows of cells (the header row first)."""
    found: list[list[list[str]]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("+") and (not found or previous.startswith("+")):
            found.append([])  # a table's top border, right after the last one's bottom
        elif line.startswith("|"):
            found[-1].append([cell.strip() for cell in line.strip("|").split("|")])
        previous = line
    return found


def test_host_action_shows_the_host_the_action_and_what_the_driver_did():
    run = Run(["host-action", "cmp1", "--action", "reboot"])

    assert run.code == 0, run.err
    [table] = tables(run.out)
    assert table == [
        ["HOST", "power_action", "result", "requested_at"],
        ["cmp1", "reboot", "rebooting", "2023-11-14T22:13:20.250000"],
    ]


def test_host_action_on_bare_metal_lists_each_nodes_power_state():
    run = Run(["host-action", "ironic-1", "--action", "shutdown"])

    assert run.code == 0, run.err
    action, nodes = tables(run.out)
    assert action[1][:3] == ["ironic-1", "shutdown", "powered off 2 nodes through the BMC"]
    assert nodes == [["NODE", "power_state"], ["bm-0", "off"], ["bm-1", "off"]]


def test_host_action_json_is_the_whole_answer_with_proto_names():
    shown = json.loads(Run(["host-action", "ironic-1", "--action", "shutdown", "--json"]).out)

    assert shown["host"] == "ironic-1" and shown["action"] == "shutdown"  # as the table says
    assert shown["requested_at"] == "2023-11-14T22:13:20.250Z"
    assert shown["nodes"] == [
        {"nodename": "bm-0", "power_state": "off"},
        {"nodename": "bm-1", "power_state": "off"},
    ]


def test_a_refused_action_prints_the_servers_sentence_and_exits_1():
    sentence = (
        "the fake driver does not support the startup power action: a host that is off "
        "cannot start itself (its agent runs on it); power cmp1 on from its BMC or console"
    )
    fake = FakeRegistry(fail={"host_action": errors.Unimplemented(sentence)})

    run = Run(["host-action", "cmp1", "--action", "startup"], fake)

    assert (run.code, run.out) == (1, "")
    assert run.err == f"ERROR (Unimplemented): {sentence}\n"


def test_an_action_on_a_down_host_says_when_it_was_last_seen():
    sentence = (
        "the compute agent of host cmp2 is down (last seen 2026-11-23 21:30:01 UTC); "
        "retry once it is back"
    )
    fake = FakeRegistry(fail={"host_action": errors.Unavailable(sentence)})

    run = Run(["host-action", "cmp2", "--action", "reboot"], fake)

    assert run.code == 1 and run.err == f"ERROR (Unavailable): {sentence}\n"
