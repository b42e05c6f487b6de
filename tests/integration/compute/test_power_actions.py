"""host-action end to end in one process: the registry's HostService reaches a real compute
agent over real channels. Fake hosts go down (shutdown) or down and up again (reboot) as the
registry sees them; bare-metal nodes change power through their BMCs; what a driver cannot
do, and who may not ask, is refused with a sentence."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import compute_pb2, host_pb2, host_pb2_grpc, registry_pb2, registry_pb2_grpc
from grpc import aio

from services.compute.app import Agent
from services.compute.drivers.base import PowerState
from services.compute.drivers.fake import ironic_node_uuid
from services.registry.liveness import utcnow
from tests.integration.compute.support import agent_stub
from tests.integration.registry.support import key, register
from tests.ports import free_port

WAIT_S = 10  # a generous bound, so a broken action fails the test instead of hanging it
DOWN_TIME_S = 1.0
REPORT_S = 0.2
REBOOT = host_pb2.POWER_ACTION_REBOOT
SHUTDOWN = host_pb2.POWER_ACTION_SHUTDOWN
STARTUP = host_pb2.POWER_ACTION_STARTUP
TOKENS = """
[[tokens]]
name = "ops"
token = "admin-secret"
roles = ["admin"]

[[tokens]]
name = "viewer"
token = "reader-secret"
roles = ["reader"]

[[tokens]]
name = "agent-ironic-1"
token = "agent-secret"
roles = ["agent"]
host = "ironic-1"

[[tokens]]
name = "registry"
token = "registry-secret"
roles = ["admin"]
"""


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def action(host: str, what: int, nodename: str = "") -> host_pb2.HostActionRequest:
    return host_pb2.HostActionRequest(host=host, action=what, nodename=nodename)  # type: ignore[arg-type]


async def refused(call: Awaitable[object], code: grpc.StatusCode):
    with pytest.raises(aio.AioRpcError) as err:
        await call
    assert err.value.code() is code, err.value.details()
    return from_rpc_error(err.value)


async def terminated(server: aio.Server) -> bool:
    """Whether a server has stopped. (Asking its old port instead could reach whatever took
    the port since, on a machine where other tests run.)"""
    return not await server.wait_for_termination(5)  # True: timed out, still serving


async def until(check: Callable[[], Awaitable[bool]], within_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"not true within {within_s} s"
        await asyncio.sleep(0.05)


async def heard(agent: Agent) -> None:
    """Wait until the agent registered and its first heartbeat was answered. (A registry
    on SQLite whose heartbeat stream is cut while it reads the new service can keep a
    transaction open and take 20 s to stop: a registry issue of its own, kept out of here.)"""
    reporter = agent.reporter
    assert reporter is not None
    await asyncio.wait_for(reporter.registered.wait(), WAIT_S)

    async def beaten() -> bool:
        return reporter.heartbeats >= 1

    await until(beaten)


class Cloud:
    """A registry on the real clock (a host is down after DOWN_TIME_S without a heartbeat)
    and its stubs; agents started here report to it."""

    def __init__(self, registry, channel: aio.Channel, start_compute, tmp_path: Path) -> None:
        self.registry = registry
        self.hosts = host_pb2_grpc.HostServiceStub(channel)
        self.services = registry_pb2_grpc.RegistryServiceStub(channel)
        self._start_compute = start_compute
        self._tmp_path = tmp_path

    async def agent(self, host: str, driver: str = "fake", **overrides: object) -> Agent:
        agent = await self._start_compute(
            host=host,
            driver=driver,
            data_dir=self._tmp_path / host,
            registry_url=self.registry.address,
            report_interval=REPORT_S,
            report_self=True,
            **overrides,
        )
        await heard(agent)
        return agent

    async def service(self, host: str) -> registry_pb2.Service:
        request = registry_pb2.GetServiceRequest(service=key(host))
        return (await self.services.GetService(request)).service


@pytest.fixture
async def cloud(start, start_compute, tmp_path):
    registry = await start(clock=utcnow, service_down_time=DOWN_TIME_S, report_interval=REPORT_S)
    async with aio.insecure_channel(registry.address) as channel:
        yield Cloud(registry, channel, start_compute, tmp_path)


async def test_shutdown_stops_a_fake_agent_and_the_registry_reports_its_host_down(cloud, caplog):
    agent = await cloud.agent("kvm-1")
    assert (await cloud.service("kvm-1")).up

    with caplog.at_level(logging.INFO, logger="services.registry.power"):
        answer = await cloud.hosts.HostAction(action("kvm-1", SHUTDOWN))
    assert (answer.host, answer.action, answer.result) == ("kvm-1", SHUTDOWN, "shutting down")
    assert answer.HasField("requested_at")
    [logged] = [r for r in caplog.records if r.getMessage() == "host action"]
    assert (logged.by, logged.host, logged.action, logged.result) == (
        "anonymous",
        "kvm-1",
        "shutdown",
        "shutting down",
    )

    # The agent answered, then stopped: no heartbeats, no server, and the registry says down.
    await asyncio.wait_for(agent.stop_requested.wait(), WAIT_S)
    assert agent.stopped and agent.reporter is None and await terminated(agent.server)

    async def down() -> bool:
        return not (await cloud.service("kvm-1")).up

    await until(down)
    # Asking anything more of it now: UNAVAILABLE, saying when it was last seen.
    error = await refused(
        cloud.hosts.HostAction(action("kvm-1", REBOOT)), grpc.StatusCode.UNAVAILABLE
    )
    assert error.reason == "AGENT_DOWN"
    assert "kvm-1 is down (last seen 20" in error.message and " UTC)" in error.message


async def test_reboot_takes_a_fake_agent_down_and_back_on_the_same_endpoint(cloud):
    # A port below the ephemeral range: while the agent is off, no outgoing connection of
    # another process on this machine can take it.
    agent = await cloud.agent("kvm-1", listen=f"127.0.0.1:{free_port()}")
    before = await cloud.service("kvm-1")
    port = agent.port
    # No BERTH_FAKE_REBOOT_SECONDS: off for the registry's down time and two heartbeats.
    assert agent.reboot_seconds(None) == pytest.approx(DOWN_TIME_S + 2 * REPORT_S)

    answer = await cloud.hosts.HostAction(action("kvm-1", REBOOT))
    assert answer.result == "rebooting"

    seen: list[bool] = []

    async def down_then_up() -> bool:
        service = await cloud.service("kvm-1")
        if not seen or seen[-1] != service.up:
            seen.append(service.up)
        return seen[-2:] == [False, True] and service.version > before.version

    await until(down_then_up)
    after = await cloud.service("kvm-1")
    assert after.uuid == before.uuid and after.endpoint == before.endpoint
    assert after.last_seen_up.ToDatetime() > before.last_seen_up.ToDatetime()
    assert agent.port == port and not agent.stopped and not agent.stop_requested.is_set()
    async with agent_stub(agent) as stub:  # serving again, on the same port
        await stub.ListInstances(compute_pb2.ListInstancesRequest(), timeout=5)


@pytest.mark.parametrize("driver", ["fake", "fake-cluster"])
async def test_a_fake_host_cannot_start_itself_up(cloud, driver):
    agent = await cloud.agent("kvm-1", driver)
    error = await refused(
        cloud.hosts.HostAction(action("kvm-1", STARTUP)), grpc.StatusCode.UNIMPLEMENTED
    )
    assert error.message.startswith(
        f"the {driver} driver does not support the startup power action"
    )
    assert error.reason == "POWER_ACTION_UNSUPPORTED"
    assert error.metadata == {"driver": driver, "action": "startup"}
    assert not agent.stopped and (await cloud.service("kvm-1")).up


async def test_the_local_driver_does_no_power_action(cloud):
    agent = await cloud.agent("local-1", "local")
    for what, name in ((STARTUP, "startup"), (SHUTDOWN, "shutdown"), (REBOOT, "reboot")):
        error = await refused(
            cloud.hosts.HostAction(action("local-1", what)), grpc.StatusCode.UNIMPLEMENTED
        )
        assert f"the local driver does not support the {name} power action" in error.message
    assert not agent.stopped


async def test_bare_metal_nodes_change_power_through_their_bmcs_and_the_agent_stays_up(
    cloud, caplog
):
    agent = await cloud.agent("ironic-1", "fake-ironic", fake_nodes=3)
    nodes = [ironic_node_uuid("ironic-1", i) for i in range(3)]
    off, on = host_pb2.POWER_STATE_OFF, host_pb2.POWER_STATE_ON

    with caplog.at_level(logging.INFO, logger="services.compute.power"):
        answer = await cloud.hosts.HostAction(action("ironic-1", SHUTDOWN))
    assert answer.result == "powered off 3 nodes through the BMC"
    assert sorted((n.nodename, n.power_state) for n in answer.nodes) == [
        (n, off) for n in sorted(nodes)
    ]
    [logged] = [r for r in caplog.records if r.getMessage() == "host power action"]
    assert logged.host == "ironic-1" and all(f"{n}=power off" in logged.power for n in nodes)

    # One node back on; the others stay off.
    answer = await cloud.hosts.HostAction(action("ironic-1", STARTUP, nodes[1]))
    assert [(n.nodename, n.power_state) for n in answer.nodes] == [(nodes[1], on)]
    assert answer.result == f"powered on node {nodes[1]} through the BMC"
    assert agent.manager.driver.power == {  # type: ignore[attr-defined]
        nodes[0]: PowerState.OFF,
        nodes[1]: PowerState.ON,
        nodes[2]: PowerState.OFF,
    }
    answer = await cloud.hosts.HostAction(action("ironic-1", REBOOT))
    assert {n.power_state for n in answer.nodes} == {on} and len(answer.nodes) == 3

    # The conductor never went away.
    await asyncio.sleep(DOWN_TIME_S + REPORT_S)
    assert (await cloud.service("ironic-1")).up and not agent.stopped
    missing = await refused(
        cloud.hosts.HostAction(action("ironic-1", REBOOT, "no-such-node")),
        grpc.StatusCode.NOT_FOUND,
    )
    assert missing.reason == "NODE_NOT_FOUND" and "no-such-node" in missing.message


async def test_an_unknown_host_is_not_found_and_an_unknown_action_names_the_field(cloud):
    await cloud.agent("kvm-1")
    error = await refused(
        cloud.hosts.HostAction(action("ghost", REBOOT)), grpc.StatusCode.NOT_FOUND
    )
    assert error.reason == "HOST_NOT_FOUND" and "ghost" in error.message
    for bad in (0, 42):
        error = await refused(
            cloud.hosts.HostAction(action("kvm-1", bad)), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert [v.field for v in error.violations] == ["action"]
    assert (await cloud.service("kvm-1")).up


async def test_a_host_whose_agent_is_down_is_unavailable_with_its_last_seen_time(start, clock):
    registry = await start(service_down_time=DOWN_TIME_S)
    async with aio.insecure_channel(registry.address) as channel:
        services = registry_pb2_grpc.RegistryServiceStub(channel)
        hosts = host_pb2_grpc.HostServiceStub(channel)
        await register(services, "kvm-9")  # at the fake clock's 2026-01-01 00:00:00
        clock.advance(DOWN_TIME_S + 1)
        error = await refused(
            hosts.HostAction(action("kvm-9", REBOOT)), grpc.StatusCode.UNAVAILABLE
        )
    assert error.reason == "AGENT_DOWN"
    assert "last seen 2026-01-01 00:00:00 UTC" in error.message
    assert error.metadata["last_seen"] == "last seen 2026-01-01 00:00:00 UTC"


async def test_power_actions_are_for_admins_only(start, start_compute, tmp_path):
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(TOKENS)
    registry = await start(auth_file=tokens, token="registry-secret", clock=utcnow)
    agent = await start_compute(
        host="ironic-1",
        driver="fake-ironic",
        fake_nodes=2,
        auth_file=tokens,
        token="agent-secret",
        registry_url=registry.address,
        report_self=True,
    )
    await heard(agent)
    request = action("ironic-1", SHUTDOWN)
    async with aio.insecure_channel(registry.address) as channel:
        hosts = host_pb2_grpc.HostServiceStub(channel)
        for token in ("reader-secret", "agent-secret"):
            call = hosts.HostAction(request, metadata=bearer(token))
            error = await refused(call, grpc.StatusCode.PERMISSION_DENIED)
            assert "HostAction" in error.message
        # The agent itself refuses anyone but an admin, its own host's agent token included.
        async with agent_stub(agent) as stub:
            direct = compute_pb2.HostPowerActionRequest(action=SHUTDOWN)
            for token in ("reader-secret", "agent-secret"):
                call = stub.HostPowerAction(direct, metadata=bearer(token))
                await refused(call, grpc.StatusCode.PERMISSION_DENIED)
        assert set(agent.manager.driver.power.values()) == {PowerState.ON}  # type: ignore[attr-defined]
        # An admin's request goes through: the registry calls the agent with its own token.
        answer = await hosts.HostAction(request, metadata=bearer("admin-secret"))
    assert {n.power_state for n in answer.nodes} == {host_pb2.POWER_STATE_OFF}


async def test_an_agent_stopped_while_rebooting_stays_stopped(start_compute):
    agent = await start_compute(fake_reboot_seconds=30)
    async with agent_stub(agent) as stub:
        ghost = compute_pb2.HostPowerActionRequest(action=REBOOT, nodename="kvm-9")
        await refused(stub.HostPowerAction(ghost), grpc.StatusCode.NOT_FOUND)
        # The fake host's one node names the whole host.
        request = compute_pb2.HostPowerActionRequest(action=REBOOT, nodename="kvm-1")
        answer = await stub.HostPowerAction(request)
    assert answer.result == "rebooting"

    async def halted() -> bool:
        return agent.halted

    await until(halted)
    assert await terminated(agent.server)
    started = time.monotonic()
    await agent.stop(0)
    assert time.monotonic() - started < 5, "stop waits for no reboot"
    assert agent.power_task is not None and agent.power_task.done()
    assert agent.halted and await terminated(agent.server)
