"""Names kept: `berth boot web --count 2` names its instances web-1 and web-2 through the
agent, its snapshots and the node service; the CLI shows them and takes a unique one
wherever it takes a uuid."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.berth_up import BERTH, Stack, berth_up
from tests.e2e.fleet import eventually

pytestmark = pytest.mark.slow


def berth(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BERTH, *stack.endpoints, *args], capture_output=True, text=True, timeout=120
    )


def booted(stack: Stack, *args: str) -> None:
    done = berth(stack, "boot", *args)
    assert done.returncode == 0, done.stderr


def test_names_travel_with_instances_and_stand_for_their_uuids(tmp_path):
    with berth_up(tmp_path / "data") as stack:
        web = berth(stack, "boot", "web", "--flavor", "m1.small", "--count", "2")
        assert web.returncode == 0, web.stderr
        assert "web-1 (" in web.stderr and "web-2 (" in web.stderr
        for _ in range(2):  # names need not be unique
            booted(stack, "twin", "--flavor", "m1.tiny")

        def listed() -> list[dict]:
            return json.loads(berth(stack, "--json", "server-list").stdout)

        # An agent answers a build once the node service has it (unless that is slow).
        eventually(lambda: len(listed()) == 4)
        by_name = {(i["name"], i["flavor_name"], i["state"]) for i in listed()}
        assert {("web-1", "m1.small", "active"), ("twin", "m1.tiny", "active")} <= by_name
        picked = berth(stack, "server-list", "-f", "json", "-c", "Name", "-c", "Flavor")
        assert {"Name": "web-2", "Flavor": "m1.small"} in json.loads(picked.stdout)
        host = next(i["host"] for i in listed() if i["name"] == "web-1")
        servers = berth(stack, "hypervisor-servers", "--host", host, "-f", "value", "-c", "Name")
        assert "web-1" in servers.stdout.split()

        # A hint names an instance by its name: not on web-1's host.
        booted(stack, "apart", "--flavor", "m1.tiny", "--hint", "different_host=web-1")
        apart = eventually(lambda: [i for i in listed() if i["name"] == "apart"])
        assert apart[0]["host"] != host
        refused = berth(stack, "boot", "--flavor", "m1.tiny", "--hint", "same_host=twin")
        assert refused.returncode == 1
        assert "2 instances are named 'twin'" in refused.stderr

        deleted = berth(stack, "--json", "delete", "web-1")
        assert deleted.returncode == 0, deleted.stderr
        (result,) = json.loads(deleted.stdout)
        assert (result["name"], result["status"]) == ("web-1", "deleted")
        ambiguous = berth(stack, "delete", "twin")
        assert ambiguous.returncode == 1
        assert "2 instances are named 'twin'" in ambiguous.stderr
