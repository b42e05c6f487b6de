"""Bearer tokens and roles: who may call what, and for which host."""

from __future__ import annotations

import grpc
import pytest
from berth.v1 import registry_pb2, registry_pb2_grpc
from grpc import aio

from services.common.server import StartupError
from tests.integration.registry.support import status_of

TOKENS = """
[[tokens]]
name = "ops"
token = "admin-secret"
roles = ["admin"]

[[tokens]]
name = "viewer"
token = "reader-secret"
roles = ["reader"]

[[tokens]]
name = "agent-a"
token = "agent-a-secret"
roles = ["agent"]
host = "host-a"

[[tokens]]
name = "agent-b"
token = "agent-b-secret"
roles = ["agent"]
host = "host-b"
"""


@pytest.fixture
async def secured(start, tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(TOKENS)
    registry = await start(auth_file=path)
    async with aio.insecure_channel(registry.address) as channel:
        yield registry_pb2_grpc.RegistryServiceStub(channel)


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


LIST = registry_pb2.ListServicesRequest()


async def test_no_token_and_a_wrong_token_are_unauthenticated(secured):
    assert await status_of(secured.ListServices(LIST)) is grpc.StatusCode.UNAUTHENTICATED
    assert (
        await status_of(secured.ListServices(LIST, metadata=bearer("guess")))
        is grpc.StatusCode.UNAUTHENTICATED
    )
    basic = (("authorization", "Basic YWRtaW4="),)
    assert (
        await status_of(secured.ListServices(LIST, metadata=basic))
        is grpc.StatusCode.UNAUTHENTICATED
    )


async def test_a_reader_reads_but_may_not_write(secured):
    await secured.ListServices(LIST, metadata=bearer("reader-secret"))
    create = registry_pb2.CreateAggregateRequest(name="a")
    assert (
        await status_of(secured.CreateAggregate(create, metadata=bearer("reader-secret")))
        is grpc.StatusCode.PERMISSION_DENIED
    )
    await secured.CreateAggregate(create, metadata=bearer("admin-secret"))


async def test_an_agent_registers_and_heartbeats_for_its_own_host_only(secured):
    own = registry_pb2.RegisterServiceRequest(host="host-a", binary="berth-compute")
    service = (await secured.RegisterService(own, metadata=bearer("agent-a-secret"))).service
    await secured.Heartbeat(
        registry_pb2.HeartbeatRequest(service_uuid=service.uuid), metadata=bearer("agent-a-secret")
    )
    other = registry_pb2.RegisterServiceRequest(host="host-b", binary="berth-compute")
    assert (
        await status_of(secured.RegisterService(other, metadata=bearer("agent-a-secret")))
        is grpc.StatusCode.PERMISSION_DENIED
    )
    # Agent B may not keep host A's service alive.
    beat = registry_pb2.HeartbeatRequest(service_uuid=service.uuid)
    assert (
        await status_of(secured.Heartbeat(beat, metadata=bearer("agent-b-secret")))
        is grpc.StatusCode.PERMISSION_DENIED
    )
    # Agents cannot read or administer.
    assert (
        await status_of(secured.ListServices(LIST, metadata=bearer("agent-a-secret")))
        is grpc.StatusCode.PERMISSION_DENIED
    )


async def test_without_credentials_a_public_listener_refuses_to_start(start):
    with pytest.raises(StartupError, match="without credentials"):
        await start(listen="0.0.0.0:0")


async def test_a_bad_tokens_file_stops_the_start_with_the_reason(start, tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text('[[tokens]]\ntoken = "x"\nroles = ["agent"]\n')
    with pytest.raises(StartupError, match="needs the host"):
        await start(auth_file=path)
