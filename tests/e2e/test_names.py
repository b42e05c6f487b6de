"""Names kept: `berth boot web --count 2` names its instances web-1 and web-2 through the
agent, its snapshots and the node service; the CLI shows them and takes a unique one
wherever it takes a uuid."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.e2e.berth_up import BERTH, Stack, berth_up

pytestmark = pytest.mark.slow


def berth(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BERTH, *stack.endpoints, *args], capture_output=True, text=True, timeout=120
    )


def test_names_travel_with_instances_and_stand_for_their_uuids(tmp_path):
    with berth_up(tmp_path / "data") as stack:
        booted = berth(stack, "boot", "web", "--flavor", "m1.small", "--count", "2")
        assert booted.returncode == 0, booted.stderr
        assert "web-1 (" in booted.stderr and "web-2 (" in booted.stderr
        for _ in range(2):  # names need not be unique
            booted = berth(stack, "boot", "twin", "--flavor", "m1.tiny")
            assert booted.returncode == 0, booted.stderr

        def listed() -> list[dict]:
            return json.loads(berth(stack, "--json", "server-list").stdout)

        # The node service has them once each agent's snapshot says so.
        deadline = time.monotonic() + 60
        while len(listed()) < 4:
            assert time.monotonic() < deadline, listed()
            time.sleep(0.3)
        by_name = {(i["name"], i["flavor_name"]) for i in listed()}
        assert {("web-1", "m1.small"), ("web-2", "m1.small"), ("twin", "m1.tiny")} <= by_name
        table = berth(stack, "server-list", "-f", "value", "-c", "Name", "-c", "Flavor")
        assert "web-1 m1.small" in table.stdout.splitlines()
        host = next(i["host"] for i in listed() if i["name"] == "web-1")
        servers = berth(stack, "hypervisor-servers", "--host", host, "-f", "value", "-c", "Name")
        assert "web-1" in servers.stdout.split()

        deleted = berth(stack, "--json", "delete", "web-1")
        assert deleted.returncode == 0, deleted.stderr
        assert json.loads(deleted.stdout)[0]["status"] == "deleted"
        ambiguous = berth(stack, "delete", "twin")
        assert ambiguous.returncode == 1
        assert "2 instances are named 'twin'" in ambiguous.stderr
