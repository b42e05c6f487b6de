"""supervised(): a background loop that dies is logged, counted and started again."""

from __future__ import annotations

import asyncio
import logging

from services.common import metrics
from services.common.backoff import Backoff
from services.common.supervise import supervised


def _restarts(task: str) -> float:
    return metrics.TASK_RESTARTS.labels(task)._value.get()


async def test_a_loop_that_raises_is_logged_counted_and_run_again(caplog):
    runs = 0
    finished = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise asyncio.InvalidStateError("write after the call finished")
        finished.set()

    before = _restarts("flaky")
    with caplog.at_level(logging.ERROR, logger="services.common.supervise"):
        task = supervised("flaky:one", flaky, backoff=Backoff(0.001, 0.002))
        await asyncio.wait_for(finished.wait(), 5)
        await task
    assert runs == 3
    assert _restarts("flaky") - before == 2
    died = [r for r in caplog.records if "died; restarting" in r.getMessage()]
    assert len(died) == 2 and died[0].exc_info is not None


async def test_a_loop_that_returns_is_finished_and_not_restarted():
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    await supervised("once", once, backoff=Backoff(0.001, 0.002))
    assert runs == 1


async def test_cancelling_the_task_stops_the_loop_for_good():
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = supervised("forever", forever)
    await started.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
