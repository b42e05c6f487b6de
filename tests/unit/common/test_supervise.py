"""supervised(): a background loop that dies is logged, counted and started again.
stop_tasks(): a stopped task ends, even one that swallowed its cancellation."""

from __future__ import annotations

import asyncio
import logging
import sys

from services.common import metrics
from services.common.backoff import Backoff
from services.common.supervise import stop_tasks, supervised


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


async def test_stop_tasks_ends_a_task_that_swallowed_its_cancellation(caplog):
    """The race that hung test teardowns and agent stops: the task waits in wait_for, its
    future finishes, and the cancellation comes before the task runs again. On Python 3.11
    wait_for then returns the result and the cancellation is lost; the loop goes on waiting."""
    answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    waiting_again = asyncio.Event()

    async def reader() -> None:
        await asyncio.wait_for(answered, timeout=60)
        while True:  # the next read, as a heartbeat loop would
            waiting_again.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(reader(), name="reader")
    await asyncio.sleep(0)  # it waits in wait_for now
    answered.set_result("an answer")
    task.cancel()  # in the same turn of the loop: the race
    with caplog.at_level(logging.WARNING, logger="services.common.supervise"):
        async with asyncio.timeout(30):
            await stop_tasks(task)
    assert task.done()
    if sys.version_info < (3, 12):  # the race is real there: the first cancellation was lost
        assert waiting_again.is_set()
        assert any("cancelling it again" in r.getMessage() for r in caplog.records)


async def test_stop_tasks_ends_a_task_that_catches_cancellation_once():
    caught = 0

    async def stubborn() -> None:
        nonlocal caught
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            caught += 1  # a library that converts or drops the cancellation
        await asyncio.Event().wait()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(30):
        await stop_tasks(task, None)
    assert task.cancelled() and caught == 1


async def test_stop_tasks_takes_finished_tasks_and_retrieves_their_errors():
    async def fails() -> None:
        raise RuntimeError("its own end")

    task = asyncio.create_task(fails())
    await asyncio.wait({task})
    await stop_tasks(task)  # no "exception was never retrieved" later, no raise here
    assert isinstance(task.exception(), RuntimeError)
