"""Bad input: INVALID_ARGUMENT naming the field, and nothing written."""

from __future__ import annotations

import grpc
import pytest
from berth.client.errors import from_rpc_error
from berth.v1 import host_pb2, registry_pb2
from grpc import aio

from tests.integration.registry.support import key, register

BAD_NAMES = [
    pytest.param("", "must not be empty", id="empty"),
    pytest.param("h" * 256, "at most 255", id="over-long"),
    pytest.param("host\x00one", "control", id="nul"),
    pytest.param("host\none", "control", id="newline"),
    pytest.param("bell\x07", "control", id="bell"),
]


async def _invalid(coro) -> tuple[str, str]:
    with pytest.raises(aio.AioRpcError) as err:
        await coro
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(err.value)
    assert error.violations, "a BadRequest field violation names the field"
    return error.violations[0].field, error.violations[0].description


async def _count(stub) -> int:
    return len((await stub.ListServices(registry_pb2.ListServicesRequest())).services)


@pytest.mark.parametrize(("value", "says"), BAD_NAMES)
@pytest.mark.parametrize("field", ["host", "binary"])
async def test_bad_host_or_binary_names_are_refused_and_nothing_is_written(
    stub, field, value, says
):
    fields = {"host": "ok", "binary": "berth-compute", field: value}
    name, description = await _invalid(
        stub.RegisterService(registry_pb2.RegisterServiceRequest(**fields))
    )
    assert name == field and says in description
    assert await _count(stub) == 0


@pytest.mark.parametrize(("value", "says"), BAD_NAMES)
async def test_bad_aggregate_names_are_refused_and_nothing_is_written(stub, value, says):
    name, description = await _invalid(
        stub.CreateAggregate(registry_pb2.CreateAggregateRequest(name=value))
    )
    assert name == "name" and says in description
    assert len((await stub.ListAggregates(registry_pb2.ListAggregatesRequest())).aggregates) == 0


async def test_a_negative_page_size_is_refused(stub, hosts):
    assert (await _invalid(stub.ListServices(registry_pb2.ListServicesRequest(page_size=-1))))[
        0
    ] == "page_size"
    assert (await _invalid(stub.ListAggregates(registry_pb2.ListAggregatesRequest(page_size=-5))))[
        0
    ] == "page_size"
    assert (await _invalid(hosts.ListHosts(host_pb2.ListHostsRequest(page_size=-1))))[
        0
    ] == "page_size"


async def test_a_page_token_from_another_query_is_refused(stub):
    for i in range(3):
        await register(stub, f"h{i}")
    token = (await stub.ListServices(registry_pb2.ListServicesRequest(page_size=1))).next_page_token
    assert token
    other = registry_pb2.ListServicesRequest(page_size=1, page_token=token, binary="berth-compute")
    field, description = await _invalid(stub.ListServices(other))
    assert field == "page_token" and "different query" in description
    garbage = registry_pb2.ListServicesRequest(page_token="not-a-token")
    assert (await _invalid(stub.ListServices(garbage)))[0] == "page_token"


async def test_unknown_enum_values_are_refused(hosts):
    field, description = await _invalid(
        hosts.HostAction(host_pb2.HostActionRequest(host="c1", action=42))
    )
    assert field == "action" and "42" in description
    field, _ = await _invalid(
        hosts.UpdateHost(host_pb2.UpdateHostRequest(host="c1", status=9)).read()
    )
    assert field == "status"
    field, _ = await _invalid(hosts.HostAction(host_pb2.HostActionRequest(host="c1")))
    assert field == "action"


async def test_update_needs_something_to_change_and_a_reason_only_with_disable(stub):
    await register(stub)
    assert (
        await _invalid(
            stub.UpdateService(registry_pb2.UpdateServiceRequest(service=key("compute-1")))
        )
    )[0] == "disabled"
    request = registry_pb2.UpdateServiceRequest(
        service=key("compute-1"), disabled=False, disabled_reason="why"
    )
    assert (await _invalid(stub.UpdateService(request)))[0] == "disabled_reason"
    too_long = registry_pb2.UpdateServiceRequest(
        service=key("compute-1"), disabled=True, disabled_reason="x" * 256
    )
    assert (await _invalid(stub.UpdateService(too_long)))[0] == "disabled_reason"
    got = (await stub.GetService(registry_pb2.GetServiceRequest(service=key("compute-1")))).service
    assert not got.disabled


async def test_a_malformed_uuid_and_a_missing_reference_are_refused(stub):
    bad = registry_pb2.GetServiceRequest(service=registry_pb2.ServiceRef(uuid="nope"))
    assert (await _invalid(stub.GetService(bad)))[0] == "service.uuid"
    assert (await _invalid(stub.GetService(registry_pb2.GetServiceRequest())))[0] == "service"
    assert (await _invalid(stub.Heartbeat(registry_pb2.HeartbeatRequest(service_uuid=""))))[
        0
    ] == "service_uuid"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (host_pb2.HostActionRequest(host="c1"), "action"),
        (host_pb2.HostActionRequest(host="c1", action=99), "action"),  # type: ignore[arg-type]
        (host_pb2.HostActionRequest(action=host_pb2.POWER_ACTION_REBOOT), "host"),
        (
            host_pb2.HostActionRequest(
                host="c1", action=host_pb2.POWER_ACTION_REBOOT, nodename="n\x00"
            ),
            "nodename",
        ),
    ],
)
async def test_a_host_action_names_its_bad_field(hosts, request_, field):
    assert (await _invalid(hosts.HostAction(request_)))[0] == field


# Bytes that are no protobuf message: a field 1 string of 5 bytes cut after 2, and a
# string field that is not UTF-8.
UNDECODABLE = [
    pytest.param(b"\x0a\x05ab", "corrupt", id="truncated"),
    pytest.param(b"\x0a\x02\xff\xfe", "UTF-8", id="bad-utf8"),
]


def _raw(channel, method: str, kind: str = "unary_unary"):
    return getattr(channel, kind)(
        f"/berth.v1.RegistryService/{method}",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )


def _refused_as_undecodable(error: aio.AioRpcError, message: str, says: str) -> None:
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error
    assert f"not a valid berth.v1.{message} message" in error.details()
    assert says in error.details()
    typed = from_rpc_error(error)
    assert typed.reason == "MALFORMED_REQUEST"
    assert typed.metadata["message"] == f"berth.v1.{message}"
    assert typed.violations and says in typed.violations[0].description


@pytest.mark.parametrize(("body", "says"), UNDECODABLE)
async def test_undecodable_request_bytes_are_invalid_argument_not_a_traceback(
    stub, channel, caplog, body, says
):
    with pytest.raises(aio.AioRpcError) as err:
        await _raw(channel, "RegisterService")(body)
    _refused_as_undecodable(err.value, "RegisterServiceRequest", says)
    assert await _count(stub) == 0

    with pytest.raises(aio.AioRpcError) as err:  # server streaming: the request first
        async for _ in _raw(channel, "WatchServices", "unary_stream")(b"\x08\x80"):
            pass
    _refused_as_undecodable(err.value, "WatchServicesRequest", "corrupt")

    # A client stream: a good message answered, then the bad one ends the stream.
    uuid = (await register(stub)).uuid
    good = registry_pb2.HeartbeatStreamRequest(service_uuid=uuid).SerializeToString()
    call = _raw(channel, "HeartbeatStream", "stream_stream")(iter([good, body]))
    answers = []
    with pytest.raises(aio.AioRpcError) as err:
        async for answer in call:
            answers.append(registry_pb2.HeartbeatStreamResponse.FromString(answer))
    _refused_as_undecodable(err.value, "HeartbeatStreamRequest", says)
    assert len(answers) == 1
    assert "Traceback" not in caplog.text and "ERROR" not in {r.levelname for r in caplog.records}
