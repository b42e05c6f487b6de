"""Long-lived tasks that outlive their own bugs: one that dies is logged and started again.

Every loop catches what its peer can do to it (a finished call, a reset stream, a closed
channel) and retries on its own. This is the owner's net under that: an exception the loop
did not expect ends one run, never the work. The error goes to the log with its traceback
and to `berth_task_restarts_total`, and the loop starts over after a backoff, as etcd's
lease keep-alive and Nomad's client heartbeat do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from services.common import metrics
from services.common.backoff import Backoff, stopping

log = logging.getLogger(__name__)

# A run this long counts as healthy: the next failure starts the backoff from the bottom.
HEALTHY_RUN_S = 60.0


def supervised(
    name: str, loop: Callable[[], Awaitable[None]], *, backoff: Backoff | None = None
) -> asyncio.Task[None]:
    """Run `loop()` in a task named `name`; if it raises, log it and run it again.

    A loop that returns has finished its work (its owner told it to stop); cancelling the
    task stops it for good.
    """
    return asyncio.create_task(_keep_running(name, loop, backoff or Backoff(1.0, 30.0)), name=name)


async def _keep_running(name: str, loop: Callable[[], Awaitable[None]], backoff: Backoff) -> None:
    clock = asyncio.get_running_loop().time
    while True:
        started = clock()
        try:
            await loop()
            return
        except Exception as exc:
            if stopping():  # its own cancellation, surfaced as a peer's error: end
                raise
            if clock() - started > HEALTHY_RUN_S:
                backoff.reset()
            delay = backoff.next_delay()
            metrics.TASK_RESTARTS.labels(name.split(":", 1)[0]).inc()
            log.error(
                "background task %s died; restarting it",
                name,
                exc_info=exc,
                extra={"task": name, "error": repr(exc), "restart_in_s": round(delay, 1)},
            )
        await asyncio.sleep(delay)
