"""The mirror's claims: which ones a replica may write back to a Redis that lost them."""

from __future__ import annotations

import uuid as uuidlib

from services.scheduler.hoststate import Resources
from services.scheduler.store.keys import new_claim_id
from services.scheduler.store.placement import PendingClaim
from tests.unit.scheduler.hosts import fleet, make_host


def test_a_tentative_claim_is_counted_but_never_written_back_until_redis_accepts_it():
    node = make_host(node_uuid=str(uuidlib.uuid4()))
    mirror = fleet([node])
    uuid = node.state.node_uuid
    claim = PendingClaim(new_claim_id(uuid), uuid, "inst-1", Resources(1, 2048, 20), 10**13)

    mirror.add_claim(claim, tentative=True)
    assert mirror.claim_count(uuid) == 1  # the next choice is weighed with it
    # Written back now, Redis would count it against the very claim it is about to judge.
    assert list(mirror.confirmed_claims()) == []

    mirror.add_claim(claim)  # Redis accepted it
    assert list(mirror.confirmed_claims()) == [claim]


def test_a_refused_tentative_claim_leaves_nothing_behind():
    node = make_host(node_uuid=str(uuidlib.uuid4()))
    mirror = fleet([node])
    uuid = node.state.node_uuid
    claim = PendingClaim(new_claim_id(uuid), uuid, "inst-1", Resources(1, 2048, 20), 10**13)
    mirror.add_claim(claim, tentative=True)
    mirror.remove_claims([claim.claim_id])
    assert (mirror.claim_count(uuid), list(mirror.confirmed_claims())) == (0, [])
