"""Choosing destinations: filter, weigh and claim, one instance after another.

Per instance: walk the candidate nodes from a (seeded) random offset, run the enabled
filters (counting which one removed each node), and stop once `sample_size` nodes passed;
weigh those, pick at random among the best `host_subset_size`, and claim it in Redis. A
refused claim (another scheduler took the room) refreshes that node and tries the next
best; when a whole sample is refused, the walk continues where it stopped, so "no valid
host" is only answered after every node was tried. If any instance cannot be placed,
every claim of the request is released.

Alternates (other hosts that fit, from the same ranking) are returned unclaimed, as Nova
does: claimed alternates would hold room that concurrent requests need, and most are never
used. A client whose primary build failed claims one with `claim_alternate`, which filters
that node again and claims it atomically.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from berth.client.errors import NotFound, ResourceExhausted

from services.scheduler.context import PlacementContext
from services.scheduler.filters.base import HostFilter
from services.scheduler.groups import ServerGroups
from services.scheduler.hoststate import HostState, Resources
from services.scheduler.mirror import Mirror
from services.scheduler.request import GroupPolicy, Request
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store.placement import ClaimRefused, PendingClaim, PlacementStore
from services.scheduler.weighers import weigh_all
from services.scheduler.weighers.base import Weigher

log = logging.getLogger(__name__)

NO_VALID_HOST = "NO_VALID_HOST"
CLAIM_REFUSED = "CLAIM_REFUSED"
# Pseudo-filters reported with the real ones when nothing fits.
LOST_RACE = "ClaimRefused"


@dataclass
class Placement:
    """Where one instance goes: a claimed primary, and unclaimed alternates on other hosts."""

    instance_uuid: str
    primary: tuple[HostState, PendingClaim]
    alternates: list[HostState] = field(default_factory=list)
    # The rest of the primary's ranking, where alternates are sought.
    runners_up: list[HostState] = field(default_factory=list)


@dataclass
class _Walk:
    """One instance's walk over the candidates; resumable when a sample is used up."""

    order: Sequence[str]
    start: int
    position: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    scanned: int = 0
    # Nodes a filter rejected while the mirror counted claims on them: the mirror may
    # have missed a release, so they are checked against Redis before "no valid host".
    suspects: dict[str, str] = field(default_factory=dict)
    rechecked: bool = False


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
        self.weighers = list(weighers)
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
        rng = random.Random(request.seed)  # None seeds from the OS
        context = await self._context(request)
        filters = [f for f in self.filters if f.applies(request)]
        order, excluded = self._pool(request)
        placements: list[Placement] = []
        try:
            for index, instance_uuid in enumerate(request.instance_uuids):
                for _attempt in range(3):
                    walk = _Walk(order, rng.randrange(len(order)) if order else 0)
                    placement = await self._place(
                        instance_uuid, request, context, filters, walk, rng
                    )
                    if placement is None:
                        raise self._no_valid_host(request, walk, excluded, placed=index)
                    group_host = await self._group_host(request, placement.primary[0])
                    if group_host is None:
                        break
                    # Another replica's member fixed the group's host meanwhile: follow it.
                    await self._release([placement.primary[1]])
                    context.group_hosts = {group_host}
                else:
                    walk.rejected[LOST_RACE] += 1
                    raise self._no_valid_host(request, walk, excluded, placed=index)
                placements.append(placement)
                context.group_hosts.add(placement.primary[0].host)
        except BaseException:
            released = await self._release([p.primary[1] for p in placements])
            if placements:
                log.info("released %d claims of a request that could not be placed", released)
            raise
        if request.hints.group:
            await self.groups.add(
                request.hints.group, request.hints.group_policy, request.instance_uuids
            )
        for placement in placements:
            self._pick_alternates(placement, request)
        return placements

    async def claim_alternate(
        self, request: Request, instance_uuid: str, node_uuid: str
    ) -> tuple[HostState, PendingClaim]:
        """Claim `node_uuid` for one instance of `request`, after filtering it again: the
        node may have filled up, gone down or been disabled since it was selected."""
        state = self.mirror.nodes.get(node_uuid)
        if state is None:
            raise NotFound(
                f"node {node_uuid} is not in the scheduler's cache (deleted since it was "
                "selected?); try the next alternate",
                reason="NODE_NOT_FOUND",
            )
        where = f"{state.host}/{state.nodename}"
        context = await self._context(request)
        for host_filter in self.filters:
            if host_filter.applies(request) and not host_filter.passes(state, request, context):
                raise ResourceExhausted(
                    f"alternate {where} no longer passes {host_filter.name}; "
                    "try the next alternate",
                    reason=CLAIM_REFUSED,
                    metadata={"filter": host_filter.name, "node_uuid": node_uuid},
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
        context = PlacementContext(hosts_of=self.mirror.hosts_of)
        if hints.same_host:
            context.same_hosts = self.mirror.hosts_of(hints.same_host)
        if hints.different_host:
            context.different_hosts = self.mirror.hosts_of(hints.different_host)
        if hints.group:
            members, group_host = await self.groups.members(hints.group, hints.group_policy)
            context.group_hosts = set(self.mirror.hosts_of(members))
            if group_host and hints.group_policy is GroupPolicy.AFFINITY:
                context.group_hosts.add(group_host)
        return context

    def _pool(self, request: Request) -> tuple[Sequence[str], int]:
        """The candidate nodes, and how many nodes the hints ruled out before filtering
        (forced hosts or nodes, ignored hosts, the aggregate restriction)."""
        hints = request.hints
        everything = self.mirror.order()
        if not (
            hints.force_hosts
            or hints.force_nodes
            or hints.ignore_hosts
            or hints.same_aggregate_as_host
        ):
            return everything, 0
        chosen: set[str] | None = None
        if hints.force_hosts or hints.force_nodes:
            chosen = set()
            for host in hints.force_hosts:
                chosen |= self.mirror.node_uuids_of(host)
            for nodename in hints.force_nodes:
                chosen |= self.mirror.node_uuids_named(nodename)
        if hints.same_aggregate_as_host:
            peers = self._aggregate_peers(hints.same_aggregate_as_host)
            in_aggregate = {u for host in peers for u in self.mirror.node_uuids_of(host)}
            chosen = in_aggregate if chosen is None else chosen & in_aggregate
        pool = everything if chosen is None else sorted(chosen)
        if hints.ignore_hosts:
            pool = [u for u in pool if self.mirror.nodes[u].host not in hints.ignore_hosts]
        return pool, len(everything) - len(pool)

    def _aggregate_peers(self, host: str) -> set[str]:
        facts = self.mirror.facts.get(host)
        if facts is None or not facts.aggregates:
            return set()
        mine = set(facts.aggregates)
        return {h for h, f in self.mirror.facts.items() if mine.intersection(f.aggregates)}

    def _feasible(
        self,
        walk: _Walk,
        filters: Sequence[HostFilter],
        request: Request,
        context: PlacementContext,
    ) -> Iterator[HostState]:
        """Continue the walk, yielding nodes that pass every filter."""
        order, total = walk.order, len(walk.order)
        nodes = self.mirror.nodes
        while walk.position < total:
            node_uuid = order[(walk.start + walk.position) % total]
            walk.position += 1
            state = nodes.get(node_uuid)
            if state is None:
                continue
            walk.scanned += 1
            for host_filter in filters:
                if not host_filter.passes(state, request, context):
                    walk.rejected[host_filter.name] += 1
                    if state.claim_count:
                        walk.suspects[node_uuid] = host_filter.name
                    break
            else:
                yield state

    async def _place(
        self,
        instance_uuid: str,
        request: Request,
        context: PlacementContext,
        filters: Sequence[HostFilter],
        walk: _Walk,
        rng: random.Random,
    ) -> Placement | None:
        size = self.sample_size(len(walk.order))
        feasible = self._feasible(walk, filters, request, context)
        while True:
            sample = [state for _, state in zip(range(size), feasible, strict=False)]
            if not sample:
                if walk.rechecked or not walk.suspects:
                    return None
                await self._recheck(walk)
                feasible = self._feasible(walk, filters, request, context)
                continue
            ranked = self._rank(sample, request, context, rng)
            placement = await self._claim_in_order(instance_uuid, ranked, request, walk)
            if placement is not None:
                return placement

    async def _recheck(self, walk: _Walk) -> None:
        """Re-read the suspects' claims from Redis and walk them once more."""
        suspects = list(walk.suspects)
        found = await self.store.claims_of(suspects)
        for node_uuid, claims in (found or {}).items():  # None: Redis lost them, keep ours
            self.mirror.replace_claims(node_uuid, claims)
        walk.rejected.subtract(walk.suspects.values())
        walk.rejected += Counter()  # drop the zero counts
        walk.order, walk.start, walk.position = suspects, 0, 0
        walk.suspects, walk.rechecked = {}, True

    def _rank(
        self,
        sample: list[HostState],
        request: Request,
        context: PlacementContext,
        rng: random.Random,
    ) -> list[HostState]:
        weights = weigh_all(sample, self.weighers, request, context)
        ranked = [
            state for _, state in sorted(zip(weights, sample, strict=True), key=lambda p: -p[0])
        ]
        subset = min(self.settings.host_subset_size, len(ranked))
        if subset > 1:
            ranked.insert(0, ranked.pop(rng.randrange(subset)))
        return ranked

    async def _claim_in_order(
        self, instance_uuid: str, ranked: list[HostState], request: Request, walk: _Walk
    ) -> Placement | None:
        """Claim the best node that still has room; the rest of the ranking is kept for
        the alternates."""
        wanted = request.resources
        for index, state in enumerate(ranked):
            if not state.fits(wanted):
                continue
            claim = await self._claim(state, instance_uuid, wanted)
            if claim is None:
                walk.rejected[LOST_RACE] += 1
                continue
            return Placement(instance_uuid, (state, claim), runners_up=ranked[index + 1 :])
        return None

    def _pick_alternates(self, placement: Placement, request: Request) -> None:
        """Up to max_attempts - 1 alternates from the primary's ranking, one per host other
        than the primary's, best first; nothing is claimed."""
        wanted = request.resources
        hosts = {placement.primary[0].host}
        if request.hints.group_policy is GroupPolicy.AFFINITY and request.hints.group:
            placement.runners_up = []  # alternates are on other hosts: never for affinity
        for state in placement.runners_up:
            if len(placement.alternates) >= self.settings.max_attempts - 1:
                break
            if state.host not in hosts and state.fits(wanted):
                hosts.add(state.host)
                placement.alternates.append(state)
        placement.runners_up = []

    async def _claim(
        self, state: HostState, instance_uuid: str, wanted: Resources
    ) -> PendingClaim | None:
        for _attempt in range(2):
            result = await self.store.claim(state.node_uuid, instance_uuid, wanted)
            if isinstance(result, PendingClaim):
                self.mirror.add_claim(result)
                return result
            if isinstance(result, ClaimRefused):
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
        self, request: Request, walk: _Walk, excluded: int, placed: int
    ) -> ResourceExhausted:
        flavor = request.flavor
        wanted = request.resources
        size = (
            f"{flavor.name + ' ' if flavor.name else ''}({wanted.vcpus} vcpus, "
            f"{wanted.memory_mb} MB RAM, {wanted.disk_gb} GB disk)"
        )
        removed = dict(walk.rejected.most_common())
        if excluded:
            removed = {"SchedulerHints": excluded, **removed}
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
