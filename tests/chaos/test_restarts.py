"""kill -9 and restart, process by process: afterwards nothing is lost or duplicated and
every process is heartbeating again."""

from __future__ import annotations

import signal
import time

import pytest
from berth.client import RegistryClient

from tests.chaos.conftest import DOWN_TIME
from tests.e2e.fleet import Fleet, eventually

pytestmark = pytest.mark.chaos


def services(fleet: Fleet) -> dict[tuple[str, str], object]:
    with RegistryClient.connect(fleet.registry) as registry:
        rows = list(registry.list_services())
    keys = [(s.host, s.binary) for s in rows]
    assert len(keys) == len(set(keys)), f"duplicate services: {sorted(keys)}"
    return {(s.host, s.binary): s for s in rows}


def test_every_process_heartbeats_again_after_the_registry_is_killed(chaos_fleet):
    fleet = chaos_fleet
    for host in ("kvm-1", "kvm-2"):
        fleet.agent(host, "fake")
    expected = {
        ("registry", "berth-registry"),
        ("node", "berth-node"),
        ("kvm-1", "berth-compute"),
        ("kvm-2", "berth-compute"),
    }
    before = eventually(lambda: (s := services(fleet)).keys() == expected and s, 30)

    fleet.send("registry", signal.SIGKILL)
    fleet.restart("registry")
    back = time.monotonic()

    # Nobody is ever reported down: the registry judges nobody for DOWN_TIME after it
    # starts listening, and every process beats again within that grace. Watched until
    # well past it, on heartbeats received after the restart.
    while True:
        now = services(fleet)
        assert now.keys() == expected, sorted(now)
        elapsed = time.monotonic() - back
        for key, service in now.items():
            assert service.uuid == before[key].uuid, f"{key} changed identity"
            assert service.up, f"{key} reported down {elapsed:.1f} s after the restart"
        if elapsed > 2 * DOWN_TIME:
            break
        time.sleep(0.2)
    stalled = [k for k in expected if now[k].report_count <= before[k].report_count]
    assert not stalled, f"no heartbeat since the restart from {stalled}"
