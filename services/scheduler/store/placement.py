"""PlacementStore: the scheduler's Redis. HostStates guarded by generation, claims checked
and recorded in one Lua step, claim events published for every replica's mirror."""

from __future__ import annotations

import logging
import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from berth.client.errors import BerthError, Unavailable
from berth.v1.scheduler_pb2 import HostState as HostStateMessage
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from services.scheduler.hoststate import HostState, Resources
from services.scheduler.store.keys import Keys, new_claim_id, node_of_claim

log = logging.getLogger(__name__)

_SCRIPTS = Path(__file__).parent
# Nodes written per pipeline round trip while (re)building the cache.
WRITE_BATCH = 500
# The numbers at the head of a node's record (see `record`).
RECORD_NUMBERS = 9


@dataclass(frozen=True, slots=True)
class PendingClaim:
    claim_id: str
    node_uuid: str
    instance_uuid: str
    resources: Resources
    expires_ms: int


def claimed_by(claims: Iterable[PendingClaim]) -> Resources:
    """What these claims hold together."""
    total = Resources()
    for claim in claims:
        total = total + claim.resources
    return total


@dataclass(frozen=True, slots=True)
class ClaimRefused:
    """The node had no room after all: what Redis holds for it, to refresh the mirror."""

    why: str
    generation: int
    used: Resources
    claimed: Resources
    claim_count: int
    num_instances: int


def parse_claim(node_uuid: str, claim_id: bytes | str, value: bytes | str) -> PendingClaim:
    if isinstance(claim_id, bytes):
        claim_id = claim_id.decode()
    if isinstance(value, bytes):
        value = value.decode()
    vcpus, memory_mb, disk_gb, expires_ms, instance_uuid = value.split(" ", 4)
    return PendingClaim(
        claim_id,
        node_uuid,
        instance_uuid,
        Resources(int(vcpus), int(memory_mb), int(disk_gb)),
        int(expires_ms),
    )


def _claim_result(
    wanted: tuple[str, str, Resources], result: list[Any]
) -> PendingClaim | ClaimRefused | None:
    claim_id, instance_uuid, _ = wanted
    if result[0] == -1:
        return None
    if result[0] == 1:
        _, expires_ms, vcpus, memory_mb, disk_gb = result
        return PendingClaim(
            claim_id,
            node_of_claim(claim_id) or "",
            instance_uuid,
            Resources(vcpus, memory_mb, disk_gb),
            expires_ms,
        )
    why, gen, uv, um, ud, cv, cm, cd, count, instances = result[1:]
    return ClaimRefused(
        why.decode() if isinstance(why, bytes) else why,
        gen,
        Resources(uv, um, ud),
        Resources(cv, cm, cd),
        count,
        instances,
    )


def record(state: HostState, stored: bytes) -> bytes:
    """A node as Redis keeps it: what the claim script reads, then the stored state."""
    capacity, usage = state.capacity, state.usage
    numbers = (
        state.generation,
        capacity.vcpus,
        capacity.memory_mb,
        capacity.disk_gb,
        usage.vcpus,
        usage.memory_mb,
        usage.disk_gb,
        1 if state.whole_machine else 0,
        state.num_instances,
    )
    return " ".join(map(str, numbers)).encode() + b" " + stored


def stored_of(value: bytes) -> bytes:
    """The stored state of a node's record (after its nine numbers)."""
    return value.split(b" ", RECORD_NUMBERS)[RECORD_NUMBERS]


@dataclass(frozen=True, slots=True)
class ClaimEvent:
    """What a claim or release published: which replica, which node, and the change (a
    claim made, or the ids released); neither for an event of an older release, which
    names only the node (its claims must be read again)."""

    replica: str
    node_uuid: str
    claimed: PendingClaim | None = None
    released: tuple[str, ...] = ()


def claim_event(keys: Keys, data: bytes | str) -> ClaimEvent:
    """Parse "<replica> <claims key> + <claim id> <claim value>" or "<replica> <claims key>
    - <claim id>..." (or the bare "<replica> <claims key>" of an older release)."""
    text = data.decode() if isinstance(data, bytes) else data
    replica, key, *change = text.split(" ", 3)
    node_uuid = keys.node_of_claims_key(key)
    if len(change) == 2 and change[0] == "+":
        claim_id, _, value = change[1].partition(" ")
        return ClaimEvent(replica, node_uuid, claimed=parse_claim(node_uuid, claim_id, value))
    if len(change) == 2 and change[0] == "-":
        return ClaimEvent(replica, node_uuid, released=tuple(change[1].split(" ")))
    return ClaimEvent(replica, node_uuid)


def _text(value: bytes | str | None) -> str:
    """A Redis reply as text (this client answers bytes)."""
    return value.decode() if isinstance(value, bytes) else value or ""


def unavailable_redis(exc: BaseException) -> BerthError | None:
    """Error translator: an unreachable Redis is UNAVAILABLE, never INTERNAL."""
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
        return Unavailable(
            "the placement store (Redis) is unavailable; try again shortly",
            reason="PLACEMENT_STORE_UNAVAILABLE",
        )
    return None


class PlacementStore:
    def __init__(self, redis: Redis, prefix: str, claim_ttl_s: float) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.claim_ttl_ms = int(claim_ttl_s * 1000)
        # The cache build (the marker's built_at_ms) this replica has put its claims into;
        # None until it has (then any build is read as the truth).
        self.trusted_build: int | None = None
        # Names this replica in the claim events it causes: it applies its own claims and
        # releases to its mirror directly, and skips their events.
        self.replica = secrets.token_hex(6)
        self._put_nodes = redis.register_script((_SCRIPTS / "put_nodes.lua").read_text())
        self._drop_node = redis.register_script((_SCRIPTS / "drop_node.lua").read_text())
        self._claim = redis.register_script((_SCRIPTS / "claim.lua").read_text())
        self._release = redis.register_script((_SCRIPTS / "release.lua").read_text())

    async def close(self) -> None:
        await self.redis.aclose()

    # -- HostStates ------------------------------------------------------------------------

    async def put_nodes(self, writes: Sequence[tuple[HostState, bytes, Sequence[str]]]) -> int:
        """Write (state, stored bytes, confirmed claim ids) per node; returns how many were
        newer than what Redis held.

        A node is one string: the numbers the claim script reads (generation, capacity and
        usage per resource, whole machine, instances), space-separated, then the stored
        bytes (the node's part of a HostState). One small value per node keeps Redis near
        0.3 KB a node, where a hash with a long field costs three times that."""
        written = 0
        keys = self.keys
        for start in range(0, len(writes), WRITE_BATCH):
            batch = writes[start : start + WRITE_BATCH]
            node_keys: list[str] = []
            args: list[Any] = []
            for state, stored, confirmed in batch:
                node_keys += (keys.node(state.node_uuid), keys.claims(state.node_uuid))
                args += (state.generation, record(state, stored), len(confirmed), *confirmed)
            written += await self._call(self._put_nodes, node_keys, args)
        return written

    async def drop_node(self, state: HostState) -> bool:
        keys = [self.keys.node(state.node_uuid), self.keys.claims(state.node_uuid)]
        return bool(await self._drop_node(keys=keys, args=[state.generation]))

    async def put_hosts(self, facts_json: dict[str, str]) -> None:
        if facts_json:
            # redis-py types the mapping's keys invariantly: a dict[str, str] is refused.
            await self.redis.hset(self.keys.hosts, mapping=facts_json)  # type: ignore[arg-type]

    async def drop_host(self, host: str) -> None:
        await self.redis.hdel(self.keys.hosts, host)

    async def mark_built(self, **fields: str | int) -> None:
        await self.redis.hset(self.keys.meta, mapping=fields)  # type: ignore[arg-type]  # as above

    async def cache_build(self) -> int | None:
        """When the cache was last (re)built, by whichever replica; None: not built."""
        built_at = await self.redis.hget(self.keys.meta, "built_at_ms")
        return None if built_at is None else int(built_at)

    async def read_states(
        self, node_uuids: Sequence[str]
    ) -> list[tuple[str, bytes, str, list[PendingClaim]]]:
        """(node uuid, stored state, host facts JSON, pending claims) of the nodes Redis holds."""
        pipe = self.redis.pipeline(transaction=False)
        for node_uuid in node_uuids:
            pipe.get(self.keys.node(node_uuid))
            pipe.hgetall(self.keys.claims(node_uuid))
        raw = await pipe.execute()
        found = []
        for i, node_uuid in enumerate(node_uuids):
            value, claims = raw[2 * i], raw[2 * i + 1]
            if value is None:
                continue
            stored = stored_of(value)
            pending = [parse_claim(node_uuid, k, v) for k, v in claims.items()]
            found.append((node_uuid, stored, HostStateMessage.FromString(stored).host, pending))
        hosts = [host for _, _, host, _ in found]
        facts = await self.redis.hmget(self.keys.hosts, hosts) if hosts else []
        return [
            (node_uuid, stored, _text(fact), claims)
            for (node_uuid, stored, _, claims), fact in zip(found, facts, strict=True)
        ]

    # -- claims ----------------------------------------------------------------------------

    async def claim(
        self, node_uuid: str, instance_uuid: str, wanted: Resources
    ) -> PendingClaim | ClaimRefused | None:
        """Claim `wanted` on the node: the claim, why it was refused, or None when Redis
        does not know the node (deleted, or the cache is being rebuilt)."""
        (result,) = await self.claim_many([(new_claim_id(node_uuid), instance_uuid, wanted)])
        return result

    async def claim_many(
        self, wanted: Sequence[tuple[str, str, Resources]]
    ) -> list[PendingClaim | ClaimRefused | None]:
        """`claim` for (claim id, instance uuid, resources) each, in one round trip: still
        one Lua step per claim (each on its own node), answered in order."""
        calls = []
        for claim_id, instance_uuid, resources in wanted:
            node_uuid = node_of_claim(claim_id) or ""
            calls.append(
                (
                    self.keys.node(node_uuid),
                    self.keys.claims(node_uuid),
                    claim_id,
                    instance_uuid,
                    resources.vcpus,
                    resources.memory_mb,
                    resources.disk_gb,
                    self.claim_ttl_ms,
                    self.keys.channel,
                    self.replica,
                )
            )
        results = await self._run(self._claim, calls)
        return [_claim_result(w, r) for w, r in zip(wanted, results, strict=True)]

    async def _call(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One EVALSHA of `script`, loading it into a Redis that does not know it."""
        return (await self._run(script, [(*keys, *args)], keys=len(keys)))[0]

    async def _run(self, script: Any, calls: Sequence[Sequence[Any]], keys: int = 2) -> list[Any]:
        """Run `script` once per call (its keys first) in one pipeline; EVALSHA by hand,
        since the Script wrapper costs as much as the command in a bulk write. A Redis
        that does not know the script (restarted, new) gets it and the calls again."""
        for attempt in range(2):
            try:
                if len(calls) == 1:  # the usual claim: no pipeline to build
                    return [await self.redis.evalsha(script.sha, keys, *calls[0])]
                pipe = self.redis.pipeline(transaction=False)
                for args in calls:
                    pipe.evalsha(script.sha, keys, *args)
                return list(await pipe.execute())
            except redis_errors.NoScriptError:
                if attempt:
                    raise
                await self.redis.script_load(script.script)
        raise AssertionError("unreachable")

    async def release(self, claim_ids: Iterable[str]) -> int:
        """Release claims by id; ids of unknown form or already gone count as not released."""
        by_node: dict[str, list[str]] = defaultdict(list)
        for claim_id in claim_ids:
            node_uuid = node_of_claim(claim_id)
            if node_uuid is not None:
                by_node[node_uuid].append(claim_id)
        if not by_node:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for node_uuid, ids in by_node.items():
            await self._release(
                keys=[self.keys.claims(node_uuid)],
                args=[self.keys.channel, self.replica, *ids],
                client=pipe,
            )
        return sum(int(n) for n in await pipe.execute())

    async def claims_of(self, node_uuids: Sequence[str]) -> dict[str, list[PendingClaim]] | None:
        """The nodes' claims as Redis holds them, or None when Redis holds no cache this
        replica has put its claims into: the marker is gone (flushed, or a new server), or
        another replica rebuilt it and this one has not yet written its own claims back.
        Missing claims then say nothing about claims released, only about a Redis that lost
        them, and a mirror that took them for the truth would have nothing left to write
        back. The marker is read last, on the same connection: a Redis lost while the
        claims were read is noticed."""
        pipe = self.redis.pipeline(transaction=False)
        for node_uuid in node_uuids:
            pipe.hgetall(self.keys.claims(node_uuid))
        pipe.hget(self.keys.meta, "built_at_ms")
        *raw, built_at = await pipe.execute()
        if built_at is None or self.trusted_build not in (None, int(built_at)):
            return None
        return {
            node_uuid: [parse_claim(node_uuid, k, v) for k, v in claims.items()]
            for node_uuid, claims in zip(node_uuids, raw, strict=True)
        }

    async def all_claims(self) -> dict[str, list[PendingClaim]]:
        """Every node's claims (a scheduler starting up learns what others hold); none
        from a Redis that holds no cache."""
        node_uuids = list(await self.nodes_with_claims())
        claims: dict[str, list[PendingClaim]] = {}
        for start in range(0, len(node_uuids), WRITE_BATCH):
            found = await self.claims_of(node_uuids[start : start + WRITE_BATCH])
            if found is None:
                return {}
            claims.update(found)
        return claims

    async def nodes_with_claims(self) -> set[str]:
        """The nodes Redis holds claims for: one SCAN of the keyspace (done in Redis), where
        asking every node would be a command per node."""
        return {
            self.keys.node_of_claims_key(key.decode())
            async for key in self.redis.scan_iter(match=self.keys.claims_pattern, count=5000)
        }

    async def restore_claims(self, claims: Iterable[PendingClaim], now_ms: int) -> int:
        """Put back claims a replica still holds in memory after Redis lost them (flush)."""
        pipe = self.redis.pipeline(transaction=False)
        count = 0
        for claim in claims:
            ttl_ms = claim.expires_ms - now_ms
            if ttl_ms <= 0:
                continue
            r = claim.resources
            value = f"{r.vcpus} {r.memory_mb} {r.disk_gb} {claim.expires_ms} {claim.instance_uuid}"
            key = self.keys.claims(claim.node_uuid)
            pipe.hset(key, claim.claim_id, value)
            pipe.pexpire(key, self.claim_ttl_ms)  # the longest any claim lives
            count += 1
        if count:
            await pipe.execute()
        return count

    # -- server groups -----------------------------------------------------------------------

    async def group(self, name: str) -> tuple[str, list[str], str]:
        """(policy, member instance uuids, the affinity group's host or "") of a server
        group; ("", [], "") when it is new."""
        raw = await self.redis.hgetall(self.keys.group(name))
        policy = _text(raw.pop(b"policy", b""))
        host = _text(raw.pop(b"host", b""))
        return policy, [_text(k) for k in raw], host

    async def hold_group_host(self, name: str, policy: str, host: str) -> str:
        """The host of an affinity group: `host` if the group has none yet (this member
        fixes it), else the one an earlier member fixed. One MULTI on one key, so of two
        replicas placing first members at once exactly one fixes the host; kept as long as
        the group's pending members (a built group's host is where its members are)."""
        key = self.keys.group(name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "host", host)
            pipe.hset(key, "policy", policy)
            pipe.hget(key, "host")
            pipe.pexpire(key, self.claim_ttl_ms)
            _, _, held, _ = await pipe.execute()
        return held.decode()

    async def add_group_members(
        self, name: str, policy: str, instance_uuids: Sequence[str]
    ) -> None:
        """Pending members: kept while their claims may live; built members are known to
        the node service."""
        mapping: dict[str, str] = {"policy": policy}
        mapping.update({uuid: "" for uuid in instance_uuids})
        key = self.keys.group(name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]  # as in put_hosts
            pipe.pexpire(key, self.claim_ttl_ms)
            await pipe.execute()

    async def memory_bytes(self) -> int:
        info = await self.redis.info("memory")
        return int(info["used_memory"])
