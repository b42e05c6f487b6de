"""Power actions of each driver: a fake host goes off with its agent, a rack powers its nodes
through their BMCs, and what a driver cannot do is refused in one sentence naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from berth.client.errors import InvalidArgument, NotFound, Unimplemented
from berth.v1 import host_pb2

from services.compute import power
from services.compute.drivers import build_driver
from services.compute.drivers.base import (
    AfterAnswer,
    Driver,
    NodeInventory,
    PowerAction,
    PowerOutcome,
    PowerState,
)
from services.compute.drivers.fake import (
    FakeClusterDriver,
    FakeDriver,
    FakeIronicDriver,
    ironic_node_uuid,
)
from services.compute.drivers.local import LocalDriver
from services.compute.settings import ComputeSettings
from services.compute.state import InstanceRecord, InstanceState, Resources

MACHINE = Resources(16, 65536, 1000)


def self_hosted() -> list[Driver]:
    return [
        FakeDriver("kvm-1", "127.0.0.1", MACHINE, reboot_s=2.5),
        FakeClusterDriver("vmware-1", "127.0.0.1", MACHINE, 3, reboot_s=2.5),
    ]


def rack(count: int = 3) -> FakeIronicDriver:
    return FakeIronicDriver("ironic-1", "127.0.0.1", MACHINE, count, "rack-1")


@pytest.mark.parametrize("driver", self_hosted(), ids=lambda d: d.name)
async def test_a_fake_host_shuts_down_with_its_agent_and_reboots_for_a_while(driver):
    down = await driver.power_action(PowerAction.SHUTDOWN, None)
    assert (down.result, down.then, down.nodes) == ("shutting down", AfterAnswer.STOP, ())
    reboot = await driver.power_action(PowerAction.REBOOT, None)
    assert (reboot.result, reboot.then, reboot.off_s) == ("rebooting", AfterAnswer.RESTART, 2.5)


@pytest.mark.parametrize("driver", self_hosted(), ids=lambda d: d.name)
async def test_a_fake_host_cannot_start_itself_and_says_which_driver_and_action(driver):
    with pytest.raises(Unimplemented) as err:
        await driver.power_action(PowerAction.STARTUP, None)
    assert err.value.message.startswith(
        f"the {driver.name} driver does not support the startup power action: a host that "
        "is off cannot start itself"
    )
    assert err.value.reason == "POWER_ACTION_UNSUPPORTED"
    assert err.value.metadata == {"driver": driver.name, "action": "startup"}


async def test_without_a_reboot_time_the_agent_decides_how_long_a_fake_host_is_off():
    outcome = await FakeDriver("kvm-1", "", MACHINE).power_action(PowerAction.REBOOT, None)
    assert outcome.off_s is None


async def test_a_rack_powers_every_node_through_its_bmc_and_keeps_each_nodes_state():
    driver = rack()
    nodes = [ironic_node_uuid("rack-1", i) for i in range(3)]
    assert driver.power == dict.fromkeys(nodes, PowerState.ON)

    off = await driver.power_action(PowerAction.SHUTDOWN, None)
    assert off.then is AfterAnswer.STAY  # the conductor stays up
    assert off.result == "powered off 3 nodes through the BMC"
    assert off.nodes == tuple((n, PowerState.OFF) for n in nodes)
    assert driver.power == dict.fromkeys(nodes, PowerState.OFF)

    on = await driver.power_action(PowerAction.STARTUP, nodes[2])
    assert (on.result, on.nodes) == (
        f"powered on node {nodes[2]} through the BMC",
        ((nodes[2], PowerState.ON),),
    )
    assert [driver.power[n] for n in nodes] == [PowerState.OFF, PowerState.OFF, PowerState.ON]

    rebooted = await driver.power_action(PowerAction.REBOOT, nodes[0])
    assert rebooted.nodes == ((nodes[0], PowerState.ON),)  # off, then on again
    assert driver.power[nodes[1]] is PowerState.OFF


async def test_a_rack_refuses_a_node_it_does_not_have_and_changes_nothing():
    driver = rack()
    with pytest.raises(NotFound) as err:
        await driver.power_action(PowerAction.SHUTDOWN, "no-such-node")
    assert err.value.reason == "NODE_NOT_FOUND" and "no-such-node" in err.value.message
    assert set(driver.power.values()) == {PowerState.ON}


async def test_deploying_on_a_powered_off_bare_metal_node_powers_it_on():
    driver = rack(1)
    [node] = driver.power
    await driver.power_action(PowerAction.SHUTDOWN, None)
    instance = InstanceRecord(
        uuid="6f1c1f9e-2a1b-4c3d-8e9f-0a1b2c3d4e5f",
        project_id="demo",
        user_id="",
        resources=MACHINE,
        state=InstanceState.BUILDING,
        claim_id="",
        nodename=node,
    )
    await driver.spawn(instance, node)
    assert driver.power[node] is PowerState.ON


@pytest.mark.parametrize("action", list(PowerAction))
async def test_the_local_driver_does_no_power_action(tmp_path: Path, action):
    with pytest.raises(Unimplemented) as err:
        await LocalDriver("box", "127.0.0.1", tmp_path).power_action(action, None)
    assert err.value.message.startswith(
        f"the local driver does not support the {action.value} power action"
    )
    assert err.value.metadata == {"driver": "local", "action": action.value}


class _Bare(Driver):
    """A driver that implements only what it must."""

    name = "bare"

    async def nodes(self) -> list[NodeInventory]:
        return []

    async def spawn(self, instance: InstanceRecord, nodename: str) -> None:
        return None

    async def destroy(self, instance: InstanceRecord) -> None:
        return None


async def test_a_driver_that_says_nothing_about_power_refuses_every_action():
    with pytest.raises(Unimplemented) as err:
        await _Bare().power_action(PowerAction.REBOOT, None)
    assert err.value.message == "the bare driver does not support the reboot power action"


def test_the_reboot_time_setting_reaches_both_self_hosted_fakes(tmp_path: Path):
    for driver in ("fake", "fake-cluster"):
        settings = ComputeSettings(driver=driver, data_dir=tmp_path, fake_reboot_seconds=7)
        assert build_driver(settings).reboot_s == 7  # type: ignore[attr-defined]
    assert ComputeSettings(data_dir=tmp_path).fake_reboot_seconds is None
    with pytest.raises(ValueError, match="fake_reboot_seconds"):
        ComputeSettings(data_dir=tmp_path, fake_reboot_seconds=0)


@pytest.mark.parametrize("value", [0, 9])
def test_an_unset_or_unknown_action_is_invalid_naming_the_field(value):
    with pytest.raises(InvalidArgument) as err:
        power.action("action", value)
    assert [v.field for v in err.value.violations] == ["action"]


def test_every_proto_action_maps_to_a_driver_action_and_back():
    for number, action in power.ACTIONS.items():
        assert power.action("action", number) is action
        answer = power.response(action, PowerOutcome("done", nodes=(("n1", PowerState.OFF),)))
        assert answer.action == number and answer.result == "done"
        assert [(n.nodename, n.power_state) for n in answer.nodes] == [
            ("n1", host_pb2.POWER_STATE_OFF)
        ]
    assert set(power.ACTIONS) == {
        v.number for v in host_pb2.PowerAction.DESCRIPTOR.values if v.number
    }
