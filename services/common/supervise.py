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
from typing import Any

from services.common import metrics
from services.common.backoff import Backoff, stopping

log = logging.getLogger(__name__)

# A run this long counts as healthy: the next failure starts the backoff from the bottom.
HEALTHY_RUN_S = 60.0
# A task still running this long after its cancellation is cancelled again...
REDELIVER_S = 1.0
# ... and one still running after this long is left behind: a shutdown never hangs on it.
ABANDON_S = 15.0


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


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` and wait until each has ended.

    asyncio delivers a cancellation once, and a task can swallow it: on Python 3.11,
    `asyncio.wait_for` returns its result when the awaited future finished just as the
    cancellation came (asyncmy reads the socket through wait_for), and the task runs on
    as if never cancelled, leaving its owner waiting for ever. So a task still running
    REDELIVER_S after its cancellation is cancelled again, as trio and anyio do by design
    (level-triggered cancellation), and the log names it."""
    running = {task for task in tasks if task is not None and not task.done()}
    for task in running:
        task.cancel()
    clock = asyncio.get_running_loop().time
    abandon_at = clock() + ABANDON_S
    while running:
        _, running = await asyncio.wait(running, timeout=REDELIVER_S)
        for task in running:
            if clock() >= abandon_at:
                log.error(
                    "task %s did not end %.0f s after its cancellation; leaving it behind",
                    task.get_name(),
                    ABANDON_S,
                    extra={"task": task.get_name()},
                )
            else:
                log.warning(
                    "task %s went on after its cancellation; cancelling it again",
                    task.get_name(),
                    extra={"task": task.get_name()},
                )
                task.cancel()
        if clock() >= abandon_at:
            break
    for ended in tasks:
        if ended is not None and ended.done() and not ended.cancelled():
            ended.exception()  # retrieved: how a stopped task ended is nobody's business now
