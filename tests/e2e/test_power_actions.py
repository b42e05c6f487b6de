"""Real processes: `berth host-action` through the registry reboots a fake agent process (the
registry sees its host go down, then come back on the same endpoint) and shuts another one
down (the process exits 0 and its host stays down)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.fleet import Fleet, eventually
from tests.e2e.test_processes import BERTH

pytestmark = pytest.mark.slow

DOWN_TIME_S = 1.5  # with heartbeats every 0.5 s (the fleet's)
REBOOT_S = "3"  # longer than the down time and a heartbeat, so the registry sees it down


@pytest.fixture
def fleet(tmp_path) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        fleet.services(down_time=DOWN_TIME_S, wait=False)
        fleet.agent("kvm-1", "fake", wait=False, BERTH_FAKE_REBOOT_SECONDS=REBOOT_S)
        fleet.agent("kvm-2", "fake", wait=False)
        fleet.wait_serving()
        yield fleet
    finally:
        fleet.close()


def compute_service(fleet: Fleet, host: str) -> dict[str, Any]:
    listed = fleet.berth("service-list", "--host", host, "--binary", "berth-compute")
    assert len(listed) == 1, f"{host} has not registered yet"
    return listed[0]


def cli(fleet: Fleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BERTH, "--registry", fleet.registry, *args], capture_output=True, text=True, timeout=30
    )


def test_host_action_reboots_a_fake_agent_and_shuts_another_down(fleet):
    for host in ("kvm-1", "kvm-2"):
        eventually(lambda host=host: compute_service(fleet, host)["up"])
    before = compute_service(fleet, "kvm-1")
    agent = fleet.procs["kvm-1"]

    # Reboot: the answer first, then the host is away long enough to be reported down.
    answer = fleet.berth("host-action", "kvm-1", "--action", "reboot")
    assert (answer["host"], answer["action"], answer["result"]) == (
        "kvm-1",
        "reboot",
        "rebooting",
    )
    eventually(lambda: not compute_service(fleet, "kvm-1")["up"], within_s=60)

    def back() -> bool:
        service = compute_service(fleet, "kvm-1")
        return service["up"] and int(service["version"]) > int(before["version"])

    eventually(back, within_s=90)
    after = compute_service(fleet, "kvm-1")
    assert after["endpoint"] == before["endpoint"] and after["uuid"] == before["uuid"]
    assert agent.poll() is None, "a reboot keeps the agent's process"
    assert "host back up after its reboot" in fleet.log("kvm-1")

    # Shutdown, asked as a person would (a table): the agent answers, then its process ends.
    done = cli(fleet, "host-action", "kvm-2", "--action", "shutdown")
    assert done.returncode == 0, done.stderr
    assert "| kvm-2 | shutdown     | shutting down |" in done.stdout
    assert fleet.procs["kvm-2"].wait(timeout=15) == 0, fleet.tail("kvm-2")
    # Who asked is in the registry's log; the agent logs the action under the same request id.
    asked_line = "host action by=anonymous host=kvm-2 action=shutdown"
    [asked] = [line for line in fleet.log("registry").splitlines() if asked_line in line]
    request_id = asked.rsplit("request_id=", 1)[1]
    [acted] = [line for line in fleet.log("kvm-2").splitlines() if "host power action" in line]
    assert acted.endswith(f"request_id={request_id}") and 'result="shutting down"' in acted
    eventually(lambda: not compute_service(fleet, "kvm-2")["up"], within_s=60)
    refused = cli(fleet, "host-action", "kvm-2", "--action", "startup")
    assert refused.returncode == 1
    assert refused.stderr.startswith("ERROR (Unavailable): the compute agent of host kvm-2 is down")
    assert "(last seen 20" in refused.stderr and "Traceback" not in refused.stderr
    assert compute_service(fleet, "kvm-1")["up"]
