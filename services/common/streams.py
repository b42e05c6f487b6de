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
    """Items of `source` until it ends; UNAVAILABLE ("reconnect") once `stopping` is set."""
    iterator = source.__aiter__()
    stop_wait = asyncio.ensure_future(stopping.wait())
    following: asyncio.Future[T] | None = None
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({following, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                raise Unavailable("the server is shutting down; reconnect", reason="SHUTTING_DOWN")
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stop_wait.cancel()
        # A stream cancelled (the caller left) while waiting for its next item leaves that
        # read pending: cancel it, or retrieve how it ended, so nothing is left unawaited.
        if following is not None:
            if following.done():
                if not following.cancelled():
                    following.exception()
            else:
                following.cancel()


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
