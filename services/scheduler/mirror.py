"""The in-process mirror of HostState: what filters and weighers read, kept by the watch
followers and by claim events from Redis. Only a hint: the claim script in Redis decides."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator

from services.scheduler.hoststate import HostFacts, HostState
from services.scheduler.store.keys import node_of_claim
from services.scheduler.store.placement import ClaimRefused, PendingClaim, claimed_by


class Mirror:
    def __init__(self) -> None:
        self.nodes: dict[str, HostState] = {}
        self.facts: dict[str, HostFacts] = {}
        self._by_host: dict[str, set[str]] = defaultdict(set)
        self._by_nodename: dict[str, set[str]] = defaultdict(set)
        self._instances: dict[str, str] = {}  # instance uuid -> node uuid (reported)
        self._claims: dict[str, dict[str, PendingClaim]] = {}  # node uuid -> claims
        self._order: list[str] = []
        self._order_dirty = False
        self._zones: Counter[str] = Counter()  # zone -> hosts in it (read on every request)

    def __len__(self) -> int:
        return len(self.nodes)

    # -- nodes -----------------------------------------------------------------------------

    def put_node(self, state: HostState, claim_ids: Iterable[str]) -> bool:
        """Take a node's new report unless an older one; the claims it names are confirmed
        (their instances now count as used) and stop counting here."""
        old = self.nodes.get(state.node_uuid)
        if old is not None and old.generation > state.generation:
            return False
        if old is None:
            self._order_dirty = True
        else:
            self._forget_placement(old)
        state.facts = self.facts.get(state.host) or HostFacts(host=state.host)
        self.nodes[state.node_uuid] = state
        self._by_host[state.host].add(state.node_uuid)
        self._by_nodename[state.nodename].add(state.node_uuid)
        for instance_uuid in state.instance_uuids:
            self._instances[instance_uuid] = state.node_uuid
        claims = self._claims.get(state.node_uuid)
        if claims:
            for claim_id in claim_ids:
                claims.pop(claim_id, None)
        self._recount(state.node_uuid)
        return True

    def drop_node(self, node_uuid: str) -> HostState | None:
        state = self.nodes.pop(node_uuid, None)
        if state is not None:
            self._forget_placement(state)
            self._claims.pop(node_uuid, None)
            self._order_dirty = True
        return state

    def _forget_placement(self, state: HostState) -> None:
        self._by_host[state.host].discard(state.node_uuid)
        if not self._by_host[state.host]:
            del self._by_host[state.host]
        self._by_nodename[state.nodename].discard(state.node_uuid)
        if not self._by_nodename[state.nodename]:
            del self._by_nodename[state.nodename]
        for instance_uuid in state.instance_uuids:
            if self._instances.get(instance_uuid) == state.node_uuid:
                del self._instances[instance_uuid]

    def set_facts(self, facts: HostFacts) -> None:
        old = self.facts.get(facts.host)
        if old is not None:
            self._zones[old.availability_zone] -= 1
        self._zones[facts.availability_zone] += 1
        self.facts[facts.host] = facts
        for node_uuid in self._by_host.get(facts.host, ()):
            self.nodes[node_uuid].facts = facts

    def drop_facts(self, host: str) -> None:
        self.set_facts(HostFacts(host=host))
        del self.facts[host]
        self._zones[""] -= 1

    def node_uuids_of(self, host: str) -> set[str]:
        return set(self._by_host.get(host, ()))

    def node_uuids_named(self, nodename: str) -> set[str]:
        return set(self._by_nodename.get(nodename, ()))

    def order(self) -> list[str]:
        """Node uuids sorted: a fixed order, so a seeded request replays the same choice."""
        if self._order_dirty:
            self._order = sorted(self.nodes)
            self._order_dirty = False
        return self._order

    def zones(self) -> set[str]:
        return {zone for zone, hosts in self._zones.items() if zone and hosts > 0}

    def hosts_of(self, instance_uuids: Iterable[str]) -> frozenset[str]:
        """The hosts holding these instances, reported or claimed."""
        hosts = set()
        claimed = None
        for instance_uuid in instance_uuids:
            node_uuid = self._instances.get(instance_uuid)
            if node_uuid is None:
                if claimed is None:
                    claimed = {
                        c.instance_uuid: c.node_uuid
                        for claims in self._claims.values()
                        for c in claims.values()
                    }
                node_uuid = claimed.get(instance_uuid)
            if node_uuid is not None and node_uuid in self.nodes:
                hosts.add(self.nodes[node_uuid].host)
        return frozenset(hosts)

    # -- claims ----------------------------------------------------------------------------

    def add_claim(self, claim: PendingClaim) -> None:
        self._claims.setdefault(claim.node_uuid, {})[claim.claim_id] = claim
        self._recount(claim.node_uuid)

    def remove_claims(self, claim_ids: Iterable[str]) -> None:
        touched = set()
        for claim_id in claim_ids:
            node_uuid = node_of_claim(claim_id)
            claims = self._claims.get(node_uuid or "")
            if claims and claims.pop(claim_id, None) is not None:
                touched.add(node_uuid)
        for node_uuid in touched:
            self._recount(node_uuid)

    def replace_claims(self, node_uuid: str, claims: Iterable[PendingClaim]) -> None:
        """What Redis holds for the node now (after another replica claimed or released)."""
        self._claims[node_uuid] = {c.claim_id: c for c in claims}
        self._recount(node_uuid)

    def refused(self, node_uuid: str, refusal: ClaimRefused) -> None:
        """Redis knew better: take its usage and claim totals until the next report."""
        state = self.nodes.get(node_uuid)
        if state is None:
            return
        if refusal.generation >= state.generation:
            state.used = refusal.used
            state.num_instances = refusal.num_instances
        state.claimed = refusal.claimed
        state.claim_count = refusal.claim_count

    def claims(self, node_uuid: str) -> list[PendingClaim]:
        return list(self._claims.get(node_uuid, {}).values())

    def all_claims(self) -> Iterator[PendingClaim]:
        for claims in self._claims.values():
            yield from claims.values()

    def expire(self, now_ms: int) -> int:
        expired = 0
        for node_uuid, claims in list(self._claims.items()):
            gone = [k for k, c in claims.items() if c.expires_ms <= now_ms]
            for claim_id in gone:
                del claims[claim_id]
            if gone:
                expired += len(gone)
                self._recount(node_uuid)
            if not claims:
                del self._claims[node_uuid]
        return expired

    def _recount(self, node_uuid: str) -> None:
        state = self.nodes.get(node_uuid)
        if state is None:
            return
        claims = self._claims.get(node_uuid, {})
        state.claimed = claimed_by(claims.values())
        state.claim_count = len(claims)
