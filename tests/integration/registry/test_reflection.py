"""grpcurl's view: reflection lists the services and describes a method; health answers."""

from __future__ import annotations

import pytest
from berth.v1 import registry_pb2
from google.protobuf import descriptor_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.metrics import RPC_HANDLED


async def _ask(channel, version="v1alpha", **request):
    if version == "v1alpha":
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo()
    else:  # v1: the same messages under another service name
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )()
    await call.write(reflection_pb2.ServerReflectionRequest(**request))
    response = await call.read()
    await call.done_writing()
    return response


async def test_reflection_lists_every_service(channel):
    response = await _ask(channel, list_services="")
    names = {s.name for s in response.list_services_response.service}
    assert {"berth.v1.RegistryService", "berth.v1.HostService", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
@pytest.mark.parametrize(
    "symbol",
    [
        "berth.v1.RegistryService",
        "berth.v1.RegistryService.RegisterService",  # a method: upb's pool alone misses it
        "berth.v1.RegisterServiceRequest",
    ],
)
async def test_reflection_describes_services_methods_and_messages(channel, version, symbol):
    response = await _ask(channel, version, file_containing_symbol=symbol)
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    registry = next(f for f in files if f.name == "berth/v1/registry.proto")
    service = next(s for s in registry.service if s.name == "RegistryService")
    method = next(m for m in service.method if m.name == "RegisterService")
    assert method.input_type == ".berth.v1.RegisterServiceRequest"
    assert method.output_type == ".berth.v1.RegisterServiceResponse"


async def test_health_reports_serving(channel, registry):
    from services.common.server import set_serving
    from services.registry.app import SERVICE_NAMES

    await set_serving(registry.health, SERVICE_NAMES, True)
    stub = health_pb2_grpc.HealthStub(channel)
    for name in ("", "berth.v1.RegistryService"):
        response = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_every_call_is_counted_by_method_and_code(stub):
    ok = RPC_HANDLED.labels("berth.v1.RegistryService", "ListServices", "OK")
    bad = RPC_HANDLED.labels("berth.v1.RegistryService", "ListServices", "INVALID_ARGUMENT")
    before_ok, before_bad = ok._value.get(), bad._value.get()
    await stub.ListServices(registry_pb2.ListServicesRequest())
    with pytest.raises(aio.AioRpcError):
        await stub.ListServices(registry_pb2.ListServicesRequest(page_size=-1))
    assert (ok._value.get(), bad._value.get()) == (before_ok + 1, before_bad + 1)


async def test_reflection_v1_describes_itself_and_says_what_it_does_not_know(channel):
    listed = await _ask(channel, "v1", list_services="")
    names = {s.name for s in listed.list_services_response.service}
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        names
    )
    own = await _ask(channel, "v1", file_containing_symbol="grpc.reflection.v1.ServerReflection")
    [file] = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in own.file_descriptor_response.file_descriptor_proto
    ]
    assert (file.package, file.service[0].method[0].input_type) == (
        "grpc.reflection.v1",
        ".grpc.reflection.v1.ServerReflectionRequest",
    )
    missing = await _ask(channel, "v1", file_containing_symbol="berth.v1.RegistryService.Nope")
    assert missing.error_response.error_code == 5  # NOT_FOUND
