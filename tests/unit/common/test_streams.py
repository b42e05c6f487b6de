"""pipelined(): a stream's items handled several at once, answered in their order;
until_stopped(): a stream ends with UNAVAILABLE when the server stops."""

from __future__ import annotations

import asyncio

import pytest
from berth.client.errors import Unavailable

from services.common.streams import pipelined, until_stopped


async def items(values, then: Exception | None = None):
    for value in values:
        yield value
    if then is not None:
        raise then


async def test_answers_keep_the_order_of_the_items_whatever_finishes_first():
    running = 0
    most = 0

    async def handle(value: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (20 - value))  # the later items finish first
        running -= 1
        return value * 10

    answers = [a async for a in pipelined(items(range(20)), handle, window=8)]
    assert answers == [v * 10 for v in range(20)]
    assert 1 < most <= 8  # work overlapped, never more than the window


async def test_the_source_error_comes_after_the_answers_before_it():
    async def handle(value: int) -> int:
        return value

    seen: list[int] = []
    with pytest.raises(ValueError, match="broken"):
        async for answer in pipelined(items([1, 2, 3], then=ValueError("broken")), handle, 4):
            seen.append(answer)
    assert seen == [1, 2, 3]


async def test_a_consumer_that_leaves_cancels_the_work_in_flight():
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handle(value: int) -> int:
        if value == 0:
            return 0
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return value

    stream = pipelined(items(range(5)), handle, window=4)
    assert await anext(stream) == 0
    await started.wait()
    await stream.aclose()
    assert cancelled.is_set()


# --- until_stopped(): a long-lived stream ends with UNAVAILABLE when the server stops --------


class Feed:
    """A client stream: items put in by the test, waiting (idle) in between."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.waiting = asyncio.Event()

    def __aiter__(self):
        return self

    async def __anext__(self):
        self.waiting.set()
        item = await self.queue.get()
        self.waiting.clear()
        if item is StopAsyncIteration:
            raise StopAsyncIteration
        return item


async def test_items_pass_through_until_the_source_ends():
    feed = Feed()
    for item in (1, 2, StopAsyncIteration):
        feed.queue.put_nowait(item)
    assert [i async for i in until_stopped(asyncio.Event(), feed)] == [1, 2]


async def test_an_idle_stream_ends_with_unavailable_when_the_server_stops():
    stopping, feed = asyncio.Event(), Feed()
    got = []

    async def consume():
        async for item in until_stopped(stopping, feed):
            got.append(item)

    task = asyncio.create_task(consume())
    feed.queue.put_nowait("a")
    await feed.waiting.wait()  # idle, after "a"
    await asyncio.sleep(0)
    stopping.set()
    with pytest.raises(Unavailable) as err:
        await task
    assert err.value.reason == "SHUTTING_DOWN" and got == ["a"]
    assert task.cancelling() == 0  # the stop's own cancellation was taken back


async def test_work_on_an_item_is_not_cut_short_and_the_stop_comes_before_the_next_read():
    stopping, feed = asyncio.Event(), Feed()
    working, finish, done = asyncio.Event(), asyncio.Event(), []

    async def consume():
        async for item in until_stopped(stopping, feed):
            working.set()
            await finish.wait()  # e.g. waiting for the item's commit
            done.append(item)

    task = asyncio.create_task(consume())
    feed.queue.put_nowait("a")
    feed.queue.put_nowait("b")
    await working.wait()
    stopping.set()
    for _ in range(5):  # the stop's watcher and its callback have run: nothing cancelled
        await asyncio.sleep(0)
    assert not task.done()
    finish.set()
    with pytest.raises(Unavailable):
        await task
    assert done == ["a"]  # finished; "b" was never read


async def test_a_cancelled_reader_stays_cancelled_even_as_the_server_stops():
    stopping, feed = asyncio.Event(), Feed()

    async def consume():
        async for _ in until_stopped(stopping, feed):
            pass

    task = asyncio.create_task(consume())
    await feed.waiting.wait()
    task.cancel()  # the client left
    stopping.set()
    with pytest.raises(asyncio.CancelledError):
        await task
