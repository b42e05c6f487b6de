"""host-update: a host's compute service status, and maintenance mode, conducted by the registry.

    enter:  disable the service (reason `maintenance`) -> take the host's lease -> a pass of
            moves in the background (services/registry/moves.py) -> the stream follows the
            recorded progress until the pass ends
    leave:  stop the pass (it checks between instances) -> finish the moves under way ->
            the agent takes builds again -> enable the service

Registry replicas share the database: one lease per host decides which of them conducts
its moves; the others' streams follow the same rows. A pass whose registry died (lease
expired) or stopped (lease released, pass unfinished) is resumed by whichever registry
looks first: a new request for the host, or the resumer every lease period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import uuid as uuidlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from berth.client.errors import FailedPrecondition, Internal, InvalidArgument, Unavailable
from berth.v1 import compute_pb2, host_pb2, registry_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import auth, validation
from services.common.settings import COMPUTE_BINARY
from services.common.supervise import stop_tasks
from services.registry.agent_link import AgentLink
from services.registry.liveness import Clock
from services.registry.moves import Links, MovePass, counts, retrying
from services.registry.services_table import ServicesTable
from services.registry.settings import RegistrySettings
from services.registry.store import maintenance as store
from services.registry.store.models import HostMaintenance

log = logging.getLogger(__name__)

MAINTENANCE_REASON = "maintenance"
IN_MAINTENANCE = "HOST_IN_MAINTENANCE"


class LeaseLost(Exception):
    """Another registry took over the host's moves (ours went unrenewed too long)."""


def _service_ref(host: str) -> registry_pb2.ServiceRef:
    return registry_pb2.ServiceRef(key=registry_pb2.ServiceKey(host=host, binary=COMPUTE_BINARY))


class Maintenance:
    """UpdateHost's rules and the background passes this registry conducts."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        services: ServicesTable,
        links: Links,
        settings: RegistrySettings,
        stopping: asyncio.Event,
        clock: Clock,
    ) -> None:
        self._sessions = sessions
        self._services = services
        self._links = links
        self._agents: AgentLink = links.agents
        self._lease = timedelta(seconds=settings.maintenance_lease)
        self._retry_for = settings.maintenance_retry_for
        self._poll_s = settings.watch_poll_interval
        self._stopping = stopping
        self._clock = clock
        # Who this registry is when it holds a lease.
        self.owner = f"{socket.gethostname()[:80]}/{os.getpid()}/{uuidlib.uuid4().hex[:12]}"
        self._passes: dict[str, asyncio.Task[None]] = {}
        # Host -> what its pass here waits for and until when (a peer it retries).
        self._waits: dict[str, tuple[str, datetime]] = {}
        self._crashed: dict[str, str] = {}  # host -> why its pass here failed unexpectedly
        self._start_lock = asyncio.Lock()
        self._pulse = asyncio.Event()

    # -- UpdateHost ------------------------------------------------------------------------

    async def update_host(
        self, request: host_pb2.UpdateHostRequest
    ) -> AsyncIterator[host_pb2.UpdateHostResponse]:
        host = validation.name("host", request.host)
        status = validation.enum(
            "status", request.status, host_pb2.HostStatus, allow_unspecified=True
        )
        mode = validation.enum(
            "maintenance_mode",
            request.maintenance_mode,
            host_pb2.MaintenanceMode,
            allow_unspecified=True,
        )
        if bool(status) == bool(mode):
            raise InvalidArgument.field("status", "set exactly one of status and maintenance_mode")
        reason = validation.text("disabled_reason", request.disabled_reason)
        if reason and status != host_pb2.HOST_STATUS_DISABLED:
            raise InvalidArgument.field(
                "disabled_reason", "only goes with status = HOST_STATUS_DISABLED"
            )
        await self._agents.compute_service(host)  # NOT_FOUND (HOST_NOT_FOUND)
        if status:
            yield await self._set_status(host, status == host_pb2.HOST_STATUS_ENABLED, reason)
        elif mode == host_pb2.MAINTENANCE_MODE_ENABLED:
            async for message in self._enter(host):
                yield message
        else:
            async for message in self._leave(host):
                yield message

    async def _set_status(
        self, host: str, enable: bool, reason: str
    ) -> host_pb2.UpdateHostResponse:
        async with self._sessions() as session:
            row = await store.get(session, host)
        in_maintenance = row is not None and row.enabled
        if enable and in_maintenance:
            raise FailedPrecondition(
                f"host {host} is in maintenance; leave it with maintenance_mode = disable, "
                "which enables its compute service again",
                reason=IN_MAINTENANCE,
                metadata={"host": host},
            )
        service = await self._services.update(
            registry_pb2.UpdateServiceRequest(
                service=_service_ref(host), disabled=not enable, disabled_reason=reason
            )
        )
        return host_pb2.UpdateHostResponse(
            host=host,
            status=host_pb2.HOST_STATUS_DISABLED
            if service.disabled
            else host_pb2.HOST_STATUS_ENABLED,
            maintenance_mode=host_pb2.MAINTENANCE_MODE_ENABLED
            if in_maintenance
            else host_pb2.MAINTENANCE_MODE_DISABLED,
            done=True,
        )

    async def _enter(self, host: str) -> AsyncIterator[host_pb2.UpdateHostResponse]:
        if self._stopping.is_set():
            raise Unavailable("the server is shutting down; reconnect", reason="SHUTTING_DOWN")
        fresh = await self._set_mode(host, True)
        await self._services.update(
            registry_pb2.UpdateServiceRequest(
                service=_service_ref(host), disabled=True, disabled_reason=MAINTENANCE_REASON
            )
        )
        log.info(
            "host entering maintenance" if fresh else "host in maintenance: moves asked again",
            extra={"host": host, "by": auth.current_principal.get().name},
        )
        self._crashed.pop(host, None)
        await self.start_pass(host)
        async for message in self._follow(host):
            yield message

    async def _leave(self, host: str) -> AsyncIterator[host_pb2.UpdateHostResponse]:
        await self._set_mode(host, False)
        self._crashed.pop(host, None)
        log.info(
            "host leaving maintenance",
            extra={"host": host, "by": auth.current_principal.get().name},
        )
        # A pass under way stops before its next instance.
        async for message in self._follow(host, leaving=True):
            yield message
        while not await self._take_lease(host):
            await self._wait()
        try:
            await MovePass(host, self._sessions, self._links, self._clock, self._retry_for).settle()
            async with self._sessions() as session:
                unfinished = [
                    f"{m.instance_uuid} ({m.reason or m.state})"
                    for m in await store.moves(session, host)
                    if m.state in store.IN_FLIGHT
                ]
            if unfinished:
                # Built elsewhere and still here, or not known to be: the host keeps out of
                # service until these are settled.
                raise Unavailable(
                    f"host {host} cannot leave maintenance yet: moves under way could not be "
                    f"finished: {'; '.join(unfinished)}; ask again",
                    reason="MOVES_UNFINISHED",
                    metadata={"host": host},
                )
            leave = compute_pb2.SetMaintenanceRequest(mode=host_pb2.MAINTENANCE_MODE_DISABLED)
            await retrying(
                lambda: self._agents.call(
                    host, lambda s: s.SetMaintenance, leave, what="leave maintenance"
                ),
                self._retry_for,
            )
            await self._services.update(
                registry_pb2.UpdateServiceRequest(service=_service_ref(host), disabled=False)
            )
        finally:
            await self._release(host, finished=True)
        log.info("host left maintenance; its service is enabled", extra={"host": host})
        message = await self._progress(host)
        message.remaining = 0
        del message.failures[:]  # they stay by choice now
        message.done = True
        yield message

    # -- progress --------------------------------------------------------------------------

    async def _follow(
        self, host: str, *, leaving: bool = False
    ) -> AsyncIterator[host_pb2.UpdateHostResponse]:
        """Progress until the host's pass ends (then the last message, done), or, when
        `leaving`, until no pass runs (the caller goes on)."""
        last: host_pb2.UpdateHostResponse | None = None
        while True:
            pulse = self._pulse
            async with self._sessions() as session:
                row = await store.get(session, host)
            message = await self._progress(host)
            if row is None or not row.moving:
                if not leaving:
                    message.done = True
                    yield message
                return
            crashed = None if leaving else self._crashed.get(host)
            if crashed:
                raise Internal(
                    f"the moves of host {host} stopped on an unexpected error ({crashed}); ask "
                    "again to resume them",
                    reason="MAINTENANCE_INTERRUPTED",
                )
            ours = row.lease_owner == self.owner and host not in self._passes
            if leaving and (ours or not self._lease_live(row)):
                return  # nobody conducts it (any more): the caller takes over
            if not leaving and not self._lease_live(row):
                await self.start_pass(host)  # its registry died or stopped: resume here
            known = message.moved + message.remaining + len(message.failures)
            if message != last and (known or last is not None):  # not before the pass listed
                yield message
                last = message
            await self._wait(pulse)

    async def _progress(self, host: str) -> host_pb2.UpdateHostResponse:
        async with self._sessions() as session:
            row = await store.get(session, host)
            moves = await store.moves(session, host)
        service = await self._services.get(_service_ref(host))
        moved, remaining, stays = counts(moves)
        message = host_pb2.UpdateHostResponse(
            host=host,
            status=host_pb2.HOST_STATUS_DISABLED
            if service.disabled
            else host_pb2.HOST_STATUS_ENABLED,
            maintenance_mode=host_pb2.MAINTENANCE_MODE_ENABLED
            if row is not None and row.enabled
            else host_pb2.MAINTENANCE_MODE_DISABLED,
            moved=moved,
            remaining=remaining,
            failures=[host_pb2.InstanceMoveFailure(instance_uuid=u, reason=r) for u, r in stays],
        )
        wait = self._waits.get(host)
        if wait is not None:
            message.waiting = wait[0]
            message.waiting_until.FromDatetime(wait[1])
        return message

    async def _wait(self, pulse: asyncio.Event | None = None) -> None:
        """Until this registry records progress, the poll interval passes (another replica
        may be conducting), or the server stops (UNAVAILABLE: reconnect)."""
        if self._stopping.is_set():
            raise Unavailable("the server is shutting down; reconnect", reason="SHUTTING_DOWN")
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if pulse is not None:
            waits.append(asyncio.ensure_future(pulse.wait()))
        try:
            await asyncio.wait(waits, timeout=self._poll_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if self._stopping.is_set():
            raise Unavailable("the server is shutting down; reconnect", reason="SHUTTING_DOWN")

    def _changed(self) -> None:
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()

    # -- leases and passes -----------------------------------------------------------------

    async def _set_mode(self, host: str, enabled: bool) -> bool:
        now = self._clock()
        async with self._sessions() as session:
            missing = await store.get(session, host) is None
        if missing:
            with contextlib.suppress(IntegrityError):  # a racing replica added it
                async with self._sessions() as session, session.begin():
                    store.add(session, host, now)
        async with self._sessions() as session, session.begin():
            fresh = await store.set_enabled(session, host, enabled, now)
        self._changed()
        return fresh

    def _lease_live(self, row: HostMaintenance) -> bool:
        expires = row.lease_expires_at
        return row.lease_owner is not None and expires is not None and expires >= self._clock()

    def _until(self) -> datetime:
        return self._clock() + self._lease

    async def _take_lease(self, host: str) -> bool:
        async with self._sessions() as session, session.begin():
            return await store.take_lease(session, host, self.owner, self._clock(), self._until())

    async def _release(self, host: str, *, finished: bool) -> None:
        async with self._sessions() as session, session.begin():
            await store.release_lease(
                session, host, self.owner, finished=finished, now=self._clock()
            )
        self._changed()

    def _waiting(self, host: str, what: str | None, until: datetime | None) -> None:
        """The pass of `host` waits for a peer (or no longer): progress says so at once."""
        if what is None or until is None:
            if self._waits.pop(host, None) is None:
                return
        else:
            self._waits[host] = (what, until)
        self._changed()

    async def start_pass(self, host: str) -> bool:
        """Conduct a pass of `host`'s moves here, unless one runs (here or elsewhere)."""
        async with self._start_lock:
            if host in self._passes or self._stopping.is_set():
                return False
            if not await self._take_lease(host):
                return False
            task = asyncio.create_task(self._conduct(host), name=f"maintenance:{host}")
            self._passes[host] = task
        self._changed()
        return True

    async def _conduct(self, host: str) -> None:
        current = asyncio.current_task()
        assert current is not None
        renewing = asyncio.create_task(self._renew(host, current), name=f"lease:{host}")
        finished = False
        try:
            log.info("maintenance pass starts", extra={"host": host, "owner": self.owner})
            await MovePass(
                host,
                self._sessions,
                self._links,
                self._clock,
                self._retry_for,
                changed=self._changed,
                wanted=lambda: self._still_enabled(host),
                waiting=functools.partial(self._waiting, host),
            ).run()
            finished = True
        except asyncio.CancelledError:
            lost = renewing.done() and not renewing.cancelled() and renewing.exception()
            if isinstance(lost, LeaseLost):
                log.warning(
                    "maintenance lease lost; another registry resumes", extra={"host": host}
                )
                return
            raise
        except Exception as exc:
            # Left to expire: another attempt comes no sooner than a lease period later.
            self._crashed[host] = repr(exc)
            log.exception("maintenance pass failed", extra={"host": host})
            return
        finally:
            await stop_tasks(renewing)
            if host not in self._crashed:
                try:
                    await self._release(host, finished=finished)
                except Exception as exc:  # it expires
                    log.warning("cannot release the maintenance lease of %s: %s", host, exc)
            self._passes.pop(host, None)
            self._waits.pop(host, None)
            self._changed()
        async with self._sessions() as session:
            moved, _, stays = counts(await store.moves(session, host))
        log.info(
            "maintenance pass done",
            extra={"host": host, "moved": moved, "stayed": len(stays)},
        )

    async def _renew(self, host: str, conducting: asyncio.Task[None]) -> None:
        every = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(every)
            try:
                async with self._sessions() as session, session.begin():
                    held = await store.renew_lease(session, host, self.owner, self._until())
            except Exception as exc:  # the database is away: try again before expiry
                log.warning("cannot renew the maintenance lease of %s: %s", host, exc)
                continue
            if not held:
                conducting.cancel()
                raise LeaseLost(host)

    async def _still_enabled(self, host: str) -> bool:
        async with self._sessions() as session:
            row = await store.get(session, host)
        return row is not None and row.enabled

    async def resume_forever(self) -> None:
        """Every lease period: conduct the passes nobody conducts (their registry died)."""
        every = max(self._lease.total_seconds(), 1.0)
        while True:
            await asyncio.sleep(every)
            try:
                async with self._sessions() as session:
                    hosts = await store.interrupted(session, self._clock())
                for host in hosts:
                    if host not in self._crashed and await self.start_pass(host):
                        log.info("resuming an interrupted maintenance pass", extra={"host": host})
            except Exception as exc:
                log.warning("maintenance resumer: %s", exc)

    async def stop(self) -> None:
        """Stop this registry's passes; each releases its lease, so another registry (or
        this one, restarted) resumes at once."""
        tasks = list(self._passes.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
