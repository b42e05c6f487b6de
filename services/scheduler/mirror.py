"""The in-process mirror of HostState: what filters and weighers read, kept by the watch
followers and by claims. Only a hint: the claim script in Redis decides.

Each node is a row of `Columns`, written in place when its report, its host's facts or its
claims change; indexes lead from host, nodename, zone, hypervisor type and resource class
to rows. Claims this replica makes are applied at once and expire in deadline order (a
heap), so their cost does not grow with the claims outstanding.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from services.scheduler.columns import BoolArray, Columns, RowIndex, View
from services.scheduler.hoststate import HostFacts, HostState, Resources
from services.scheduler.store.keys import node_of_claim
from services.scheduler.store.placement import ClaimRefused, PendingClaim, claimed_by

# Writes remembered for `changed_since`; a reader further behind reads every stamp.
JOURNAL_SIZE = 4096
_NO_ROWS: RowIndex = np.zeros(0, np.intp)


class _Names:
    """Interned strings: name -> small int, id 0 being "" (nothing)."""

    def __init__(self) -> None:
        self.names: list[str] = [""]
        self._ids: dict[str, int] = {"": 0}

    def id(self, name: str) -> int:
        found = self._ids.get(name)
        if found is None:
            found = self._ids[name] = len(self.names)
            self.names.append(name)
        return found

    def find(self, name: str) -> int | None:
        return self._ids.get(name)

    def mask(self, names: Iterable[str]) -> BoolArray:
        """A lookup array: True at the ids of `names` (unknown names match nothing)."""
        lookup = np.zeros(len(self.names), np.bool_)
        for name in names:
            found = self._ids.get(name)
            if found:
                lookup[found] = True
        return lookup


def _zone_id(mirror: Mirror, state: HostState) -> int:
    facts = mirror.facts.get(state.host)
    return mirror.zone_names.id(facts.availability_zone) if facts else 0


# Every column a report writes, and how (the one place that maps a report onto a row): a
# HostState attribute by name (read for a whole listing at C speed), or a function.
_REPORTED: tuple[tuple[str, str | Callable[[Mirror, HostState], Any]], ...] = (
    ("live", lambda m, s: True),
    ("total", "total"),
    ("used", "used"),
    ("capacity", "capacity"),
    ("usage", "usage"),
    ("cpu_allocation_ratio", "cpu_allocation_ratio"),
    ("num_instances", "num_instances"),
    ("io_ops", "io_ops"),
    ("whole_machine", "whole_machine"),
    ("host_id", lambda m, s: m.hosts.id(s.host)),
    ("hypervisor_id", lambda m, s: m.hypervisor_types.id(s.hypervisor_type.lower())),
    ("resource_class_id", lambda m, s: m.resource_classes.id(s.resource_class)),
    # The host's facts, as `set_many_facts` writes them when they change.
    ("service_up", lambda m, s: bool((f := m.facts.get(s.host)) and f.service_up)),
    ("service_enabled", lambda m, s: bool((f := m.facts.get(s.host)) and not f.service_disabled)),
    ("zone_id", _zone_id),
)


class Mirror:
    def __init__(self, size: int = 1024) -> None:
        self.columns = Columns(size)
        self.nodes: dict[str, HostState] = {}  # node uuid -> its latest report
        self.facts: dict[str, HostFacts] = {}  # host -> the registry's facts
        # Hosts in an aggregate, and those whose aggregates set metadata (usually few):
        # what aggregate hints and extra specs look through.
        self.hosts_with_aggregates: set[str] = set()
        self.hosts_with_metadata: set[str] = set()
        self.row_of: dict[str, int] = {}  # node uuid -> row
        self.node_at: list[str | None] = []  # row -> node uuid
        self._free_rows: list[int] = []
        self.hosts: _Names = _Names()
        self.zone_names: _Names = _Names()
        self.hypervisor_types: _Names = _Names()
        self.resource_classes: _Names = _Names()
        self._by_host: dict[str, set[str]] = defaultdict(set)
        self._by_nodename: dict[str, set[str]] = defaultdict(set)
        self._instances: dict[str, str] = {}  # instance uuid -> node uuid (reported)
        self._claims: dict[str, dict[str, PendingClaim]] = {}  # node uuid -> claims
        self._claimed_instances: dict[str, str] = {}  # instance uuid -> node uuid
        # Claims this replica counts before Redis has answered for them: never written back
        # to Redis as if Redis had lost them (it may refuse them yet).
        self._tentative: set[str] = set()
        self._deadlines: list[tuple[int, str]] = []  # (expires_ms, claim id), a heap
        self._order: list[str] = []
        self._order_dirty = False
        self._zones: Counter[str] = Counter()  # zone -> hosts in it (read on every request)
        # Grows with every row written; a row's `stamp` is the version that last wrote it.
        self.version = 0
        # The rows written lately and the versions that wrote them (what most readers ask
        # for, without reading every stamp); versions up to the floor are not in it.
        self._journal_rows: list[int] = []
        self._journal_versions: list[int] = []
        self._journal_floor = 0
        # changed_since's last question (version, mirror version, floor) and its answer.
        self._last_changed: tuple[tuple[int, int, int], RowIndex] = ((-1, -1, -1), _NO_ROWS)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def names_version(self) -> int:
        """Grows when a new host, zone, hypervisor type or resource class appears: what a
        filter prepared (an id it looked up) may then be out of date."""
        return (
            len(self.hosts.names)
            + len(self.zone_names.names)
            + len(self.hypervisor_types.names)
            + len(self.resource_classes.names)
        )

    def rows_on_host(self, host: str) -> list[int]:
        return [self.row_of[u] for u in self._by_host.get(host, ())]

    def view(self, rows: RowIndex | None = None) -> View:
        return View(self.columns, rows)

    # -- nodes -----------------------------------------------------------------------------

    def put_node(self, state: HostState, claim_ids: Iterable[str]) -> bool:
        """Take a node's new report unless an older one; the claims it names are confirmed
        (their instances now count as used) and stop counting here."""
        return self.put_nodes([(state, claim_ids)])[0]

    def put_nodes(self, reports: Sequence[tuple[HostState, Iterable[str]]]) -> list[bool]:
        """`put_node` for many reports at once, the columns written in one pass (a listing
        of 100,000 nodes loads in about a second); which reports were taken."""
        taken: list[bool] = []
        latest: dict[int, HostState] = {}  # row -> its newest report in this batch
        for state, claim_ids in reports:
            old = self.nodes.get(state.node_uuid)
            if old is not None and old.generation > state.generation:
                taken.append(False)
                continue
            if old is None:
                row = self._new_row(state.node_uuid)
                self._order_dirty = True
            else:
                row = self.row_of[state.node_uuid]
                self._forget_placement(old)
            self.nodes[state.node_uuid] = state
            self._by_host[state.host].add(state.node_uuid)
            self._by_nodename[state.nodename].add(state.node_uuid)
            for instance_uuid in state.instance_uuids:
                self._instances[instance_uuid] = state.node_uuid
            claims = self._claims.get(state.node_uuid)
            if claims:
                for claim_id in claim_ids:
                    self._forget_claim(claims.pop(claim_id, None))
            latest[row] = state
            taken.append(True)
        if latest:
            rows = np.fromiter(latest, np.intp, len(latest))
            self._write_reports(rows, list(latest.values()))
            for state in latest.values():
                if state.node_uuid in self._claims:
                    self._recount(state.node_uuid)
        return taken

    def drop_node(self, node_uuid: str) -> HostState | None:
        state = self.nodes.pop(node_uuid, None)
        if state is None:
            return None
        self._forget_placement(state)
        for claim in self._claims.pop(node_uuid, {}).values():
            self._forget_claim(claim)
        row = self.row_of.pop(node_uuid)
        self.columns.clear(row)
        self.node_at[row] = None
        self._free_rows.append(row)
        self._touch(row)
        self._order_dirty = True
        return state

    def _new_row(self, node_uuid: str) -> int:
        if self._free_rows:
            row = self._free_rows.pop()
            self.node_at[row] = node_uuid
        else:
            row = len(self.node_at)
            self.node_at.append(node_uuid)
            self.columns.ensure(row + 1)
        self.row_of[node_uuid] = row
        return row

    def _write_reports(self, rows: RowIndex, states: list[HostState]) -> None:
        """Each column from the reports (`_REPORTED`): a scalar per column for one row (a
        numpy call per value would cost more than the write), one array per column for
        many."""
        c = self.columns
        if len(rows) == 1:
            row, state = int(rows[0]), states[0]
            for name, value in _REPORTED:
                column = getattr(c, name)
                got = getattr(state, value) if isinstance(value, str) else value(self, state)
                if column.ndim == 2:
                    column[:, row] = got
                else:
                    column[row] = got
            self._derive(row)
            return
        count = len(states)
        for name, value in _REPORTED:
            column = getattr(c, name)
            values = (
                map(attrgetter(value), states)
                if isinstance(value, str)
                else (value(self, state) for state in states)
            )
            if column.ndim == 2:  # triples, read flat (np.array of tuples is far slower)
                flat = np.fromiter(chain.from_iterable(values), column.dtype, 3 * count)
                column[:, rows] = flat.reshape(count, 3).T
            else:
                column[rows] = np.fromiter(values, column.dtype, count)
        c.free[:, rows] = c.capacity[:, rows] - c.usage[:, rows] - c.claimed[:, rows]
        self._touch_many(rows)

    def _write_facts(self, row: int, facts: HostFacts | None) -> None:
        c = self.columns
        c.service_up[row] = bool(facts and facts.service_up)
        c.service_enabled[row] = bool(facts and not facts.service_disabled)
        c.zone_id[row] = self.zone_names.id(facts.availability_zone) if facts else 0

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

    # -- hosts -----------------------------------------------------------------------------

    def set_facts(self, facts: HostFacts) -> None:
        self.set_many_facts([facts])

    def set_many_facts(self, many: Iterable[HostFacts]) -> None:
        """Hosts' registry facts; their nodes' rows written in one pass (a listing)."""
        rows: list[int] = []
        written: list[HostFacts] = []
        for facts in many:
            old = self.facts.get(facts.host)
            if old is not None:
                self._zones[old.availability_zone] -= 1
            self._zones[facts.availability_zone] += 1
            self.facts[facts.host] = facts
            for hosts, present in (
                (self.hosts_with_aggregates, facts.aggregates),
                (self.hosts_with_metadata, facts.aggregate_metadata),
            ):
                if present:
                    hosts.add(facts.host)
                else:
                    hosts.discard(facts.host)
            for node_uuid in self._by_host.get(facts.host, ()):
                rows.append(self.row_of[node_uuid])
                written.append(facts)
        if not rows:
            return
        c = self.columns
        at = np.array(rows, np.intp)
        c.service_up[at] = [f.service_up for f in written]
        c.service_enabled[at] = [not f.service_disabled for f in written]
        c.zone_id[at] = [self.zone_names.id(f.availability_zone) for f in written]
        self._touch_many(at)

    def drop_facts(self, host: str) -> None:
        self.set_facts(HostFacts(host=host))
        del self.facts[host]
        self._zones[""] -= 1
        for node_uuid in self._by_host.get(host, ()):
            self._write_facts(self.row_of[node_uuid], None)

    def node_uuids_of(self, host: str) -> set[str]:
        return set(self._by_host.get(host, ()))

    def node_uuids_named(self, nodename: str) -> set[str]:
        return set(self._by_nodename.get(nodename, ()))

    def rows_of_nodes(self, node_uuids: Iterable[str]) -> BoolArray:
        mask = np.zeros(self.columns.size, np.bool_)
        rows = [self.row_of[u] for u in node_uuids if u in self.row_of]
        mask[rows] = True
        return mask

    def order(self) -> list[str]:
        """Node uuids sorted (ListHostStates pages through them)."""
        if self._order_dirty:
            self._order = sorted(self.nodes)
            self._order_dirty = False
        return self._order

    def zones(self) -> set[str]:
        return {zone for zone, hosts in self._zones.items() if zone and hosts > 0}

    def hosts_of(self, instance_uuids: Iterable[str]) -> frozenset[str]:
        """The hosts holding these instances, reported or claimed."""
        hosts = set()
        for instance_uuid in instance_uuids:
            node_uuid = self._instances.get(instance_uuid) or self._claimed_instances.get(
                instance_uuid
            )
            state = self.nodes.get(node_uuid or "")
            if state is not None:
                hosts.add(state.host)
        return frozenset(hosts)

    # -- claims ----------------------------------------------------------------------------

    def add_claim(self, claim: PendingClaim, *, tentative: bool = False) -> None:
        """Count a claim; the same claim again (Redis confirming a tentative one) only
        takes its deadline, leaving the row untouched. A `tentative` claim is one this
        replica is about to ask Redis for."""
        if tentative:
            self._tentative.add(claim.claim_id)
        else:
            self._tentative.discard(claim.claim_id)
        claims = self._claims.setdefault(claim.node_uuid, {})
        old = claims.get(claim.claim_id)
        claims[claim.claim_id] = claim
        if old is None or old.expires_ms != claim.expires_ms:
            heapq.heappush(self._deadlines, (claim.expires_ms, claim.claim_id))
        if old is None:
            self._claimed_instances[claim.instance_uuid] = claim.node_uuid
            self._count(claim, 1)
        elif old.resources != claim.resources:
            self._recount(claim.node_uuid)

    def remove_claims(self, claim_ids: Iterable[str]) -> None:
        for claim_id in claim_ids:
            self._tentative.discard(claim_id)
            node_uuid = node_of_claim(claim_id)
            claims = self._claims.get(node_uuid or "")
            if claims:
                claim = claims.pop(claim_id, None)
                if claim is not None:
                    self._forget_claim(claim)
                    self._count(claim, -1)
                if not claims:
                    del self._claims[node_uuid or ""]

    def _count(self, claim: PendingClaim, sign: int) -> None:
        """Add (or take away) one claim in its row's totals, without summing the rest."""
        row = self.row_of.get(claim.node_uuid)
        if row is None:
            return
        c = self.columns
        r = claim.resources
        c.claimed[:, row] += (sign * r.vcpus, sign * r.memory_mb, sign * r.disk_gb)
        c.claim_count[row] += sign
        self._derive(row)

    def replace_claims(self, node_uuid: str, claims: Iterable[PendingClaim]) -> None:
        """What Redis holds for the node now (after another replica claimed or released)."""
        old = self._claims.get(node_uuid, {})
        new = {c.claim_id: c for c in claims}
        for claim_id, claim in old.items():
            if claim_id not in new:
                self._forget_claim(claim)
        for claim_id, claim in new.items():
            if claim_id not in old:
                self._remember_claim(claim)
        self._claims[node_uuid] = new
        self._recount(node_uuid)

    def _remember_claim(self, claim: PendingClaim) -> None:
        self._claimed_instances[claim.instance_uuid] = claim.node_uuid
        heapq.heappush(self._deadlines, (claim.expires_ms, claim.claim_id))

    def _forget_claim(self, claim: PendingClaim | None) -> None:
        # Its deadline stays in the heap and is skipped when it comes up.
        if claim is not None and self._claimed_instances.get(claim.instance_uuid) == (
            claim.node_uuid
        ):
            del self._claimed_instances[claim.instance_uuid]

    def refused(self, node_uuid: str, refusal: ClaimRefused) -> None:
        """Redis knew better: take its usage and claim totals until the next report."""
        row = self.row_of.get(node_uuid)
        if row is None:
            return
        c = self.columns
        if refusal.generation >= self.nodes[node_uuid].generation:
            used = refusal.used
            c.usage[:, row] = (used.vcpus, used.memory_mb, used.disk_gb)
            c.num_instances[row] = refusal.num_instances
        claimed = refusal.claimed
        c.claimed[:, row] = (claimed.vcpus, claimed.memory_mb, claimed.disk_gb)
        c.claim_count[row] = refusal.claim_count
        self._derive(row)

    def claims(self, node_uuid: str) -> list[PendingClaim]:
        return list(self._claims.get(node_uuid, {}).values())

    def claim_count(self, node_uuid: str) -> int:
        return len(self._claims.get(node_uuid, {}))

    def claimed_nodes(self) -> set[str]:
        return set(self._claims)

    def all_claims(self) -> Iterator[PendingClaim]:
        for claims in self._claims.values():
            yield from claims.values()

    def confirmed_claims(self) -> Iterator[PendingClaim]:
        """The claims Redis has accepted (what a replica writes back to a Redis that lost
        them): a tentative one is Redis's to accept or refuse still."""
        tentative = self._tentative
        return (claim for claim in self.all_claims() if claim.claim_id not in tentative)

    def expire(self, now_ms: int) -> int:
        """Drop the claims whose deadline has passed, soonest first."""
        expired = 0
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now_ms:
            _, claim_id = heapq.heappop(deadlines)
            node_uuid = node_of_claim(claim_id) or ""
            claims = self._claims.get(node_uuid, {})
            claim = claims.get(claim_id)
            if claim is None or claim.expires_ms > now_ms:
                continue  # released or confirmed earlier (or renewed: its own entry)
            del claims[claim_id]
            if not claims:
                del self._claims[node_uuid]
            self._tentative.discard(claim_id)
            self._forget_claim(claim)
            self._count(claim, -1)
            expired += 1
        return expired

    def _recount(self, node_uuid: str) -> None:
        row = self.row_of.get(node_uuid)
        claims = self._claims.get(node_uuid)
        if not claims:
            self._claims.pop(node_uuid, None)
        if row is None:
            return
        total = claimed_by(claims.values()) if claims else Resources()
        c = self.columns
        c.claimed[:, row] = (total.vcpus, total.memory_mb, total.disk_gb)
        c.claim_count[row] = len(claims) if claims else 0
        self._derive(row)

    def _derive(self, row: int) -> None:
        c = self.columns
        c.free[:, row] = c.capacity[:, row] - c.usage[:, row] - c.claimed[:, row]
        self._touch(row)

    # -- what readers re-read -----------------------------------------------------------------

    def _touch(self, row: int) -> None:
        self.version += 1
        self.columns.stamp[row] = self.version
        self._journal_rows.append(row)
        self._journal_versions.append(self.version)
        if len(self._journal_rows) > JOURNAL_SIZE:
            self._restart_journal()

    def _touch_many(self, rows: RowIndex) -> None:
        self.version += 1
        self.columns.stamp[rows] = self.version
        if len(self._journal_rows) + len(rows) > JOURNAL_SIZE:
            self._restart_journal()  # a listing: readers look at every stamp once
        else:
            self._journal_rows.extend(rows.tolist())
            self._journal_versions.extend([self.version] * len(rows))

    def _restart_journal(self) -> None:
        self._journal_rows.clear()
        self._journal_versions.clear()
        self._journal_floor = self.version

    def changed_since(self, version: int) -> RowIndex:
        """The rows written after `version` (a reader keeps the version it last read at;
        the columns' size tells it when they were reallocated), sorted: from the journal
        of recent writes, or, for a reader older than the journal, from every stamp."""
        # The filters and the weighers of one request ask the same question: answer once.
        asked = (version, self.version, self._journal_floor)
        if self._last_changed[0] == asked:
            return self._last_changed[1]
        if version < self._journal_floor:
            rows = np.flatnonzero(self.columns.stamp > version)
        else:
            start = bisect.bisect_right(self._journal_versions, version)
            if start == len(self._journal_rows):
                return _NO_ROWS
            rows = np.unique(np.array(self._journal_rows[start:], np.intp))
        rows.flags.writeable = False  # shared by the callers
        self._last_changed = (asked, rows)
        return rows
