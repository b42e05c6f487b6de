"""Maintenance moves' pure parts: progress counts from the move rows, and bounded retries."""

from __future__ import annotations

import pytest
from berth.client.errors import FailedPrecondition, NotFound, Unavailable

from services.registry import moves
from services.registry.store import maintenance as store
from services.registry.store.models import InstanceMove


def row(uuid: str, state: str, reason: str = "") -> InstanceMove:
    return InstanceMove(instance_uuid=uuid, state=state, reason=reason)


def test_progress_counts_moved_remaining_and_those_that_stay_for_now():
    rows = [
        row("a", store.DONE),
        row("b", store.DONE),
        row("c", store.PENDING),
        row("d", store.SELECTED),  # under way
        row("e", store.BUILT, "not yet deleted: the agent is down"),  # held until asked again
        row("f", store.FAILED, "no room"),
    ]
    moved, remaining, stays = moves.counts(rows)
    assert (moved, remaining) == (2, 2)
    assert stays == [("e", "not yet deleted: the agent is down"), ("f", "no room")]


async def test_a_transient_failure_is_retried_until_it_succeeds(monkeypatch):
    monkeypatch.setattr(moves.asyncio, "sleep", _no_sleep)
    answers = [Unavailable("down"), FailedPrecondition("busy", reason="INSTANCE_BUSY"), "ok"]

    async def call() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await moves.retrying(call, 60) == "ok"


@pytest.mark.parametrize(
    "error",
    [NotFound("gone"), FailedPrecondition("in maintenance", reason="HOST_IN_MAINTENANCE")],
)
async def test_a_refusal_is_not_retried(error):
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await moves.retrying(call, 60)
    assert calls == 1


async def test_retries_stop_once_the_time_is_up():
    async def call() -> None:
        raise Unavailable("down")

    with pytest.raises(Unavailable):
        await moves.retrying(call, 0.3)


async def _no_sleep(delay: float) -> None:
    return None
