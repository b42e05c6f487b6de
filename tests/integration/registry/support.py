"""Helpers for the registry's integration tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from berth.v1 import registry_pb2
from grpc import aio


class FakeClock:
    """The registry's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def register(
    stub, host: str = "compute-1", binary: str = "berth-compute"
) -> registry_pb2.Service:
    response = await stub.RegisterService(
        registry_pb2.RegisterServiceRequest(host=host, binary=binary)
    )
    return response.service


def key(host: str, binary: str = "berth-compute") -> registry_pb2.ServiceRef:
    return registry_pb2.ServiceRef(key=registry_pb2.ServiceKey(host=host, binary=binary))


async def status_of(coro) -> grpc.StatusCode:
    """The status code a call that must fail failed with."""
    with pytest.raises(aio.AioRpcError) as err:
        await coro
    return err.value.code()


async def take(watch, n: int, within_s: float = 60) -> list:
    """The next `n` events of a watch stream, failing the test if they take too long."""
    events: list = []

    async def collect():
        async for event in watch:
            events.append(event)
            if len(events) == n:
                return

    await asyncio.wait_for(collect(), within_s)
    return events


async def until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    """Wait until `condition()` holds, failing the test after `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {within_s} s for {what}")
        await asyncio.sleep(0.01)
