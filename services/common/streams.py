"""Long-lived streams end when the server stops, instead of holding shutdown for the grace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

from berth.client.errors import Unavailable

from services.common.supervise import stop_tasks

T = TypeVar("T")
R = TypeVar("R")


async def until_stopped(stopping: asyncio.Event, source: AsyncIterable[T]) -> AsyncIterator[T]:
    """Items of `source` until it ends; UNAVAILABLE ("reconnect") once `stopping` is set.

    A stream idle on its next message is woken by cancelling the task that reads it, and
    only while it waits for a message: the work done with an item is never cut short, and
    the stop is then seen before the next read. One watcher per stream, not a task and a
    wait per message (those cost a fifth of a busy registry's CPU, measured).
    """
    task = asyncio.current_task()
    assert task is not None, "until_stopped runs in a task"
    reading = interrupted = False

    def interrupt(_: object) -> None:
        nonlocal interrupted
        if reading and not interrupted:
            interrupted = True
            task.cancel("the server is stopping")

    watcher = asyncio.ensure_future(stopping.wait())
    watcher.add_done_callback(interrupt)
    iterator = source.__aiter__()
    try:
        while True:
            if stopping.is_set():
                raise _shutting_down()
            reading = True
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                # Ours alone (nobody else cancelled the task meanwhile): tell the peer.
                if interrupted and task.uncancel() == 0:
                    raise _shutting_down() from None
                raise
            finally:
                reading = False
            yield item
    finally:
        watcher.remove_done_callback(interrupt)
        watcher.cancel()


def _shutting_down() -> Unavailable:
    return Unavailable("the server is shutting down; reconnect", reason="SHUTTING_DOWN")


async def pipelined(
    source: AsyncIterable[T], handle: Callable[[T], Coroutine[Any, Any, R]], window: int
) -> AsyncIterator[R]:
    """handle(item) for each item of `source`, up to `window` at once, their results in
    the order the items came. A stream that awaited each item before reading the next
    would give its peer one message in flight, whatever it sends. The first error ends
    the stream, as it would have unpipelined; the work in flight is then cancelled."""
    room = asyncio.Semaphore(window)
    # In arrival order: each item's work, then None (the source ended) or its error.
    started: asyncio.Queue[asyncio.Task[R] | Exception | None] = asyncio.Queue()
    in_flight: set[asyncio.Task[R]] = set()

    async def read() -> None:
        try:
            async for item in source:
                await room.acquire()
                work = asyncio.create_task(handle(item))
                in_flight.add(work)
                work.add_done_callback(in_flight.discard)
                started.put_nowait(work)
            started.put_nowait(None)
        except Exception as exc:  # shutting down, or the call broke: after what came before
            started.put_nowait(exc)

    reader = asyncio.create_task(read(), name="stream-reader")
    try:
        while (entry := await started.get()) is not None:
            if isinstance(entry, Exception):
                raise entry
            result = await entry
            room.release()
            yield result
    finally:
        await stop_tasks(reader, *in_flight)
