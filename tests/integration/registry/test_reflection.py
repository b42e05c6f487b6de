"""grpcurl's view: reflection lists the services and describes a method; health answers."""

from __future__ import annotations

import pytest
from berth.v1 import registry_pb2
from google.protobuf import descriptor_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.metrics import RPC_HANDLED


async def _ask(channel, **request):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(**request))
    response = await call.read()
    await call.done_writing()
    return response


async def test_reflection_lists_every_service(channel):
    response = await _ask(channel, list_services="")
    names = {s.name for s in response.list_services_response.service}
    assert {"berth.v1.RegistryService", "berth.v1.HostService", "grpc.health.v1.Health"} <= names


async def test_reflection_describes_a_method(channel):
    response = await _ask(channel, file_containing_symbol="berth.v1.RegistryService")
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
