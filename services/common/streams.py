"""Long-lived streams end when the server stops, instead of holding shutdown for the grace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

from berth.client.errors import Unavailable

T = TypeVar("T")


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
