"""gRPC server reflection, v1 and v1alpha, that resolves every symbol a client may ask for.

grpcio-reflection's servicer asks the descriptor pool for the file containing a symbol, and
the upb pool knows services, messages, enums and fields but not methods: `grpcurl describe
berth.v1.RegistryService.RegisterService` answered "Symbol not found". This servicer looks
a method up through its service. It also serves `grpc.reflection.v1.ServerReflection`,
which grpcurl and current clients ask for first; grpcio-reflection ships only v1alpha. The
two versions are the same messages under another package, so one servicer answers both:
the v1 descriptor is the v1alpha one renamed (so `describe` works for it too), and the
messages travel as v1alpha's classes (the same bytes on the wire).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc import aio
from grpc_reflection.v1alpha import reflection_pb2 as messages

V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
V1 = "grpc.reflection.v1.ServerReflection"
_METHOD = "ServerReflectionInfo"
_POOL = descriptor_pool.Default()


def _add_v1_descriptor() -> None:
    """Put grpc/reflection/v1/reflection.proto in the pool: v1alpha's, renamed."""
    v1_name = "grpc/reflection/v1/reflection.proto"
    try:
        _POOL.FindFileByName(v1_name)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    messages.DESCRIPTOR.CopyToProto(proto)
    proto.name, proto.package = v1_name, "grpc.reflection.v1"
    for message in proto.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(".v1alpha.", ".v1.")
    for method in proto.service[0].method:
        method.input_type = method.input_type.replace(".v1alpha.", ".v1.")
        method.output_type = method.output_type.replace(".v1alpha.", ".v1.")
    _POOL.Add(proto)


def _file_of(symbol: str) -> FileDescriptor:
    """The file defining `symbol`: a package-level name, or a service's method."""
    try:
        return _POOL.FindFileContainingSymbol(symbol)
    except KeyError:
        service, _, method = symbol.rpartition(".")
        found = _POOL.FindServiceByName(service)  # KeyError: not known at all
        if method not in found.methods_by_name:
            raise
        return found.file


def _with_dependencies(file: FileDescriptor) -> list[bytes]:
    """The file and everything it imports, serialized (the dependencies first)."""
    ordered: dict[str, FileDescriptor] = {}

    def visit(current: FileDescriptor) -> None:
        for dependency in current.dependencies:
            if dependency.name not in ordered:
                visit(dependency)
        ordered[current.name] = current

    visit(file)
    out = []
    for descriptor in ordered.values():
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        out.append(proto.SerializeToString())
    return out


class ReflectionServicer:
    def __init__(self, service_names: Iterable[str]) -> None:
        self._services = sorted({*service_names, V1, V1ALPHA})

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[messages.ServerReflectionRequest], context: object
    ) -> AsyncIterator[messages.ServerReflectionResponse]:
        async for request in requests:
            yield self._answer(request)

    def _answer(
        self, request: messages.ServerReflectionRequest
    ) -> messages.ServerReflectionResponse:
        answer = messages.ServerReflectionResponse(original_request=request)
        asked = request.WhichOneof("message_request")
        try:
            if asked == "list_services":
                answer.list_services_response.service.extend(
                    messages.ServiceResponse(name=name) for name in self._services
                )
            elif asked == "file_by_filename":
                files = _with_dependencies(_POOL.FindFileByName(request.file_by_filename))
                answer.file_descriptor_response.file_descriptor_proto.extend(files)
            elif asked == "file_containing_symbol":
                files = _with_dependencies(_file_of(request.file_containing_symbol))
                answer.file_descriptor_response.file_descriptor_proto.extend(files)
            elif asked == "file_containing_extension":
                wanted = request.file_containing_extension
                message = _POOL.FindMessageTypeByName(wanted.containing_type)
                extension = _POOL.FindExtensionByNumber(message, wanted.extension_number)
                answer.file_descriptor_response.file_descriptor_proto.extend(
                    _with_dependencies(extension.file)  # type: ignore[attr-defined]  # upb has it, the stubs do not
                )
            elif asked == "all_extension_numbers_of_type":
                message = _POOL.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = answer.all_extension_numbers_response
                numbers.base_type_name = message.full_name
                numbers.extension_number.extend(
                    sorted(e.number for e in _POOL.FindAllExtensions(message))
                )
            else:
                return _error(answer, grpc.StatusCode.INVALID_ARGUMENT, "empty request")
        except KeyError:
            return _error(answer, grpc.StatusCode.NOT_FOUND, f"{asked} not found")
        return answer


def _error(
    answer: messages.ServerReflectionResponse, code: grpc.StatusCode, message: str
) -> messages.ServerReflectionResponse:
    answer.error_response.error_code = code.value[0]
    answer.error_response.error_message = message
    return answer


def serve_reflection(server: aio.Server, service_names: Iterable[str]) -> None:
    """Answer reflection v1 and v1alpha on `server` for these services (and itself)."""
    _add_v1_descriptor()
    servicer = ReflectionServicer(service_names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=messages.ServerReflectionRequest.FromString,
        response_serializer=messages.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(name, {_METHOD: handler}) for name in (V1, V1ALPHA)]
    )
