"""The node service's Validator: the content of a node's unchanged snapshot is checked
once, and yet every report is exactly what a full check (a new Validator) gives."""

from __future__ import annotations

import uuid as uuidlib

import pytest
from berth.client.errors import InvalidArgument

from services.node import snapshots
from services.node.snapshots import Validator
from tests.integration.node.support import instance, snapshot


@pytest.fixture
def content_checks(monkeypatch) -> list[str]:
    """The nodes whose content was checked, in order."""
    checked: list[str] = []
    real = snapshots._content

    def counting(snap):
        checked.append(snap.nodename)
        return real(snap)

    monkeypatch.setattr(snapshots, "_content", counting)
    return checked


def test_an_unchanged_snapshot_is_checked_once_and_reported_as_a_full_check_would(
    content_checks,
):
    held = (instance(), instance(vcpus=1))
    full = [Validator()(snapshot("kvm-1", sequence=n, instances=held)) for n in (1, 2, 3)]
    content_checks.clear()
    validator = Validator()
    assert [validator(snapshot("kvm-1", sequence=n, instances=held)) for n in (1, 2, 3)] == full
    assert content_checks == ["kvm-1"]


def test_a_changed_snapshot_is_checked_again_and_a_bad_one_refused_after_a_good_one(
    content_checks,
):
    validator = Validator()
    validator(snapshot("kvm-1", sequence=1))
    validator(snapshot("kvm-1", sequence=2, instances=(instance(),)))
    with pytest.raises(InvalidArgument) as refused:
        validator(snapshot("kvm-1", sequence=3, vcpus=-1))
    assert refused.value.violations[0].field == "snapshot.total.vcpus"
    assert content_checks == ["kvm-1"] * 3


def test_who_sent_it_and_when_is_checked_on_every_snapshot(content_checks):
    validator = Validator()
    validator(snapshot("kvm-1", sequence=1))
    with pytest.raises(InvalidArgument) as refused:
        validator(snapshot("kvm-1", sequence=-1))
    assert refused.value.violations[0].field == "snapshot.sequence"
    with pytest.raises(InvalidArgument) as refused:
        validator(snapshot("kvm-1", sequence=2, node_uuid="not-a-uuid"))
    assert refused.value.violations[0].field == "snapshot.node_uuid"
    assert content_checks == ["kvm-1"]


def test_the_same_content_from_another_node_is_checked_for_that_node(content_checks):
    validator = Validator()
    validator(snapshot("kvm-1", nodename="a"))
    validator(snapshot("kvm-1", nodename="b"))
    validator(snapshot("kvm-2", nodename="a"))
    assert content_checks == ["a", "b", "a"]


def test_non_canonical_uuids_are_rewritten_every_time_never_remembered(content_checks):
    raw = str(uuidlib.uuid4()).upper()
    canonical = Validator()(snapshot("kvm-1", instances=(instance(uuid=raw.lower()),)))
    content_checks.clear()
    validator = Validator()
    for sequence in (1, 2):
        snap = snapshot("kvm-1", sequence=sequence, instances=(instance(uuid=raw),))
        report = validator(snap)
        assert report.snapshot.instances[0].uuid == raw.lower()
        assert report.digest == canonical.digest
    assert content_checks == ["kvm-1", "kvm-1"]


def test_the_memory_holds_at_most_its_capacity_forgetting_the_oldest(content_checks):
    validator = Validator(capacity=2)
    for name in ("a", "b", "c", "b", "a"):
        validator(snapshot("kvm-1", nodename=name))
    # c pushed a out; b was still remembered; a came back and pushed b out.
    assert content_checks == ["a", "b", "c", "a"]
    validator(snapshot("kvm-1", nodename="b"))
    assert content_checks[-1] == "b"
