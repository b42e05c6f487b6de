"""Following a Watch stream: list, then changes from a revision; re-list when told the
revision is too old; reconnect with backoff when the peer is away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from berth.client.errors import from_rpc_error
from berth.v1 import common_pb2
from grpc import aio

from services.common.backoff import Backoff, stopping
from services.common.supervise import stop_tasks, supervised

log = logging.getLogger(__name__)

# Events handled between two chances for other tasks to run.
YIELD_EVERY = 200


class WatchHandler(Protocol):
    def listing_started(self) -> None: ...
    def event(self, event: Any) -> None: ...
    def listing_done(self) -> None: ...


class Follower:
    """Runs one watch for as long as the scheduler runs. `synced` is set once the first
    listing is complete (and cleared again by `relist()` until the new one is)."""

    def __init__(
        self, name: str, watch: Callable[[int], AsyncIterator[Any]], handler: WatchHandler
    ) -> None:
        self.name = name
        self._watch = watch
        self._handler = handler
        self.revision = 0
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Resolved at the next event applied, for whoever waits for one (see `next_event`).
        self._next: asyncio.Future[None] | None = None

    def start(self) -> None:
        self._task = supervised(f"follow-{self.name}", self._run)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks(self._task)
            self._task = None

    async def next_event(self, timeout_s: float) -> bool:
        """Wait until the next event is applied, at most `timeout_s`; False if none came."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._next)  # shared by every waiter
        except TimeoutError:
            return False
        return True

    def _applied(self) -> None:
        if self._next is not None:
            self._next.set_result(None)
            self._next = None

    async def relist(self) -> None:
        """Start over from a full listing (Resync, or a flushed Redis)."""
        await self.stop()
        self.revision = 0
        self.synced.clear()
        self.start()

    async def _run(self) -> None:
        backoff = Backoff(0.2, 10.0)
        while True:
            listing = self.revision == 0
            handled = 0
            if listing:
                self._handler.listing_started()
            try:
                async for event in self._watch(self.revision):
                    handled += 1
                    if handled % YIELD_EVERY == 0:
                        # A stream with messages waiting never suspends: let the rest of
                        # the scheduler (requests, heartbeats) run during a long listing.
                        await asyncio.sleep(0)
                    if event.type == common_pb2.EVENT_TYPE_SYNCED:
                        self.revision = event.revision
                        if listing:
                            self._handler.listing_done()
                            listing = False
                        self.synced.set()
                        continue
                    self._handler.event(event)
                    self.revision = event.revision
                    self._applied()
                    backoff.reset()
                    if not listing:
                        self.synced.set()
                log.info("%s watch ended (peer stopping); reconnecting", self.name)
            except aio.AioRpcError as exc:
                if stopping():
                    raise
                error = from_rpc_error(exc)
                if error.reason == "REVISION_TOO_OLD":
                    log.warning("%s watch: %s; listing everything again", self.name, error)
                    self.revision = 0
                    continue
                log.warning(
                    "%s watch interrupted (%s: %s); retrying from revision %d",
                    self.name,
                    exc.code().name,
                    exc.details(),
                    self.revision,
                )
            except Exception:
                # A stream that broke another way (a read after the call ended, a reset
                # channel) or an event this scheduler could not apply: follow again.
                if stopping():
                    raise
                log.exception(
                    "%s watch failed; retrying from revision %d", self.name, self.revision
                )
            await asyncio.sleep(backoff.next_delay())
