"""Choosing destinations: filter, weigh and claim, one instance after another.

A request is filtered once: every filter that applies is a mask over the columns, ANDed in
the configured order. Its instances are then placed one after another on that mask
(Kubernetes' opportunistic batching): every candidate node is weighed as Nova weighs them,
the best is claimed in Redis, and only the rows that changed since (the claimed node, the
nodes of a group's host, reports that arrived meanwhile) are filtered again. A refused
claim (another scheduler took the room) refreshes that node from Redis and the next best is
tried, so "no valid host" is only answered when no node passes. If any instance cannot be
placed, every claim of the request is released.

Alternates (other hosts that fit, from the same ranking) are returned unclaimed, as Nova
does: claimed alternates would hold room that concurrent requests need, and most are never
used. A client whose primary build failed claims one with `claim_alternate`, which filters
that node again and claims it atomically.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from berth.client.errors import NotFound, ResourceExhausted

from services.scheduler.columns import BoolArray, FloatArray, RowIndex, find_sorted
from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.filters.runner import FilterRun
from services.scheduler.groups import ServerGroups
from services.scheduler.hoststate import HostState, Resources
from services.scheduler.metrics import CLAIM_CONFLICTS
from services.scheduler.mirror import Mirror
from services.scheduler.request import GroupPolicy, Request
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store.keys import new_claim_id
from services.scheduler.store.placement import ClaimRefused, PendingClaim, PlacementStore
from services.scheduler.weighers import Weighing
from services.scheduler.weighers.base import Weigher

log = logging.getLogger(__name__)

NO_VALID_HOST = "NO_VALID_HOST"
CLAIM_REFUSED = "CLAIM_REFUSED"
# Pseudo-filter reported with the real ones when nothing fits: nodes whose claims Redis
# refused (another request took the room first).
LOST_RACE = "ClaimRefused"
# Nodes whose claims are re-read from Redis before answering "no valid host".
MAX_SUSPECTS = 5000
# Filter masks kept for request shapes (flavor sizes, zone, type, class) seen lately.
SHARED_MASKS = 64
_SHARED_RNG = random.Random()


@dataclass
class Placement:
    """Where one instance goes: a claimed primary, and unclaimed alternates on other hosts."""

    instance_uuid: str
    primary: tuple[HostState, PendingClaim]
    alternates: list[HostState] = field(default_factory=list)


@dataclass
class _Mask:
    """A filter mask and what it is current to."""

    passed: BoolArray
    version: int
    names_version: int
    rows: RowIndex | None = None  # where `passed` is True, until a row's answer changes


class _Candidates:
    """The nodes passing a request's filters, kept current between its instances: rows the
    mirror wrote since (reports, claims) and rows the request itself changed (a group's
    host) are filtered again; the rest keep their answer. A mask that depends only on the
    request's shape is shared with later requests of the same shape (`shared`)."""

    def __init__(self, run: FilterRun, mirror: Mirror, shared: dict[tuple, _Mask]) -> None:
        self.run = run
        self._mirror = mirror
        self._shared = shared if run.shareable else None
        self._key = _shape(run.request)
        self._mask: _Mask | None = None
        self._stale_rows: set[int] = set()
        # Nodes whose claim Redis refused during this request: not tried again.
        self.refused: set[int] = set()
        self.rechecked = False

    def rows(self) -> RowIndex:
        mirror = self._mirror
        mask = self._mask
        if mask is None and self._shared is not None:
            mask = self._shared.get(self._key)
        if (
            mask is None
            or len(mask.passed) != mirror.columns.size
            or mask.names_version != mirror.names_version
        ):
            # New rows, or a name a filter looked up may now exist: filter every row.
            mask = _Mask(self.run.mask(mirror.view()), mirror.version, mirror.names_version)
        else:
            changed = mirror.changed_since(mask.version)
            if self._stale_rows:
                changed = np.union1d(changed, np.fromiter(self._stale_rows, np.intp))
            if len(changed):
                passed = self.run.mask(mirror.view(changed))
                if mask.rows is None or (mask.passed[changed] != passed).any():
                    mask.rows = None
                mask.passed[changed] = passed
            mask.version = mirror.version
        self._stale_rows.clear()
        self._mask = mask
        if self._shared is not None:
            self._shared[self._key] = mask
            while len(self._shared) > SHARED_MASKS:
                del self._shared[next(iter(self._shared))]
        if mask.rows is None:
            mask.rows = np.flatnonzero(mask.passed)
        rows = mask.rows
        if self.refused:
            rows = rows[~np.isin(rows, np.fromiter(self.refused, np.intp))]
        return rows

    def host_chosen(self, host: str, everything: bool) -> None:
        """The request's group now includes `host`: its nodes' answers change (or every
        node's, when an affinity group just got its host)."""
        if everything:
            self._mask = None
        elif not self.run.shareable:  # a shareable run has no group filter
            self._stale_rows.update(self._mirror.rows_on_host(host))

    def invalidate(self) -> None:
        self._mask = None


def _shape(request: Request) -> tuple:
    """What a shareable filter mask depends on."""
    return (
        request.resources,
        request.flavor.resource_class,
        request.availability_zone,
        request.hypervisor_type.lower(),
    )


class Selector:
    def __init__(
        self,
        settings: SchedulerSettings,
        mirror: Mirror,
        store: PlacementStore,
        filters: Sequence[HostFilter],
        weighers: Sequence[Weigher],
        repair: Callable[[str], Awaitable[bool]],
        groups: ServerGroups,
    ) -> None:
        self.settings = settings
        self.mirror = mirror
        self.store = store
        self.filters = list(filters)
        self.weighing = Weighing(weighers, mirror)
        self._shared_masks: dict[tuple, _Mask] = {}
        # Puts a node the mirror knows back into Redis (after a flush); True if it did.
        self._repair = repair
        self.groups = groups

    def sample_size(self, fleet: int) -> int:
        """How many feasible nodes to weigh per instance (0 percentage: all of them)."""
        if self.settings.sample_percentage == 0:
            return max(fleet, 1)
        by_share = math.ceil(fleet * self.settings.sample_percentage / 100)
        return max(self.settings.min_feasible_nodes, by_share, 1)

    async def select(self, request: Request) -> list[Placement]:
        # A seeded request (tests, replays) draws from its own sequence; the rest share one
        # (seeding a generator from the OS per request costs more than weighing).
        rng = _SHARED_RNG if request.seed is None else random.Random(request.seed)
        context = await self._context(request)
        run = FilterRun(self.filters, request, context)
        candidates = _Candidates(run, self.mirror, self._shared_masks)
        placements: list[Placement] = []
        try:
            if request.hints.group:
                await self._place_members(request, context, candidates, rng, placements)
            else:
                await self._place_together(request, candidates, rng, placements)
        except BaseException:
            released = await self._release([p.primary[1] for p in placements])
            if placements:
                log.info("released %d claims of a request that could not be placed", released)
            raise
        if request.hints.group:
            await self.groups.add(
                request.hints.group, request.hints.group_policy, list(request.instance_uuids)
            )
        return placements

    async def _place_together(
        self,
        request: Request,
        candidates: _Candidates,
        rng: random.Random,
        placements: list[Placement],
    ) -> None:
        """Choose a node for every instance on the columns first, each choice counted at
        once as a tentative claim so the next instance is weighed with it (as Nova's
        consume_from_request), then claim them all in one Redis round trip. An instance
        whose claim Redis refused (another replica took the room) is chosen again."""
        wanted = request.resources
        waiting = list(request.instance_uuids)
        repaired: set[str] = set()
        while waiting:
            chosen = []
            for instance_uuid in waiting:
                choice = self._choose(candidates, request, rng)
                if choice is None:
                    break
                row, state, alternates = choice
                tentative = PendingClaim(
                    new_claim_id(state.node_uuid),
                    state.node_uuid,
                    instance_uuid,
                    wanted,
                    _now_ms() + self.store.claim_ttl_ms,
                )
                self.mirror.add_claim(tentative, tentative=True)
                chosen.append((row, state, tentative, alternates))
            try:
                results = await self.store.claim_many(
                    [(t.claim_id, t.instance_uuid, wanted) for _, _, t, _ in chosen]
                )
            except BaseException:
                self.mirror.remove_claims(t.claim_id for _, _, t, _ in chosen)
                raise
            refused = False
            for (row, state, tentative, alternates), result in zip(chosen, results, strict=True):
                if isinstance(result, PendingClaim):
                    self.mirror.add_claim(result)  # the tentative one, with Redis's deadline
                    placements.append(
                        Placement(tentative.instance_uuid, (state, result), alternates)
                    )
                    continue
                self.mirror.remove_claims([tentative.claim_id])
                refused = True
                if isinstance(result, ClaimRefused):
                    CLAIM_CONFLICTS.inc()
                    self.mirror.refused(state.node_uuid, result)
                    candidates.refused.add(row)
                elif state.node_uuid in repaired or not await self._repair(state.node_uuid):
                    candidates.refused.add(row)  # Redis lost the node and it cannot return
                else:
                    repaired.add(state.node_uuid)
            ran_out = len(chosen) < len(waiting)
            placed = {p.instance_uuid for p in placements}
            waiting = [uuid for uuid in waiting if uuid not in placed]
            if not (ran_out and not refused):
                continue
            # No node left for the rest: before saying so, the claims the mirror counted
            # are read again from Redis (once), in case it missed a release.
            if candidates.rechecked or not await self._recheck(candidates):
                raise self._no_valid_host(request, candidates, placed=len(placements))

    async def _place_members(
        self,
        request: Request,
        context: PlacementContext,
        candidates: _Candidates,
        rng: random.Random,
        placements: list[Placement],
    ) -> None:
        """Server-group members, one claim at a time: each member's host joins the group
        before the next is chosen, and an affinity group's host is held in Redis."""
        affinity = request.hints.group_policy is GroupPolicy.AFFINITY
        for index, instance_uuid in enumerate(request.instance_uuids):
            for _attempt in range(3):
                placement = await self._place(instance_uuid, request, candidates, rng)
                if placement is None:
                    raise self._no_valid_host(request, candidates, placed=index)
                group_host = await self._group_host(request, placement.primary[0])
                if group_host is None:
                    break
                # Another replica's member fixed the group's host meanwhile: follow it.
                await self._release([placement.primary[1]])
                context.group_hosts = {group_host}
                candidates.invalidate()
            else:
                raise self._no_valid_host(request, candidates, placed=index, lost=1)
            placements.append(placement)
            host = placement.primary[0].host
            first_of_group = affinity and not context.group_hosts
            context.group_hosts.add(host)
            candidates.host_chosen(host, everything=first_of_group)

    async def claim_alternate(
        self, request: Request, instance_uuid: str, node_uuid: str
    ) -> tuple[HostState, PendingClaim]:
        """Claim `node_uuid` for one instance of `request`, after filtering it again: the
        node may have filled up, gone down or been disabled since it was selected."""
        row = self.mirror.row_of.get(node_uuid)
        if row is None:
            raise NotFound(
                f"node {node_uuid} is not in the scheduler's cache (deleted since it was "
                "selected?); try the next alternate",
                reason="NODE_NOT_FOUND",
            )
        state = self.mirror.nodes[node_uuid]
        where = f"{state.host}/{state.nodename}"
        context = await self._context(request)
        run = FilterRun(self.filters, request, context)
        rejecting = run.first_rejecting(self.mirror.view(np.array([row])))
        if rejecting is not None:
            raise ResourceExhausted(
                f"alternate {where} no longer passes {rejecting}; try the next alternate",
                reason=CLAIM_REFUSED,
                metadata={"filter": rejecting, "node_uuid": node_uuid},
            )
        claim = await self._claim(state, instance_uuid, request.resources)
        if claim is None:
            raise ResourceExhausted(
                f"alternate {where} has no room left for {instance_uuid} (another request "
                "claimed it); try the next alternate",
                reason=CLAIM_REFUSED,
                metadata={"filter": LOST_RACE, "node_uuid": node_uuid},
            )
        group_host = await self._group_host(request, state)
        if group_host is not None:
            await self._release([claim])
            raise ResourceExhausted(
                f"alternate {where} is not on host {group_host}, where affinity server group "
                f"{request.hints.group!r} lives; try the next alternate",
                reason=CLAIM_REFUSED,
                metadata={"filter": "ServerGroupAffinityFilter", "node_uuid": node_uuid},
            )
        return state, claim

    async def _group_host(self, request: Request, chosen: HostState) -> str | None:
        """None when `chosen` may hold a member of the request's group; for an affinity
        group placed elsewhere, the group's host (the caller releases its claim)."""
        hints = request.hints
        if not hints.group or hints.group_policy is not GroupPolicy.AFFINITY:
            return None
        held = await self.groups.hold_host(hints.group, hints.group_policy, chosen.host)
        return None if held == chosen.host else held

    async def _context(self, request: Request) -> PlacementContext:
        hints = request.hints
        context = PlacementContext(self.mirror)
        if hints.group:
            members, group_host = await self.groups.members(hints.group, hints.group_policy)
            context.group_hosts = set(self.mirror.hosts_of(members))
            if group_host and hints.group_policy is GroupPolicy.AFFINITY:
                context.group_hosts.add(group_host)
        return context

    def _choose(
        self, candidates: _Candidates, request: Request, rng: random.Random
    ) -> tuple[int, HostState, list[HostState]] | None:
        """Weigh every candidate: the best one's row and node, and its alternates; None
        when no node passes the filters."""
        rows = candidates.rows()
        if not len(rows):
            return None
        rows = self._sample(rows, rng)
        weights = self.weighing.weigh(rows)
        chosen = self._pick(weights, rng)
        row = int(rows[chosen])
        state = self.mirror.nodes[self.mirror.node_at[row] or ""]
        return row, state, self._alternates(rows, weights, chosen, request)

    async def _place(
        self,
        instance_uuid: str,
        request: Request,
        candidates: _Candidates,
        rng: random.Random,
    ) -> Placement | None:
        """Choose and claim; on a refused claim, the next best."""
        while True:
            choice = self._choose(candidates, request, rng)
            if choice is None:
                if candidates.rechecked or not await self._recheck(candidates):
                    return None
                continue
            row, state, alternates = choice
            claim = await self._claim(state, instance_uuid, request.resources)
            if claim is None:
                candidates.refused.add(row)
                continue
            return Placement(instance_uuid, (state, claim), alternates)

    def _sample(self, rows: RowIndex, rng: random.Random) -> RowIndex:
        """Every candidate, unless the operator chose to weigh a sample (a window of the
        candidates from a random start)."""
        size = self.sample_size(len(self.mirror))
        if len(rows) <= size:
            return rows
        start = rng.randrange(len(rows))
        return np.sort(rows.take(np.arange(start, start + size), mode="wrap"))

    def _pick(self, weights: FloatArray, rng: random.Random) -> int:
        """The best-weighed candidate (the first of equals, as Nova's stable sort), or one
        at random among the best `host_subset_size`."""
        subset = min(self.settings.host_subset_size, len(weights))
        if subset <= 1:
            return int(weights.argmax())
        best = _best_first(weights, subset)
        return int(best[rng.randrange(subset)])

    def _alternates(
        self, rows: RowIndex, weights: FloatArray, chosen: int, request: Request
    ) -> list[HostState]:
        """Up to max_attempts - 1 alternates, best first, one per host other than the
        primary's; none for an affinity group (alternates are on other hosts)."""
        wanted = self.settings.max_attempts - 1
        hints = request.hints
        if (
            wanted <= 0
            or len(rows) <= 1
            or (hints.group and hints.group_policy is GroupPolicy.AFFINITY)
        ):
            return []
        mirror = self.mirror
        remaining = weights.copy()
        alternates: list[HostState] = []
        best = chosen
        while True:
            # Rule out every candidate on the host just taken (`rows` is sorted).
            host = mirror.nodes[mirror.node_at[int(rows[best])] or ""].host
            on_host = np.array(mirror.rows_on_host(host), np.intp)
            found, present = find_sorted(rows, on_host)
            remaining[found[present]] = -np.inf
            best = int(remaining.argmax())
            if remaining[best] == -np.inf:
                return alternates
            alternates.append(mirror.nodes[mirror.node_at[int(rows[best])] or ""])
            if len(alternates) == wanted:
                return alternates

    async def _recheck(self, candidates: _Candidates) -> bool:
        """Before "no valid host": nodes a filter rejected while counting claims may have
        had them released without this replica hearing of it. Re-read those claims from
        Redis; True when there were any to re-read."""
        candidates.rechecked = True
        columns = self.mirror.columns
        suspects = np.flatnonzero(columns.live & (columns.claim_count > 0))[:MAX_SUSPECTS]
        node_uuids = [u for u in (self.mirror.node_at[int(r)] for r in suspects) if u]
        if not node_uuids:
            return False
        found = await self.store.claims_of(node_uuids)
        for node_uuid, claims in (found or {}).items():  # None: Redis lost them, keep ours
            self.mirror.replace_claims(node_uuid, claims)
        return True

    async def _claim(
        self, state: HostState, instance_uuid: str, wanted: Resources
    ) -> PendingClaim | None:
        for _attempt in range(2):
            result = await self.store.claim(state.node_uuid, instance_uuid, wanted)
            if isinstance(result, PendingClaim):
                self.mirror.add_claim(result)
                return result
            if isinstance(result, ClaimRefused):
                CLAIM_CONFLICTS.inc()
                self.mirror.refused(state.node_uuid, result)
                log.debug(
                    "claim on %s/%s refused (%s); trying the next node",
                    state.host,
                    state.nodename,
                    result.why,
                )
                return None
            # Redis does not hold the node (flushed, being rebuilt): put it back, once.
            if not await self._repair(state.node_uuid):
                return None
        return None

    async def _release(self, claims: list[PendingClaim]) -> int:
        if not claims:
            return 0
        self.mirror.remove_claims(c.claim_id for c in claims)
        return await self.store.release(c.claim_id for c in claims)

    def _no_valid_host(
        self, request: Request, candidates: _Candidates, placed: int, lost: int = 0
    ) -> ResourceExhausted:
        flavor = request.flavor
        wanted = request.resources
        size = (
            f"{flavor.name + ' ' if flavor.name else ''}({wanted.vcpus} vcpus, "
            f"{wanted.memory_mb} MB RAM, {wanted.disk_gb} GB disk)"
        )
        removed, passed = candidates.run.rejections(self.mirror.view())
        refused = candidates.refused
        lost += len(refused.intersection(np.flatnonzero(passed).tolist())) if refused else 0
        if lost:
            removed[LOST_RACE] = lost
        why = ", ".join(f"{name} removed {count}" for name, count in removed.items())
        fleet = len(self.mirror.nodes)
        message = f"no valid host for {size}: none of {fleet} nodes fits"
        if why:
            message += f" ({why})"
        if placed:
            message += (
                f"; {placed} of {request.num_instances} instances had been placed, "
                "and their claims were released"
            )
        return ResourceExhausted(
            message,
            reason=NO_VALID_HOST,
            metadata={name: str(count) for name, count in removed.items()}
            | {"nodes": str(fleet), "placed": str(placed)},
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _best_first(weights: FloatArray, count: int) -> RowIndex:
    """The positions of the `count` highest weights, best first, equals in position order
    (Nova's stable descending sort), without sorting every weight."""
    remaining = weights.copy()
    best = np.empty(count, np.intp)
    for i in range(count):
        best[i] = remaining.argmax()
        remaining[best[i]] = -np.inf
    return best
