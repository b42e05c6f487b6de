"""Assembles the compute agent: state, driver, manager (trackers + pushers), server, reporter.

A power action on a host whose agent runs on it (fake, fake-cluster) ends here, after the
answer is out: shutdown stops the agent (the process then exits 0); reboot stops it, waits,
and starts it again on the same endpoint, so the registry sees the host down, then up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from berth.v1 import compute_pb2, compute_pb2_grpc, node_pb2_grpc
from grpc import aio
from grpc_health.v1 import health

from services.common import auth
from services.common.channels import aio_channel, call_metadata
from services.common.process import Serving
from services.common.reporter import ServiceReporter
from services.common.server import ServiceSpec, StartupError, build_server, set_serving
from services.compute.drivers import build_driver
from services.compute.drivers.base import AfterAnswer, Driver, PowerOutcome
from services.compute.manager import ComputeManager
from services.compute.servicer import ComputeAgentServicer
from services.compute.settings import ComputeSettings
from services.compute.state import AgentState
from services.compute.tracker import CapacityPolicy, reserve_misfit

log = logging.getLogger(__name__)

SERVICE_NAMES = [compute_pb2.DESCRIPTOR.services_by_name["ComputeAgentService"].full_name]
_C = "/berth.v1.ComputeAgentService/"
# Building, deleting and power actions are admin-only; nothing here is an agent method.
POLICY = auth.MethodPolicy(read_methods=frozenset({_C + "ListInstances", _C + "GetMaintenance"}))
# The registry's default service_down_time, for a reboot of an agent that never heard the
# registry's own (it reports to none, or has not registered yet).
_REGISTRY_DOWN_TIME_S = 60.0


class _Booted(NamedTuple):
    """What one start of the agent runs; a reboot makes a new set."""

    server: aio.Server
    port: int
    health: health.aio.HealthServicer
    manager: ComputeManager
    state: AgentState
    node_channel: aio.Channel | None


@dataclass
class Agent(Serving):
    """A running compute agent; `stop()` undoes `start_agent()`.

    Tests reach the trackers through `agent.manager.trackers[nodename]`; after a change,
    `await tracker.wait_reported()` waits until the node service accepted the newest snapshot.
    A reboot replaces `server`, `health`, `manager`, `state` and `node_channel`.
    """

    settings: ComputeSettings
    report_self: bool
    server: aio.Server
    port: int
    health: health.aio.HealthServicer
    manager: ComputeManager
    state: AgentState
    node_channel: aio.Channel | None
    reporter: ServiceReporter | None = None
    stopped: bool = False
    # True between halting (for a reboot, or a stop) and serving again.
    halted: bool = False
    # Set once the agent stopped itself (its host was shut down): the process exits.
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)
    power_task: asyncio.Task[None] | None = None
    # Set by stop(): ends a reboot's time off at once.
    _stopping: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    async def drain(self) -> None:
        """Before the server drains: stop our own heartbeats."""
        await self.stop_reporting()

    async def stop(self, grace_s: float = 1.0) -> None:
        """Stop serving, reporting and pushing, and release the data directory; idempotent."""
        self.stopped = True
        self._stopping.set()
        task = self.power_task
        if task is not None and task is not asyncio.current_task():
            # A shutdown or reboot under way ends first; a reboot sees `stopped` and does not
            # start the agent again. Not cancelled: that could cut its halt short, or be
            # swallowed by a stop it interrupts (the manager's) and leave it sleeping.
            await asyncio.wait([task])
        await self._halt(grace_s)

    async def _halt(self, grace_s: float) -> None:
        if self.halted:
            return
        self.halted = True
        await self.drain()
        await self.server.stop(grace_s)
        await self.manager.stop()
        if self.node_channel is not None:
            await self.node_channel.close()
        self.state.close()

    def _adopt(self, booted: _Booted) -> None:
        self.server, self.port, self.health = booted.server, booted.port, booted.health
        self.manager, self.state, self.node_channel = (
            booted.manager,
            booted.state,
            booted.node_channel,
        )
        self.halted = False

    def _announce(self) -> None:
        """Report to the registry (when told to) and say where the agent serves."""
        endpoint = self.settings.endpoint(self.port)
        if self.report_self:
            self.reporter = ServiceReporter(self.settings, endpoint)
            self.reporter.start()
        log.info(
            "compute agent serving",
            extra={
                "address": endpoint,
                "driver": self.manager.driver.name,
                "nodes": len(self.manager.trackers),
                "instances": sum(1 for _ in self.state.all_instances()),
            },
        )

    # -- power actions on the agent's own host ------------------------------------------

    def after_power(self, outcome: PowerOutcome) -> None:
        """Called once a power action's answer is out: stop, or reboot, in the background."""
        if outcome.then is AfterAnswer.STAY:
            return
        if self.stopped or (self.power_task is not None and not self.power_task.done()):
            log.info("a power action is already under way; this one changes nothing")
            return
        if outcome.then is AfterAnswer.STOP:
            self.power_task = asyncio.create_task(self._shut_down(), name="power:shutdown")
        else:
            off_s = self.reboot_seconds(outcome.off_s)
            self.power_task = asyncio.create_task(self._reboot(off_s), name="power:reboot")

    def reboot_seconds(self, asked: float | None) -> float:
        """How long a reboot keeps the host off: as asked, else long enough for the registry
        to report it down (its service_down_time, plus two heartbeats' worth of margin)."""
        if asked is not None:
            return asked
        down_time = self.reporter.service_down_time_s if self.reporter else None
        return (down_time or _REGISTRY_DOWN_TIME_S) + 2 * self.settings.report_interval

    async def _shut_down(self) -> None:
        log.warning(
            "host shutting down: heartbeats stop, then the server",
            extra={"host": self.settings.host},
        )
        await self.stop(self.settings.shutdown_grace)
        log.warning("host is off", extra={"host": self.settings.host})
        self.stop_requested.set()

    async def _reboot(self, off_s: float) -> None:
        host = self.settings.host
        log.warning(
            "host rebooting: heartbeats stop, then the server", extra={"host": host, "off_s": off_s}
        )
        await self._halt(self.settings.shutdown_grace)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(off_s):
                await self._stopping.wait()
        if self.stopped:
            return
        # Back on the port it had, so its endpoint in the registry stays true.
        settings = self.settings.model_copy(
            update={"listen": self.settings.bound_address(self.port)}
        )
        try:
            booted = await _boot(settings, self.after_power)
        except Exception:
            log.exception("the host did not come back from its reboot; the agent stops")
            self.stopped = True
            self.stop_requested.set()
            return
        self._adopt(booted)
        if self.stopped:
            return  # stopped while starting again: stop() halts what just started
        self.settings = settings
        self._announce()
        await set_serving(self.health, SERVICE_NAMES, True)
        log.warning("host back up after its reboot", extra={"host": host})


async def _check_reserved_fits(settings: ComputeSettings, driver: Driver) -> None:
    policy = CapacityPolicy.from_settings(settings)
    for node in await driver.nodes():
        if node.whole_machine:
            continue  # nothing is reserved on bare metal
        misfit = reserve_misfit(policy, node.nodename, node.total)
        if misfit:
            raise StartupError(misfit)


async def _boot(settings: ComputeSettings, after_power: Callable[[PowerOutcome], None]) -> _Booted:
    """Load the state, start trackers and the server."""
    state = AgentState.load(settings.data_dir, settings.host)
    channel: aio.Channel | None = None
    server: aio.Server | None = None
    manager: ComputeManager | None = None
    try:
        driver = build_driver(settings)
        await _check_reserved_fits(settings, driver)
        stub = None
        metadata: tuple[tuple[str, str], ...] = ()
        if settings.node_url:
            channel = aio_channel(settings.node_url, settings)
            stub = node_pb2_grpc.NodeServiceStub(channel)
            metadata = call_metadata(settings, settings.node_url)
        manager = ComputeManager(settings, driver, state, stub, metadata)
        servicer = ComputeAgentServicer(manager, after_power)
        spec = ServiceSpec(
            registrars=[
                lambda s: compute_pb2_grpc.add_ComputeAgentServiceServicer_to_server(servicer, s)
            ],
            service_names=SERVICE_NAMES,
            policy=POLICY,
        )
        server, port, health_servicer = build_server(settings, spec)
        await manager.start()
        await server.start()
    except BaseException:  # undo whatever started, and free the data directory
        if server is not None:
            await server.stop(0)
        if manager is not None:
            await manager.stop()
        if channel is not None:
            await channel.close()
        state.close()
        raise
    return _Booted(server, port, health_servicer, manager, state, channel)


async def start_agent(settings: ComputeSettings, *, report_self: bool = True) -> Agent:
    """Load the state, start trackers and the server; tests use BERTH_LISTEN=127.0.0.1:0."""
    agent: Agent | None = None

    def after_power(outcome: PowerOutcome) -> None:
        assert agent is not None, "a power action answered before the agent started"
        agent.after_power(outcome)

    booted = await _boot(settings, after_power)
    agent = Agent(settings, report_self, *booted)
    agent._announce()
    return agent
