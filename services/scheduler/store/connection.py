"""The scheduler's Redis client: redis-py with one change to how a command is written.

redis-py bounds each socket write with `asyncio.wait_for`, which runs the write as a task of
its own: a task, a loop turn and a timer per command (~3 % of a placement's CPU). On Python
3.11 `wait_for` can also swallow a cancellation that arrives as the write finishes (see
services/common/supervise.py). Here the same bound is `asyncio.timeout` around the write in
the caller's task; a write that cannot finish in time (a frozen Redis whose socket buffer is
full) still drops the connection and fails as redis-py's own TimeoutError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

# Seconds to connect, to write a command and to wait for its answer.
SOCKET_TIMEOUT_S = 5.0
# Seconds between PINGs on a connection that has been idle (a dead one is found before use).
HEALTH_CHECK_S = 30


class TimedWrites(AbstractConnection):
    """Mixed into the connection class the URL chose (TCP, TLS or a Unix socket)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if not self.is_connected:
            await self.connect_check_health(check_health=False)
        if check_health:
            await self.check_health()
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            async with asyncio.timeout(self.socket_timeout):
                await self._send_packed_command(command)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise redis_errors.TimeoutError("Timeout writing to socket") from None
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise redis_errors.ConnectionError(f"Error while writing to socket: {exc}") from exc
        except BaseException:
            # A write cut short (cancelled) leaves a partial command on the socket.
            await self.disconnect(nowait=True)
            raise


def connect(url: str, timeout_s: float = SOCKET_TIMEOUT_S, **options: Any) -> Redis:
    """A client for `url` whose connections write as above."""
    redis = Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=HEALTH_CHECK_S,
        **options,
    )
    pool = redis.connection_pool
    chosen = pool.connection_class
    pool.connection_class = type(f"Timed{chosen.__name__}", (TimedWrites, chosen), {})
    return redis
