"""Server interceptors: request id, access log + metrics, error translation, authentication,
request decoding.

Each interceptor opens a scope around the whole call (a unary call or a whole stream);
`wrap_handler` applies a scope to any of the four handler kinds, so each interceptor is
only its scope. Order, outermost first: request id, observe, errors, auth, decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from berth.client.errors import (
    BerthError,
    FieldViolation,
    Internal,
    InvalidArgument,
    PermissionDenied,
    Unavailable,
)
from google.protobuf.message import DecodeError
from grpc import aio

from services.common import auth, logs, metrics

log = logging.getLogger("berth.access")

REQUEST_ID_KEY = "x-request-id"


@dataclass
class CallInfo:
    """What one call's interceptors share."""

    method: str
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    code: grpc.StatusCode = grpc.StatusCode.OK
    principal: str = "-"

    @property
    def service_and_method(self) -> tuple[str, str]:
        _, service, name = (
            self.method.rsplit("/", 2) if self.method.count("/") >= 2 else ("", "", self.method)
        )
        return service, name


current_call: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "current_call", default=None
)

Scope = Callable[[aio.ServicerContext], contextlib.AbstractAsyncContextManager[None]]


def wrap_handler(handler: grpc.RpcMethodHandler, scope: Scope) -> grpc.RpcMethodHandler:
    """Run every kind of handler inside `scope(context)`."""
    if handler.unary_unary or handler.stream_unary:
        inner: Any = handler.unary_unary or handler.stream_unary  # async under aio

        async def unary(request: Any, context: aio.ServicerContext) -> Any:
            async with scope(context):
                return await inner(request, context)

        factory = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(unary, handler.request_deserializer, handler.response_serializer)

    inner_stream: Any = handler.unary_stream or handler.stream_stream

    async def streaming(request: Any, context: aio.ServicerContext) -> None:
        async with scope(context):
            await _write_all(inner_stream(request, context), context)

    factory = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return factory(streaming, handler.request_deserializer, handler.response_serializer)


async def _write_all(responses: Any, context: aio.ServicerContext) -> None:
    """Send a servicer's responses with context.write(), in the call's own task.

    A generator handler left to grpc is abandoned at its `yield` when the client cancels,
    and the loop's finalizer closes it later, after the call is freed: any touch of the
    context then (peer(), abort()) reads freed memory, a SIGSEGV in cygrpc. Written from
    this coroutine, the scopes and the servicer's generator end before the call does.
    """
    if not inspect.isasyncgen(responses):
        await responses  # already a writer (an inner interceptor's wrapper)
        return
    async with contextlib.aclosing(responses) as stream:
        async for response in stream:
            try:
                await context.write(response)
            except (aio.InternalError, aio.UsageError) as exc:
                raise _ended("a response", exc) from exc


def _ended(what: str, exc: BaseException) -> asyncio.CancelledError:
    """The call ended under a send (its deadline passed, its client left) before grpc told
    the handler. The handler ends as grpc ends a cancelled call: quietly, by CancelledError.
    Left as an error, it would be answered or logged as the servicer's fault, and an abort
    on the ended call fails again (TOO_MANY_OPERATIONS)."""
    return asyncio.CancelledError(f"the call ended before {what} could be sent: {exc}")


class ScopedInterceptor(aio.ServerInterceptor):
    """An interceptor defined by an async context manager around each call."""

    def __init__(self) -> None:
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def scope(self, method: str) -> Scope:
        raise NotImplementedError

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return wrap_handler(handler, self.scope(method))

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        # A method's handler never changes, so it is wrapped once, not on every call
        # (measured: ~8% of a node service's CPU went to re-wrapping four times per call).
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return handler  # unknown method: not cached, so callers cannot grow the map
            wrapped = self._wrapped[method] = self.wrap(handler, method)
        return wrapped


def _metadata(context: aio.ServicerContext, key: str) -> str | None:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return None


class RequestIdInterceptor(ScopedInterceptor):
    """Takes the caller's x-request-id (or makes one) for logs, errors and the reply."""

    def scope(self, method: str) -> Scope:
        @contextlib.asynccontextmanager
        async def scope(context: aio.ServicerContext) -> AsyncIterator[None]:
            rid = (_metadata(context, REQUEST_ID_KEY) or "")[:64] or secrets.token_hex(8)
            info_token = current_call.set(CallInfo(method, rid))
            rid_token = logs.request_id.set(rid)
            try:
                yield
            finally:
                logs.request_id.reset(rid_token)
                current_call.reset(info_token)

        return scope


class ObserveInterceptor(ScopedInterceptor):
    """One access-log line and the Prometheus counters per call."""

    def __init__(self, quiet_methods: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self._quiet = quiet_methods

    def scope(self, method: str) -> Scope:
        level = logging.DEBUG if method in self._quiet else logging.INFO
        # The method's series, looked up once (labels() takes a lock and a dict per call).
        service, name = CallInfo(method, "").service_and_method
        seconds = metrics.RPC_SECONDS.labels(service, name)
        handled: dict[grpc.StatusCode, Any] = {}

        @contextlib.asynccontextmanager
        async def scope(context: aio.ServicerContext) -> AsyncIterator[None]:
            info = current_call.get()
            assert info is not None, "RequestIdInterceptor must run first"
            logged = log.isEnabledFor(level)
            peer = context.peer() if logged else ""  # read while the call is certainly alive
            try:
                yield
            except BaseException:
                if info.code is grpc.StatusCode.OK:
                    info.code = grpc.StatusCode.CANCELLED
                raise
            finally:
                elapsed = time.perf_counter() - info.started
                counter = handled.get(info.code)
                if counter is None:
                    counter = handled[info.code] = metrics.RPC_HANDLED.labels(
                        service, name, info.code.name
                    )
                counter.inc()
                seconds.observe(elapsed)
                if logged:
                    log.log(
                        level,
                        "rpc",
                        extra={
                            "method": method,
                            "code": info.code.name,
                            "ms": round(elapsed * 1000, 2),
                            "principal": info.principal,
                            "peer": peer,
                        },
                    )

        return scope


Translator = Callable[[BaseException], BerthError | None]


def as_berth_error(exc: BaseException, translators: Iterable[Translator]) -> BerthError:
    """What a caller is told of `exc`: itself if a BerthError, else the first translator's
    answer (a database gone is UNAVAILABLE), else INTERNAL without details."""
    if isinstance(exc, BerthError):
        return exc
    for translate in translators:
        translated = translate(exc)
        if translated is not None:
            return translated
    return Internal("internal error; the server log has the details under this request id")


class ErrorInterceptor(ScopedInterceptor):
    """Domain errors become google.rpc.Status; anything unexpected becomes INTERNAL.

    `translators` turn infrastructure exceptions (a database that went away) into
    BerthErrors; the first that answers wins.
    """

    def __init__(self, translators: tuple[Translator, ...] = ()) -> None:
        super().__init__()
        self._translators = translators

    def _translate(self, exc: BaseException) -> BerthError:
        return as_berth_error(exc, self._translators)

    def scope(self, method: str) -> Scope:
        @contextlib.asynccontextmanager
        async def scope(context: aio.ServicerContext) -> AsyncIterator[None]:
            info = current_call.get()
            try:
                yield
            except aio.AbortError:
                raise
            except Exception as exc:
                if context.done():
                    # The client is gone (cancelled, deadline passed): nobody to answer,
                    # and a status cannot be sent on an ended call.
                    if info is not None:
                        info.code = grpc.StatusCode.CANCELLED
                    raise _ended("the error status", exc) from exc
                error = self._translate(exc)
                if isinstance(error, Internal) and not isinstance(exc, BerthError):
                    log.error("unexpected error in %s", method, exc_info=exc)
                elif isinstance(error, Unavailable):
                    log.warning(
                        "dependency unavailable in %s: %s", method, exc or type(exc).__name__
                    )
                if info is not None:
                    info.code = error.code
                status = error.to_status()
                rid = info.request_id if info else "-"
                try:
                    await context.abort(
                        error.code,
                        error.message
                        if error.code is not grpc.StatusCode.INTERNAL
                        else f"{error.message} ({rid})",
                        trailing_metadata=(
                            ("grpc-status-details-bin", status.SerializeToString()),
                            (REQUEST_ID_KEY, rid),
                        ),
                    )
                except (aio.InternalError, aio.UsageError) as ended:
                    if info is not None:
                        info.code = grpc.StatusCode.CANCELLED
                    raise _ended("the error status", ended) from exc

        return scope


PUBLIC_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
REFLECTION_PREFIX = "/grpc.reflection."


class AuthInterceptor(ScopedInterceptor):
    """Bearer tokens -> Principal, and the method policy. No tokens: everyone is admin."""

    def __init__(self, tokens: auth.TokenTable | None, policy: auth.MethodPolicy) -> None:
        super().__init__()
        self._tokens = tokens
        self._policy = policy

    def scope(self, method: str) -> Scope:
        @contextlib.asynccontextmanager
        async def scope(context: aio.ServicerContext) -> AsyncIterator[None]:
            if self._tokens is None or method in PUBLIC_METHODS:
                principal = auth.ANONYMOUS_ADMIN
            else:
                principal = self._tokens.authenticate(_metadata(context, "authorization"))
                readable = method.startswith(REFLECTION_PREFIX) and "reader" in principal.roles
                if not (readable or self._policy.allows(principal, method)):
                    raise PermissionDenied(
                        f"{principal.name} ({', '.join(sorted(principal.roles))}) may not call {method}",
                        metadata={"method": method},
                    )
            info = current_call.get()
            if info is not None:
                info.principal = principal.name
            token = auth.current_principal.set(principal)
            try:
                yield
            finally:
                auth.current_principal.reset(token)

        return scope


@dataclass(frozen=True)
class _Undecodable:
    """What a lenient deserializer hands on instead of raising: the bytes did not parse."""

    message_type: str
    size: int
    why: str

    def error(self) -> InvalidArgument:
        description = (
            f"the request is not a valid {self.message_type} message ({self.why}; "
            f"{self.size} bytes): send a message of that type built from the berth.v1 protos"
        )
        return InvalidArgument(
            description,
            reason="MALFORMED_REQUEST",
            metadata={"message": self.message_type, "bytes": str(self.size)},
            violations=[FieldViolation("", description)],  # "": the whole request body
        )


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, but bytes that do not parse give an `_Undecodable`, never an error.

    grpc runs the deserializer outside every handler: for a unary request before the
    handler (a DecodeError there is answered UNKNOWN, with a traceback in grpc's log), for
    a streamed one inside the servicer's read (INTERNAL from ErrorInterceptor).
    """
    if deserializer is None:
        return None
    message_class = getattr(deserializer, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    message_type = getattr(descriptor, "full_name", "request")

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            # upb says "Error parsing message with type 'x': <why>"; keep the why.
            why = str(exc).rpartition(": ")[2] or "the bytes do not parse"
            return _Undecodable(message_type, len(raw), why[:1].lower() + why[1:])

    return deserialize


def _checked(request: Any) -> Any:
    if isinstance(request, _Undecodable):
        raise request.error()
    return request


class _CheckedStream:
    """A client stream's messages; an undecodable one raises InvalidArgument where the
    servicer reads it, inside the call's scopes. A class, not an async generator: nothing
    is left for the loop to finalize after the call."""

    def __init__(self, source: AsyncIterator[Any]) -> None:
        self._source = source

    def __aiter__(self) -> _CheckedStream:
        return self

    async def __anext__(self) -> Any:
        return _checked(await anext(self._source))


class DecodeInterceptor(ScopedInterceptor):
    """Request bytes that do not parse as the method's message become INVALID_ARGUMENT
    (reason MALFORMED_REQUEST) raised inside the call's scopes, for a unary request and for
    every message of a client stream: logged as any refused call, never a traceback.

    Innermost, so a caller who may not call the method hears that first.
    """

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        deserializer = _lenient(handler.request_deserializer)
        if handler.unary_unary or handler.stream_unary:
            inner: Any = handler.unary_unary or handler.stream_unary  # async under aio
            client_streams = handler.stream_unary is not None

            async def unary(request: Any, context: aio.ServicerContext) -> Any:
                request = _CheckedStream(request) if client_streams else _checked(request)
                return await inner(request, context)

            factory = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary
                else grpc.stream_unary_rpc_method_handler
            )
            return factory(unary, deserializer, handler.response_serializer)

        inner_stream: Any = handler.unary_stream or handler.stream_stream
        client_streams = handler.stream_stream is not None

        async def streaming(request: Any, context: aio.ServicerContext) -> None:
            request = _CheckedStream(request) if client_streams else _checked(request)
            await _write_all(inner_stream(request, context), context)

        factory = (
            grpc.unary_stream_rpc_method_handler
            if handler.unary_stream
            else grpc.stream_stream_rpc_method_handler
        )
        return factory(streaming, deserializer, handler.response_serializer)
