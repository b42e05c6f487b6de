"""pipelined(): a stream's items handled several at once, answered in their order."""

from __future__ import annotations

import asyncio

import pytest

from services.common.streams import pipelined


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
