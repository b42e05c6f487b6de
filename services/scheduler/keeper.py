"""CacheKeeper: keeps the mirror and Redis true to the registry and the node service.

    WatchServices ──► services, aggregates ──► HostFacts per host ─┐
    WatchComputeNodes ──► HostState per node ──────────────────────┼─► mirror (at once)
                                                                   └─► Redis (batched writer)
    Redis claim events ──► the claim or release applied ──► mirror

Redis is a cache: when its cache marker is gone (flushed, or a new Redis) the keeper
lists both services again and writes everything back, with the claims this replica holds.
Until then the mirror keeps its claims: a Redis without the marker, or rebuilt by another
replica before this one wrote its claims back, is never read as "these claims were
released" (`PlacementStore.claims_of`), or the claims to write back would be
gone from the mirror before the rebuild (a restarted server resubscribes to claim events
and re-reads every node's claims at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from berth.v1 import common_pb2, node_pb2, node_pb2_grpc, registry_pb2, registry_pb2_grpc
from redis import exceptions as redis_errors

from services.common.backoff import Backoff
from services.common.channels import aio_channel, call_metadata
from services.common.settings import COMPUTE_BINARY
from services.common.supervise import stop_tasks, supervised
from services.scheduler import convert
from services.scheduler.followers import Follower
from services.scheduler.hoststate import HostFacts, HostState
from services.scheduler.mirror import Mirror
from services.scheduler.settings import SchedulerSettings
from services.scheduler.store.placement import PlacementStore, claim_event

log = logging.getLogger(__name__)

DELETED = common_pb2.EVENT_TYPE_DELETED
# Listed nodes loaded into the mirror at a time (some tens of milliseconds of work).
LOAD_CHUNK = 2000
# Objects per listing message asked of the watches: a listing of 100,000 nodes is 200
# messages, not 100,000 (each message costs gRPC far more than its bytes).
LISTING_BATCH = 500


@dataclass
class ResyncResult:
    nodes: int
    services: int
    duration_s: float


class _NodeSide:
    """WatchComputeNodes -> mirror + pending Redis writes."""

    def __init__(self, keeper: CacheKeeper) -> None:
        self.keeper = keeper
        # While listing: the nodes listed so far, and those not yet in the mirror (loaded
        # a chunk at a time: in bulk, yet never holding the event loop for long).
        self.seen: set[str] | None = None
        self.pending: list[node_pb2.ComputeNode] = []

    def listing_started(self) -> None:
        self.seen = set()
        self.pending = []

    def event(self, event: node_pb2.WatchComputeNodesResponse) -> None:
        if event.type == DELETED:
            self.keeper.node_deleted(event.node)
            return
        nodes = list(event.nodes) if event.nodes else [event.node]  # a batched listing
        if self.seen is None:
            self.keeper.nodes_changed(nodes)
            return
        self.seen.update(node.uuid for node in nodes)
        self.pending.extend(nodes)
        if len(self.pending) >= LOAD_CHUNK:
            self._load()

    def _load(self) -> None:
        pending, self.pending = self.pending, []
        self.keeper.nodes_changed(pending)

    def listing_done(self) -> None:
        self._load()
        seen, self.seen = self.seen or set(), None
        gone = set(self.keeper.mirror.nodes) - seen
        for node_uuid in gone:  # deleted while we were not listening
            state = self.keeper.mirror.nodes[node_uuid]
            self.keeper.drop(state)


class _RegistrySide:
    """WatchServices -> compute services and aggregates -> HostFacts per host."""

    def __init__(self, keeper: CacheKeeper) -> None:
        self.keeper = keeper
        self.services: dict[str, registry_pb2.Service] = {}
        self.aggregates: dict[str, registry_pb2.Aggregate] = {}
        self.listing: bool = False

    def listing_started(self) -> None:
        self.listing = True
        self._before = (set(self.services), set(self.aggregates))
        self.services.clear()
        self.aggregates.clear()

    def event(self, event: registry_pb2.WatchServicesResponse) -> None:
        touched: set[str] = set()
        deleted = event.type == DELETED
        services = list(event.services)  # a batched listing, or the one service
        if event.HasField("service"):
            services.append(event.service)
        for service in services:
            if service.binary != COMPUTE_BINARY:
                continue
            if deleted:
                self.services.pop(service.host, None)
            else:
                self.services[service.host] = service
            touched.add(service.host)
        aggregates = list(event.aggregates)
        if event.HasField("aggregate"):
            aggregates.append(event.aggregate)
        for aggregate in aggregates:
            old = self.aggregates.pop(aggregate.uuid, None)
            if old is not None:
                touched.update(old.hosts)
            if not deleted:
                self.aggregates[aggregate.uuid] = aggregate
                touched.update(aggregate.hosts)
        if not self.listing:
            self.refresh(touched)

    def listing_done(self) -> None:
        self.listing = False
        hosts = set(self.keeper.mirror.facts) | set(self.services)
        for aggregate in self.aggregates.values():
            hosts.update(aggregate.hosts)
        self.refresh(hosts)

    def refresh(self, hosts: set[str]) -> None:
        # Each aggregate's member list read once: asking every aggregate about every host
        # would be hosts x members (a listing of 100,000 hosts in large aggregates).
        memberships: dict[str, list[registry_pb2.Aggregate]] = {}
        for aggregate in self.aggregates.values():
            for host in aggregate.hosts:
                if host in hosts:
                    memberships.setdefault(host, []).append(aggregate)
        changed = []
        for host in hosts:
            service = self.services.get(host)
            aggregates = memberships.get(host, [])
            if service is None and not aggregates:
                self.keeper.host_gone(host)
            else:
                changed.append(convert.host_facts(host, service, aggregates))
        self.keeper.hosts_changed(changed)


class CacheKeeper:
    def __init__(self, settings: SchedulerSettings, mirror: Mirror, store: PlacementStore) -> None:
        self.settings = settings
        self.mirror = mirror
        self.store = store
        self._registry_channel = aio_channel(settings.registry_url, settings)
        self.node_channel = aio_channel(settings.node_url, settings)
        self.registry = _RegistrySide(self)
        self.node_side = _NodeSide(self)
        self.registry_follower = Follower("registry", self._watch_registry, self.registry)
        self.node_follower = Follower("node service", self._watch_nodes, self.node_side)
        # Writes waiting for the Redis writer, newest per key.
        self._node_writes: dict[str, tuple[HostState, list[str]]] = {}
        self._node_drops: dict[str, HostState] = {}
        self._host_writes: dict[str, str | None] = {}
        self._dirty = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._claims_dirty: set[str] = set()
        self._claims_event = asyncio.Event()
        self._reread_all = False  # every node with claims is dirty (see _reread_claims)
        self.last_change = time.monotonic()  # when a watch last changed the cache
        self._tasks: list[asyncio.Task[Any]] = []
        self._resync_lock = asyncio.Lock()
        self.ready = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Learn the claims Redis holds, then follow both services (listing first)."""
        try:
            for node_uuid, claims in (await self.store.all_claims()).items():
                self.mirror.replace_claims(node_uuid, claims)
        except redis_errors.RedisError as exc:
            log.warning("cannot read claims from Redis yet (%s); they arrive with events", exc)
        self._tasks = [
            supervised("redis-writer", self._write_forever),
            supervised("claim-events", self._listen_claims),
            supervised("claim-refresh", self._refresh_claims_forever),
            supervised("cache-check", self._check_forever),
        ]
        self.registry_follower.start()
        self.node_follower.start()

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        async with asyncio.timeout(timeout_s):
            await self.ready.wait()

    async def stop(self) -> None:
        await self.registry_follower.stop()
        await self.node_follower.stop()
        if self._tasks:
            await stop_tasks(*self._tasks)
        await self._registry_channel.close()
        await self.node_channel.close()

    async def learn_zone(self, zone: str, within_s: float) -> bool:
        """Whether `zone` is known, after waiting up to `within_s` for the registry's
        events: an aggregate made a zone a moment ago may still be on its way here."""
        deadline = asyncio.get_running_loop().time() + within_s
        while zone not in self.mirror.zones():
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0 or not await self.registry_follower.next_event(left):
                return False
        return True

    async def resync(self, why: str = "asked") -> ResyncResult:
        """List both services again and write every HostState back to Redis."""
        async with self._resync_lock:
            started = time.monotonic()
            log.info("resync started (%s): listing the registry and the node service", why)
            await self.registry_follower.relist()
            await self.node_follower.relist()
            await self.registry_follower.synced.wait()
            await self.node_follower.synced.wait()
            await self._mark_built()
            result = ResyncResult(
                len(self.mirror.nodes), len(self.registry.services), time.monotonic() - started
            )
            log.info(
                "resync done: %d nodes, %d compute services in %.2f s",
                result.nodes,
                result.services,
                result.duration_s,
            )
            return result

    async def _mark_built(self) -> None:
        """Write what is pending, the claims this replica holds, then the cache marker."""
        await self.flush()
        await self._restore_claims()
        self.store.trusted_build = _now_ms()
        await self.store.mark_built(
            nodes=len(self.mirror.nodes),
            built_at_ms=self.store.trusted_build,
            registry_revision=self.registry_follower.revision,
            node_revision=self.node_follower.revision,
        )
        self._reread_claims()

    async def _restore_claims(self) -> None:
        restored = await self.store.restore_claims(self.mirror.confirmed_claims(), _now_ms())
        if restored:
            log.info("restored %d pending claims into Redis", restored)

    def _reread_claims(self) -> None:
        """Re-read every node's claims: events missed while Redis was away, and the claims
        other replicas put back. Only nodes with claims, in Redis or in the mirror, can
        have any to re-read (`_refresh_claims_forever` finds them)."""
        self._reread_all = True
        self._claims_event.set()

    # -- watch streams ----------------------------------------------------------------------

    async def _watch_registry(self, revision: int) -> AsyncIterator[Any]:
        stub = registry_pb2_grpc.RegistryServiceStub(self._registry_channel)
        call = stub.WatchServices(
            registry_pb2.WatchServicesRequest(start_revision=revision, listing_batch=LISTING_BATCH),
            metadata=call_metadata(self.settings, self.settings.registry_url),
        )
        async for event in call:
            yield event

    async def _watch_nodes(self, revision: int) -> AsyncIterator[Any]:
        stub = node_pb2_grpc.NodeServiceStub(self.node_channel)
        call = stub.WatchComputeNodes(
            node_pb2.WatchComputeNodesRequest(start_revision=revision, listing_batch=LISTING_BATCH),
            metadata=call_metadata(self.settings, self.settings.node_url),
        )
        async for event in call:
            yield event

    # -- changes, applied to the mirror at once and queued for Redis --------------------------

    def nodes_changed(self, nodes: list[node_pb2.ComputeNode]) -> None:
        reports = []
        for node in nodes:
            # Claims the report confirms (its instances name them) and claims the node
            # ended (instances built and deleted before any report named them): neither
            # counts on.
            ended = [*node.claim_ids, *node.released_claim_ids]
            old = self.mirror.nodes.get(node.uuid)
            if old is not None and old.generation == node.generation:
                # The report the mirror holds (listed again: a resync, a reconnect). The
                # node service bumps the generation on every change, so only Redis, which
                # may have lost it, needs it again.
                self._queue_write(old, ended)
                continue
            if old is not None and (old.host, old.nodename) != (node.host, node.nodename):
                self._node_drops[node.uuid] = old  # moved host (rebalance): old entry goes
            reports.append((convert.host_state(node), ended))
        for (state, ended), taken in zip(reports, self.mirror.put_nodes(reports), strict=True):
            if taken:
                self._queue_write(state, ended)
        if nodes:
            self._wake()

    def _queue_write(self, state: HostState, ended: list[str]) -> None:
        # A newer report of the node replaces the write still queued, but the claims the
        # older one ended stay ended.
        queued = self._node_writes.get(state.node_uuid)
        if queued is not None:
            ended = list(dict.fromkeys([*queued[1], *ended]))
        self._node_writes[state.node_uuid] = (state, ended)

    def node_deleted(self, node: node_pb2.ComputeNode) -> None:
        state = self.mirror.nodes.get(node.uuid)
        if state is not None:
            self.drop(state)

    def drop(self, state: HostState) -> None:
        self.mirror.drop_node(state.node_uuid)
        self._node_writes.pop(state.node_uuid, None)
        self._node_drops[state.node_uuid] = state
        self._wake()

    def hosts_changed(self, many: list[HostFacts]) -> None:
        """Hosts' facts to the mirror (those that differ) and to Redis (all: a resync
        rewrites a Redis that lost them)."""
        facts_of = self.mirror.facts
        self.mirror.set_many_facts([f for f in many if facts_of.get(f.host) != f])
        for facts in many:
            self._host_writes[facts.host] = convert.facts_json(facts)
        if many:
            self._wake()

    def host_gone(self, host: str) -> None:
        if host in self.mirror.facts:
            self.mirror.drop_facts(host)
        self._host_writes[host] = None
        self._wake()

    def _wake(self) -> None:
        self.last_change = time.monotonic()
        self._idle.clear()
        self._dirty.set()

    async def flush(self) -> None:
        """Until every change seen so far is in Redis."""
        while self._node_writes or self._node_drops or self._host_writes or not self._idle.is_set():
            self._dirty.set()
            await asyncio.sleep(0.005)

    async def repair(self, node_uuid: str) -> bool:
        """Put one node the mirror knows (and its claims) back into Redis."""
        state = self.mirror.nodes.get(node_uuid)
        if state is None:
            return False
        await self.store.put_nodes([(state, convert.node_state_bytes(state), [])])
        await self.store.restore_claims(self.mirror.claims(node_uuid), _now_ms())
        facts = self.mirror.facts.get(state.host)
        if facts is not None:
            await self.store.put_hosts({state.host: convert.facts_json(facts)})
        return True

    async def _write_forever(self) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            writes, self._node_writes = self._node_writes, {}
            drops, self._node_drops = self._node_drops, {}
            hosts, self._host_writes = self._host_writes, {}
            try:
                await self._write(writes, drops, hosts)
                backoff.reset()
            except Exception as exc:  # Redis away, or anything else: nothing may be lost
                # Put back what was not written (unless something newer arrived meanwhile).
                self._node_writes = writes | self._node_writes
                self._node_drops = drops | self._node_drops
                self._host_writes = hosts | self._host_writes
                delay = backoff.next_delay()
                log.warning("cannot write HostStates to Redis (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                self._dirty.set()
                continue
            if not (self._node_writes or self._node_drops or self._host_writes):
                self._idle.set()

    async def _write(
        self,
        writes: dict[str, tuple[HostState, list[str]]],
        drops: dict[str, HostState],
        hosts: dict[str, str | None],
    ) -> None:
        for state in drops.values():
            await self.store.drop_node(state)
        await self.store.put_hosts({h: j for h, j in hosts.items() if j is not None})
        for host in [h for h, j in hosts.items() if j is None]:
            await self.store.drop_host(host)
        queued = list(writes.values())
        for start in range(0, len(queued), LOAD_CHUNK):  # the loop keeps serving meanwhile
            chunk = queued[start : start + LOAD_CHUNK]
            await self.store.put_nodes([(s, convert.node_state_bytes(s), ids) for s, ids in chunk])

    # -- the cache marker --------------------------------------------------------------------

    async def _check_forever(self) -> None:
        await self.registry_follower.synced.wait()
        await self.node_follower.synced.wait()
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                if not self.ready.is_set():
                    await self._mark_built()
                    self.ready.set()
                    log.info(
                        "HostState cache ready: %d nodes, %d hosts",
                        len(self.mirror.nodes),
                        len(self.mirror.facts),
                    )
                elif (build := await self.store.cache_build()) is None:
                    log.warning(
                        "the placement store lost the HostState cache (Redis flushed or "
                        "replaced); rebuilding it from the registry and the node service"
                    )
                    await self.resync("Redis lost the cache")
                elif build != self.store.trusted_build:
                    # Another replica rebuilt it first (or resynced): the claims only this
                    # replica knew of yet, made just before Redis was lost, go back too.
                    await self._restore_claims()
                    self.store.trusted_build = build
                    self._reread_claims()
                self.mirror.expire(_now_ms())
                backoff.reset()
                await asyncio.sleep(self.settings.cache_check_interval)
            except redis_errors.RedisError as exc:
                delay = backoff.next_delay()
                log.warning("Redis unreachable (%s); checking again in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    # -- claims other replicas make ------------------------------------------------------------

    async def _listen_claims(self) -> None:
        backoff = Backoff(0.2, 10.0)
        while True:
            pubsub = self.store.redis.pubsub()
            try:
                await pubsub.subscribe(self.store.keys.channel)
                self._reread_claims()  # whatever happened while not subscribed
                backoff.reset()
                own = f"{self.store.replica} ".encode()
                async for message in pubsub.listen():
                    data = message["data"]
                    if message["type"] != "message" or data.startswith(own):
                        continue  # its own claim or release: the mirror has it already
                    event = claim_event(self.store.keys, data)
                    if event.claimed is not None:
                        self.mirror.add_claim(event.claimed)
                    elif event.released:
                        self.mirror.remove_claims(event.released)
                    else:  # a replica of an older release: read the node's claims
                        self._claims_dirty.add(event.node_uuid)
                        self._claims_event.set()
            except redis_errors.RedisError as exc:
                delay = backoff.next_delay()
                log.warning("claim events interrupted (%s); resubscribing in %.1f s", exc, delay)
                await asyncio.sleep(delay)
            finally:
                await pubsub.aclose()

    async def _refresh_claims_forever(self) -> None:
        while True:
            await self._claims_event.wait()
            self._claims_event.clear()
            await asyncio.sleep(0.01)  # let a burst of events coalesce
            reread_all, self._reread_all = self._reread_all, False
            node_uuids, self._claims_dirty = list(self._claims_dirty), set()
            try:
                if reread_all:
                    claimed = await self.store.nodes_with_claims()
                    node_uuids = list(claimed | self.mirror.claimed_nodes() | set(node_uuids))
                for start in range(0, len(node_uuids), 1000):
                    batch = node_uuids[start : start + 1000]
                    found = await self.store.claims_of(batch)
                    if found is None:
                        # Redis lost the cache: keep what the mirror holds, to write it
                        # back; the rebuild re-reads every node's claims afterwards.
                        log.info("claims not re-read: Redis holds no cache until the rebuild")
                        break
                    for node_uuid, claims in found.items():
                        self.mirror.replace_claims(node_uuid, claims)
                self.mirror.expire(_now_ms())
            except redis_errors.RedisError as exc:
                log.warning("cannot re-read claims (%s); will retry", exc)
                self._claims_dirty.update(node_uuids)
                self._reread_all |= reread_all
                await asyncio.sleep(1.0)
                self._claims_event.set()


def _now_ms() -> int:
    return int(time.time() * 1000)
