"""One pass of maintenance moves: each instance of a host to another host of its aggregates.

    PENDING --SelectDestinations (same aggregate, not this host, the instance's flavor
        extra specs: a bare-metal instance asks for its node's resource class)--> SELECTED
        (destination, claim) --BuildInstance there, same uuid and specs, under the
        claim--> BUILT --DeleteInstance here--> DONE
    no room, no aggregate, refused MOVE_ATTEMPTS times --> FAILED: it stays (the next pass
        tries again)
    an agent or the scheduler unreachable past `retry_for` --> the row keeps its state with a
        reason; the next pass resumes it (SELECTED builds again: the agent answers a build it
        already made; BUILT deletes here again: NOT_FOUND means done)

Every step is recorded before the next begins, so a pass that dies anywhere is resumed by
the next one without losing an instance or leaving it on two hosts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from berth.client.errors import (
    AlreadyExists,
    BerthError,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from berth.client.flavors import RESOURCES_PREFIX
from berth.v1 import compute_pb2, host_pb2, node_pb2, scheduler_pb2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common import paging
from services.common.backoff import Backoff
from services.registry.agent_link import AgentLink
from services.registry.metrics import MAINTENANCE_MOVES
from services.registry.node_link import NodeLink
from services.registry.scheduler_link import SchedulerLink
from services.registry.store import maintenance as store
from services.registry.store import repository as repo
from services.registry.store.models import InstanceMove

log = logging.getLogger(__name__)

T = TypeVar("T")
# Destinations that may refuse one instance (their room went meanwhile) before it stays.
MOVE_ATTEMPTS = 3
_REASON_LENGTH = 1024


def _transient(exc: BerthError) -> bool:
    """Worth retrying: the peer is unreachable (restarting), or the instance is busy."""
    return isinstance(exc, Unavailable) or (
        isinstance(exc, FailedPrecondition) and exc.reason == "INSTANCE_BUSY"
    )


# Told what a pass waits for and until when (the wall-clock time it gives up), or
# (None, None) once nothing holds it up.
OnWait = Callable[[str | None, datetime | None], None]


def _no_wait(_what: str | None, _until: datetime | None) -> None:
    pass


async def retrying(
    call: Callable[[], Awaitable[T]], retry_for_s: float, on_wait: OnWait = _no_wait
) -> T:
    """`call()`, again with backoff while it fails transiently, for at most `retry_for_s`;
    `on_wait` hears why it waits and until when."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for_s
    backoff = Backoff(initial_s=0.2, cap_s=5.0)
    try:
        while True:
            try:
                return await call()
            except BerthError as exc:
                delay = backoff.next_delay()
                if not _transient(exc) or loop.time() + delay > deadline:
                    raise
                log.info("retrying in %.1f s: %s", delay, exc)
                until = datetime.now(UTC) + timedelta(seconds=deadline - loop.time())
                on_wait(f"{exc.message}; retrying", until)
                await asyncio.sleep(delay)
    finally:
        on_wait(None, None)


@dataclass
class Move:
    """An InstanceMove row as the pass works on it."""

    id: int
    uuid: str
    state: str
    destination_host: str = ""
    destination_nodename: str = ""
    claim_id: str = ""
    reason: str = ""

    @classmethod
    def of(cls, row: InstanceMove) -> Move:
        return cls(
            row.id,
            row.instance_uuid,
            row.state,
            row.destination_host,
            row.destination_nodename,
            row.claim_id,
            row.reason,
        )


@dataclass
class Links:
    agents: AgentLink
    nodes: NodeLink
    scheduler: SchedulerLink


@dataclass
class MovePass:
    """Moves the instances of `host`; `wanted()` is asked before each instance (the host
    may have left maintenance meanwhile); `changed()` is called after each recorded step."""

    host: str
    sessions: async_sessionmaker[AsyncSession]
    links: Links
    clock: Callable[[], datetime]
    retry_for_s: float
    changed: Callable[[], None] = lambda: None
    wanted: Callable[[], Awaitable[bool]] | None = None
    # Hears what the pass waits for (a peer it retries) and until when.
    waiting: OnWait = _no_wait
    # Filled before the moves: what is on the host, and what may be asked of the scheduler.
    on_source: dict[str, node_pb2.Instance] = field(default_factory=dict)
    source_nodes: dict[str, node_pb2.ComputeNode] = field(default_factory=dict)
    cannot_select: str = ""

    async def run(self) -> None:
        """Enter maintenance on the agent, then move every instance still here."""
        host = self.host
        enter = compute_pb2.SetMaintenanceRequest(mode=host_pb2.MAINTENANCE_MODE_ENABLED)
        try:
            await self._agent(host, lambda s: s.SetMaintenance, enter, "enter maintenance")
            await self._list_source()
        except BerthError as exc:
            await self._all_stay(f"the compute agent of host {host} cannot be asked: {exc}")
            return
        moves = await self._sync()
        await self._prepare_selection()
        for move in moves:
            if self.wanted is not None and not await self.wanted():
                log.info("host left maintenance; moves stop", extra={"host": host})
                return
            await self.step(move, reselect=True)

    async def settle(self) -> None:
        """Leaving maintenance: finish the moves under way (a destination that refuses now
        leaves the instance here); start no new one."""
        try:
            await self._list_source()
        except BerthError as exc:
            log.warning("cannot settle moves: %s", exc, extra={"host": self.host})
            return
        try:  # the resource class of instances built before they kept their flavor's specs
            self.source_nodes = await self.links.nodes.nodes_of(self.host)
        except BerthError as exc:
            log.info("settling without the host's nodes: %s", exc, extra={"host": self.host})
        async with self.sessions() as session:
            rows = await store.moves(session, self.host)
        for move in [Move.of(r) for r in rows if r.state in store.IN_FLIGHT]:
            await self.step(move, reselect=False)

    # -- preparing -------------------------------------------------------------------------

    async def _list_source(self) -> None:
        instances = await paging.every_item(
            lambda r: self._agent(self.host, lambda s: s.ListInstances, r, "list its instances"),
            compute_pb2.ListInstancesRequest(page_size=paging.MAX_PAGE_SIZE),
            lambda page: page.instances,
        )
        self.on_source = {i.uuid: i for i in instances}

    async def _sync(self) -> list[Move]:
        """Rows for what is on the host now -> the moves to work on, by instance uuid."""
        now = self.clock()
        async with self.sessions() as session, session.begin():
            rows = {r.instance_uuid: r for r in await store.moves(session, self.host)}
            dropped = []
            for uuid, row in rows.items():
                here = uuid in self.on_source
                if row.state in (store.PENDING, store.FAILED) and not here:
                    dropped.append(row.id)  # gone by other means (deleted)
                elif row.state == store.BUILT and not here:
                    await store.save_move(session, row.id, now, state=store.DONE, reason="")
                elif row.state in (store.FAILED, store.DONE) and here:
                    await store.save_move(
                        session, row.id, now, state=store.PENDING, reason="",
                        destination_host="", destination_nodename="", claim_id="",
                    )  # fmt: skip
                elif row.reason:
                    await store.save_move(session, row.id, now, reason="")
            await store.delete_moves(session, dropped)
            store.add_moves(session, self.host, sorted(set(self.on_source) - set(rows)), now)
        async with self.sessions() as session:
            rows_now = await store.moves(session, self.host)
        self.changed()
        return [Move.of(r) for r in rows_now if r.state != store.DONE]

    async def _prepare_selection(self) -> None:
        """The host's aggregates (none: nothing can move) and its nodes (their hypervisor
        types and resource classes: bare metal goes to bare metal of its class)."""
        async with self.sessions() as session:
            aggregates = await repo.aggregates_of_host(session, self.host)
        if not aggregates:
            self.cannot_select = (
                f"host {self.host} is in no aggregate: maintenance moves instances only to "
                "other hosts of the host's aggregates"
            )
            return
        try:
            self.source_nodes = await retrying(
                lambda: self.links.nodes.nodes_of(self.host), self.retry_for_s, self.waiting
            )
        except BerthError as exc:
            self.cannot_select = (
                f"the hypervisor types of host {self.host}'s nodes are unknown: {exc}"
            )

    async def _all_stay(self, reason: str) -> None:
        """The host's agent cannot be asked: every instance the node service knows there
        stays, with `reason`."""
        log.warning("no instance can move: %s", reason, extra={"host": self.host})
        try:
            known = await self.links.nodes.instances(host=self.host)
        except BerthError as exc:
            log.warning("nor can the node service say what is there: %s", exc)
            known = []
        now, why = self.clock(), reason[:_REASON_LENGTH]
        async with self.sessions() as session, session.begin():
            rows = {r.instance_uuid: r for r in await store.moves(session, self.host)}
            for row in rows.values():
                if row.state == store.PENDING:
                    await store.save_move(session, row.id, now, state=store.FAILED, reason=why)
                elif row.state != store.DONE:
                    await store.save_move(session, row.id, now, reason=why)
            new = sorted({i.uuid for i in known} - set(rows))
            store.add_moves(session, self.host, new, now, state=store.FAILED, reason=why)
        self.changed()

    # -- one instance ----------------------------------------------------------------------

    async def step(self, move: Move, *, reselect: bool) -> None:
        """Take one instance as far as it goes: DONE, FAILED, or held with a reason."""
        avoid: set[str] = set()
        refusals: list[str] = []
        while True:
            if move.state == store.PENDING:
                if not reselect:
                    return
                if not await self._select(move, avoid, refusals):
                    return
            if move.state == store.SELECTED:
                if move.uuid not in self.on_source:
                    await self._vanished(move)
                    return
                refusal = await self._build(move)
                if refusal is not None:
                    refusals.append(f"{move.destination_host}: {refusal.message}")
                    if (
                        not reselect
                        or isinstance(refusal, AlreadyExists)
                        or len(refusals) >= MOVE_ATTEMPTS
                    ):
                        await self._fail(move, "destinations refused it: " + "; ".join(refusals))
                        return
                    avoid.add(move.destination_host)
                    await self._save(
                        move, state=store.PENDING, destination_host="",
                        destination_nodename="", claim_id="",
                    )  # fmt: skip
                    continue
            if move.state == store.BUILT:
                await self._delete_here(move)
            return

    def _extra_specs(self, instance: node_pb2.Instance) -> dict[str, str]:
        """The instance's flavor extra specs, which the move keeps: the scheduler places it
        where its flavor may go (a bare-metal node of its class), and the destination's
        agent checks the class. An instance built before instances kept their specs, on a
        node of a resource class, asks for that class: it took such a node whole."""
        specs = dict(instance.flavor_extra_specs)
        node = self.source_nodes.get(instance.nodename)
        if node is not None and node.resource_class and not _asks_for_a_class(specs):
            specs[RESOURCES_PREFIX + node.resource_class] = "1"
        return specs

    def _spec(self, instance: node_pb2.Instance, avoid: set[str]) -> scheduler_pb2.RequestSpec:
        resources = instance.resources
        hints = scheduler_pb2.SchedulerHints(
            same_aggregate_as_host=self.host, ignore_hosts=sorted({self.host, *avoid})
        )
        if instance.server_group and instance.group_policy:
            # Anti-affinity holds during moves: the scheduler sees the group's other members.
            hints.group, hints.group_policy = instance.server_group, instance.group_policy
        return scheduler_pb2.RequestSpec(
            flavor=scheduler_pb2.Flavor(
                vcpus=resources.vcpus,
                memory_mb=resources.memory_mb,
                root_gb=resources.disk_gb,
                extra_specs=self._extra_specs(instance),
            ),
            num_instances=1,
            project_id=instance.project_id,
            user_id=instance.user_id,
            hints=hints,
            instance_uuids=[instance.uuid],
            hypervisor_type=self.source_nodes[instance.nodename].hypervisor_type,
        )

    async def _select(self, move: Move, avoid: set[str], refusals: list[str]) -> bool:
        """PENDING -> SELECTED, or FAILED when nothing can take it."""
        instance = self.on_source[move.uuid]
        if self.cannot_select:
            await self._fail(move, self.cannot_select)
            return False
        if instance.state == node_pb2.INSTANCE_STATE_BUILDING:
            # Its boot may still fail here and be retried elsewhere under the same uuid.
            await self._fail(
                move, "it was still being built when its host entered maintenance; ask again"
            )
            return False
        if instance.nodename not in self.source_nodes:
            await self._fail(
                move,
                f"the node service does not know node {instance.nodename} of host {self.host}, "
                "so its hypervisor type and resource class (where the instance may go) are "
                "unknown",
            )
            return False
        spec = self._spec(instance, avoid)
        try:
            selection = await retrying(
                lambda: self.links.scheduler.select(spec), self.retry_for_s, self.waiting
            )
        except ResourceExhausted as exc:
            refused = f" (refused before by {'; '.join(refusals)})" if refusals else ""
            await self._fail(move, f"no room for it in the aggregate: {exc}{refused}")
            return False
        except BerthError as exc:
            await self._fail(move, f"the scheduler cannot place it: {exc}")
            return False
        claim = selection.primary
        await self._save(
            move, state=store.SELECTED, destination_host=claim.host,
            destination_nodename=claim.nodename, claim_id=claim.claim_id, reason="",
        )  # fmt: skip
        return True

    async def _build(self, move: Move) -> BerthError | None:
        """SELECTED -> BUILT; the destination's refusal (its claim released), or None. An
        unreachable destination keeps the row SELECTED with a reason."""
        instance = self.on_source[move.uuid]
        built = node_pb2.Instance(
            uuid=instance.uuid,
            project_id=instance.project_id,
            user_id=instance.user_id,
            resources=instance.resources,
            server_group=instance.server_group,
            group_policy=instance.group_policy,
            flavor_extra_specs=self._extra_specs(instance),
            name=instance.name,  # a moved instance keeps its name and flavor
            flavor_name=instance.flavor_name,
        )
        request = compute_pb2.BuildInstanceRequest(
            instance=built, nodename=move.destination_nodename, claim_id=move.claim_id
        )
        try:
            await self._agent(
                move.destination_host,
                lambda s: s.BuildInstance,
                request,
                f"build instance {move.uuid}",
            )
        except Unavailable as exc:
            await self._hold(move, f"cannot build it on {move.destination_host} yet: {exc}")
            return None
        except BerthError as exc:
            await self._release(move)
            return exc
        await self._save(move, state=store.BUILT, reason="")
        return None

    async def _delete_here(self, move: Move) -> None:
        """BUILT -> DONE; an unreachable source keeps the row BUILT with a reason."""
        request = compute_pb2.DeleteInstanceRequest(instance_uuid=move.uuid)
        try:
            await self._agent(
                self.host, lambda s: s.DeleteInstance, request, f"delete instance {move.uuid}"
            )
        except NotFound:
            pass  # deleted before this pass was interrupted
        except BerthError as exc:
            await self._hold(
                move,
                f"built on {move.destination_host} but not yet deleted from {self.host}: {exc}",
            )
            return
        await self._save(move, state=store.DONE, reason="")
        MAINTENANCE_MOVES.labels("moved").inc()
        log.info(
            "instance moved",
            extra={
                "instance": move.uuid,
                "from": self.host,
                "to": f"{move.destination_host}/{move.destination_nodename}",
                "claim": move.claim_id or "-",
            },
        )

    async def _vanished(self, move: Move) -> None:
        """SELECTED, but no longer here (deleted meanwhile, or this pass resumes after the
        build and a delete it did not record): done if the destination has it."""
        try:
            copies = await retrying(
                lambda: self.links.nodes.instances(uuid=move.uuid), self.retry_for_s, self.waiting
            )
        except BerthError as exc:
            await self._hold(move, f"gone from {self.host}; where it is now is unknown: {exc}")
            return
        if any(c.host == move.destination_host for c in copies):
            await self._save(move, state=store.DONE, reason="")
            return
        await self._release(move)
        async with self.sessions() as session, session.begin():
            await store.delete_moves(session, [move.id])
        self.changed()

    # -- recording -------------------------------------------------------------------------

    async def _agent(self, host: str, method, request, what: str):
        return await retrying(
            lambda: self.links.agents.call(host, method, request, what=what),
            self.retry_for_s,
            self.waiting,
        )

    async def _save(self, move: Move, **values: str) -> None:
        async with self.sessions() as session, session.begin():
            await store.save_move(session, move.id, self.clock(), **values)
        for name, value in values.items():
            setattr(move, name, value)
        self.changed()

    async def _fail(self, move: Move, reason: str) -> None:
        await self._release(move)
        await self._save(
            move, state=store.FAILED, reason=reason[:_REASON_LENGTH], destination_host="",
            destination_nodename="", claim_id="",
        )  # fmt: skip
        MAINTENANCE_MOVES.labels("stayed").inc()
        log.warning(
            "instance stays on its host: %s",
            reason,
            extra={"instance": move.uuid, "host": self.host},
        )

    async def _hold(self, move: Move, reason: str) -> None:
        """Give up on the row for this pass, keeping its state (and claim) for the next."""
        await self._save(move, reason=reason[:_REASON_LENGTH])
        MAINTENANCE_MOVES.labels("held").inc()
        log.warning(
            "instance move held until asked again: %s",
            reason,
            extra={"instance": move.uuid, "host": self.host, "state": move.state},
        )

    async def _release(self, move: Move) -> None:
        if move.claim_id:
            try:
                await self.links.scheduler.release([move.claim_id])
            except BerthError as exc:  # it expires anyway
                log.info("claim not released (it will expire): %s", exc)


def _asks_for_a_class(specs: dict[str, str]) -> bool:
    """Whether the extra specs say anything of a custom resource class (even to turn one
    off): the instance's own word, which a move keeps."""
    return any(key.startswith(RESOURCES_PREFIX + "CUSTOM") for key in specs)


def counts(moves: Sequence[InstanceMove]) -> tuple[int, int, list[tuple[str, str]]]:
    """(moved, remaining, [(uuid, reason) of those that stay for now])."""
    moved = sum(1 for m in moves if m.state == store.DONE)
    stays = [
        (m.instance_uuid, m.reason)
        for m in moves
        if m.state == store.FAILED or (m.state in store.IN_FLIGHT and m.reason)
    ]
    remaining = sum(
        1
        for m in moves
        if m.state == store.PENDING or (m.state in store.IN_FLIGHT and not m.reason)
    )
    return moved, remaining, stays
