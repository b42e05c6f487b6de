"""The scheduler's Redis connections: commands work as redis-py's own, and a write that a
peer never reads fails after the timeout as redis-py's TimeoutError, dropping the
connection (services/scheduler/store/connection.py)."""

from __future__ import annotations

import asyncio
import socket

import pytest
from redis import exceptions as redis_errors

from services.scheduler.store import connection


async def test_commands_and_scripts_go_through_timed_connections(redis_url, redis_prefix):
    redis = connection.connect(redis_url)
    try:
        key = f"{redis_prefix}:probe"
        assert await redis.set(key, b"1")
        pipe = redis.pipeline(transaction=False)
        pipe.incr(key)
        pipe.get(key)
        assert await pipe.execute() == [2, b"2"]
        script = redis.register_script("return redis.call('GET', KEYS[1])")
        assert await script(keys=[key]) == b"2"
        used = redis.connection_pool._available_connections  # what the pool handed out
        assert used and all(isinstance(c, connection.TimedWrites) for c in used)
    finally:
        await redis.aclose()


async def test_a_write_nobody_reads_fails_after_the_timeout_and_drops_the_connection():
    # A peer that accepts and never reads: the socket buffers fill, the write must wait.
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    port = listener.getsockname()[1]
    redis = connection.connect(f"redis://127.0.0.1:{port}/0", timeout_s=0.5)
    try:
        # Only the socket is opened: redis-py's handshake on connecting would wait for an
        # answer this peer never gives, and the test is about the write.
        conn = redis.connection_pool.make_connection()
        assert isinstance(conn, connection.TimedWrites)
        await conn._connect()
        big = b"x" * (64 << 20)  # far beyond what the kernel buffers on both sides
        with pytest.raises(redis_errors.TimeoutError, match="writing"):
            async with asyncio.timeout(30):  # the test's own net: never hang the run
                await conn.send_packed_command([big], check_health=False)
        assert not conn.is_connected
    finally:
        await redis.aclose()
        listener.close()
