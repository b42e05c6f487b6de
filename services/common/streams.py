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
    try:
        while True:
            following = asyncio.ensure_future(anext(iterator))
            await asyncio.wait({following, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                raise Unavailable("the server is shutting down; reconnect", reason="SHUTTING_DOWN")
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        stop_wait.cancel()
