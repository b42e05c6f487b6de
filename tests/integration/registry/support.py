"""Helpers for the registry's integration tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from berth.v1 import registry_pb2


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
