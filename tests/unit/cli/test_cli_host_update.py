"""berth host-update: what it asks the registry, and how it shows the progress it streams."""

from __future__ import annotations

import io
import json

import pytest
from berth.cli.host_update import _Progress
from berth.v1 import host_pb2 as hpb

from tests.unit.cli.cli_fakes import FakeRegistry, Run

UUID_A = "11111111-1111-4111-8111-111111111111"
UUID_B = "22222222-2222-4222-8222-222222222222"


def progress(host: str = "cmp1") -> list[hpb.UpdateHostResponse]:
    """A pass of three instances: one moves, one more, the last stays."""
    stays = hpb.InstanceMoveFailure(instance_uuid=UUID_B, reason="no room for it in the aggregate")
    common = {
        "host": host,
        "status": hpb.HOST_STATUS_DISABLED,
        "maintenance_mode": hpb.MAINTENANCE_MODE_ENABLED,
    }
    return [
        hpb.UpdateHostResponse(**common, moved=0, remaining=3),
        hpb.UpdateHostResponse(**common, moved=1, remaining=2),
        hpb.UpdateHostResponse(**common, moved=2, remaining=1),
        hpb.UpdateHostResponse(**common, moved=2, remaining=0, failures=[stays], done=True),
    ]


@pytest.mark.parametrize(
    ("argv", "sent"),
    [
        (
            ["host-update", "cmp1", "--status", "disable", "--reason", "disks"],
            {"status": hpb.HOST_STATUS_DISABLED, "disabled_reason": "disks"},
        ),
        (
            ["host-update", "cmp1", "--status", "enable"],
            {"status": hpb.HOST_STATUS_ENABLED, "disabled_reason": ""},
        ),
        (
            ["host-update", "cmp1", "--maintenance", "enable"],
            {"maintenance_mode": hpb.MAINTENANCE_MODE_ENABLED},
        ),
        (
            ["host-update", "cmp1", "--maintenance", "disable"],
            {"maintenance_mode": hpb.MAINTENANCE_MODE_DISABLED},
        ),
    ],
)
def test_each_form_asks_the_registry_for_one_update(argv, sent):
    run = Run(argv)
    assert run.code == 0, run.err
    assert run.fake.calls == [("update_host", ("cmp1",), sent)]


@pytest.mark.parametrize(
    "argv",
    [
        ["host-update", "cmp1"],
        ["host-update", "cmp1", "--status", "enable", "--maintenance", "enable"],
        ["host-update", "cmp1", "--status", "on"],
        ["host-update", "cmp1", "--status", "enable", "--reason", "why"],
        ["host-update", "cmp1", "--maintenance", "enable", "--reason", "why"],
    ],
)
def test_bad_combinations_are_usage_errors_and_ask_nothing(argv):
    run = Run(argv)
    assert run.code == 2
    assert run.fake.calls == []


def test_maintenance_shows_progress_lines_a_summary_and_what_stayed_exiting_1():
    fake = FakeRegistry()
    fake.progress = progress()
    run = Run(["host-update", "cmp1", "--maintenance", "enable"], fake)
    assert run.code == 1
    # Not a terminal: one line per change.
    assert run.err.splitlines() == [
        "cmp1: 0/3 moved, 0 stayed, 3 remaining",
        "cmp1: 1/3 moved, 0 stayed, 2 remaining",
        "cmp1: 2/3 moved, 0 stayed, 1 remaining",
        "cmp1: 2/3 moved, 1 stayed, 0 remaining",
    ]
    assert "disabled" in run.out and "enabled" in run.out
    assert UUID_B in run.out and "no room for it in the aggregate" in run.out


def test_json_prints_one_object_per_event():
    fake = FakeRegistry()
    fake.progress = progress()
    run = Run(["host-update", "cmp1", "--maintenance", "enable", "--json"], fake)
    assert run.code == 1
    events = [json.loads(line) for line in run.out.splitlines()]
    assert [e["moved"] for e in events] == [0, 1, 2, 2]
    assert events[-1]["done"] and events[-1]["failures"][0]["instance_uuid"] == UUID_B
    assert run.err == ""


def test_everything_moved_exits_0():
    fake = FakeRegistry()
    fake.progress = [
        hpb.UpdateHostResponse(host="cmp1", moved=1, remaining=1),
        hpb.UpdateHostResponse(host="cmp1", moved=2, done=True),
    ]
    run = Run(["host-update", "cmp1", "--maintenance", "enable"], fake)
    assert run.code == 0, run.err
    assert UUID_A not in run.out and "instance_uuid" not in run.out


def test_progress_says_what_the_moves_wait_for_and_until_when():
    fake = FakeRegistry()
    waiting = hpb.UpdateHostResponse(
        host="cmp1",
        moved=1,
        remaining=1,
        waiting="the compute agent of host kvm-2 is unreachable; retrying",
    )
    waiting.waiting_until.FromSeconds(1_700_000_040)  # 22:14:00 UTC
    fake.progress = [waiting, hpb.UpdateHostResponse(host="cmp1", moved=2, done=True)]
    run = Run(["host-update", "cmp1", "--maintenance", "enable"], fake)
    assert run.code == 0, run.err
    assert (
        "cmp1: 1/2 moved, 0 stayed, 1 remaining; waiting: the compute agent of host kvm-2 "
        "is unreachable; retrying until 22:14:00 UTC"
    ) in run.err.splitlines()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    screen = Terminal()
    bar = _Progress(screen, enabled=True)
    for message in progress():
        bar.update(message)
    bar.end()
    drawn = screen.getvalue()
    assert drawn.count("\r") == 4 and drawn.endswith("\n") and drawn.count("\n") == 1
    assert "cmp1 [" + "#" * 30 + "] 2/3 moved, 1 stayed, 0 remaining" in drawn
    assert "cmp1 [" + "." * 30 + "] 0/3 moved" in drawn
