"""Open a gRPC channel to a Berth server: target forms, TLS, bearer token, default deadline."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import grpc

from berth.client.errors import (
    BerthError,
    DeadlineExceeded,
    InvalidArgument,
    Unavailable,
    from_rpc_error,
)

# Seconds a unary call may take unless the caller says otherwise: a Berth call that takes
# longer is stuck, and a CLI that hangs forever is worse than one that says so.
DEFAULT_TIMEOUT = 10.0

_PLAINTEXT, _TLS = "grpc://", "grpcs://"


def parse_target(target: str) -> tuple[str, bool | None]:
    """`host:port`, `grpc://host:port` or `grpcs://host:port` -> (address, tls; None if unsaid)."""
    text = target.strip().rstrip("/")
    tls: bool | None = None
    if text.startswith(_PLAINTEXT):
        text, tls = text[len(_PLAINTEXT) :], False
    elif text.startswith(_TLS):
        text, tls = text[len(_TLS) :], True
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidArgument.field(
            "target",
            f"unsupported scheme {scheme!r}: use host:port, grpc://host:port or grpcs://host:port",
        )
    host, sep, port = text.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) <= 65535:
        raise InvalidArgument.field(
            "target", f"{target!r} is not host:port (the registry listens on 50051 by default)"
        )
    return text, tls


def open_channel(
    target: str,
    *,
    token: str | None = None,
    tls_ca_file: str | None = None,
    tls_cert_file: str | None = None,
    tls_key_file: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> grpc.Channel:
    """A channel that sends `authorization: Bearer <token>` and a default deadline on every call.

    A bare `host:port` is plaintext unless a TLS file is given; `grpc://` is always plaintext
    and `grpcs://` always TLS (with the system roots when no CA file is given).
    """
    address, tls = parse_target(target)
    tls_files = tls_ca_file or tls_cert_file or tls_key_file
    if tls is False and tls_files:
        raise InvalidArgument.field(
            "target", f"{target!r} is plaintext (grpc://) but TLS files were given: use grpcs://"
        )
    if bool(tls_cert_file) != bool(tls_key_file):
        raise InvalidArgument.field(
            "tls_cert_file", "a client certificate needs its key, and a key its certificate"
        )
    metadata: tuple[tuple[str, str], ...] = ()
    if tls or (tls is None and tls_files):
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca_file, "tls_ca_file"),
            private_key=_read(tls_key_file, "tls_key_file"),
            certificate_chain=_read(tls_cert_file, "tls_cert_file"),
        )
        if token:
            credentials = grpc.composite_channel_credentials(
                credentials, grpc.access_token_call_credentials(token)
            )
        channel = grpc.secure_channel(address, credentials)
    else:
        # grpc refuses call credentials on an insecure channel, so the token rides as
        # plain metadata, added by the interceptor below.
        if token:
            metadata = (("authorization", f"Bearer {token}"),)
        channel = grpc.insecure_channel(address)
    return grpc.intercept_channel(channel, _DefaultsInterceptor(metadata, timeout))


def _read(path: str | None, field: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise InvalidArgument.field(field, f"cannot read {path}: {exc.strerror}") from exc


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """grpc.ClientCallDetails is abstract; interceptors must hand on a concrete copy."""


class _DefaultsInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the token metadata to every call and a deadline to calls with one response."""

    def __init__(self, metadata: Sequence[tuple[str, str]], timeout: float | None) -> None:
        self._metadata = tuple(metadata)
        self._timeout = timeout

    def _details(self, details: grpc.ClientCallDetails, *, single_response: bool) -> Any:
        timeout = details.timeout
        # Streams of responses (watches) live as long as the caller reads them; a default
        # deadline would cut them off, so only single-response calls get one.
        if timeout is None and single_response:
            timeout = self._timeout
        return _CallDetails(
            details.method,
            timeout,
            [*(details.metadata or ()), *self._metadata],
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details, single_response=True), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._details(details, single_response=False), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, single_response=True), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._details(details, single_response=False), requests)


# The reasons of an UNAVAILABLE that no server sent: the call never left (no connection
# could be made), or the connection broke once it was made, so the call may have reached
# the server and been carried out (a server killed mid-call, a reset connection).
UNREACHABLE = "UNREACHABLE"
CONNECTION_LOST = "CONNECTION_LOST"

# What grpc-core says when it could not connect: its load balancer failed the call before
# any transport carried it.
_NEVER_CONNECTED = (
    "failed to connect",
    "connection refused",
    "domain name not found",
    "dns resolution failed",
    "name or service not known",
    "errors resolving",
    "network is unreachable",
    "no route to host",
)

# What grpc-core says when a call failed in the network, and how to say it to a person.
_CONNECT_FAILURES = (
    ("connection refused", "connection refused"),
    ("domain name not found", "unknown host name"),
    ("dns resolution failed", "unknown host name"),
    ("name or service not known", "unknown host name"),
    ("errors resolving", "unknown host name"),
    ("connection reset", "connection reset"),
    ("ssl", "TLS handshake failed (wrong CA, or the server speaks plaintext?)"),
    ("handshake", "TLS handshake failed (wrong CA, or the server speaks plaintext?)"),
    (
        "socket closed",
        "the connection closed (does the server expect TLS, or a client certificate?)",
    ),
    ("timed out", "connection timed out"),
    ("timeout", "connection timed out"),
    ("network is unreachable", "network is unreachable"),
    ("no route to host", "no route to host"),
)


def translate_error(
    error: grpc.RpcError, *, server: str, target: str, timeout: float | None = None
) -> BerthError:
    """A failed call as a typed BerthError; failures that never reached the server get a
    sentence naming the server and address ("cannot reach the registry at ...")."""
    exc = from_rpc_error(error)
    if _sent_by_server(error):
        return exc
    details = (error.details() if hasattr(error, "details") else "") or ""
    if isinstance(exc, Unavailable):
        lowered = details.lower()
        why = next((say for key, say in _CONNECT_FAILURES if key in lowered), details or "unknown")
        if any(key in lowered for key in _NEVER_CONNECTED):
            return Unavailable(f"cannot reach the {server} at {target}: {why}", reason=UNREACHABLE)
        return Unavailable(
            f"lost the connection to the {server} at {target} during the call ({why}); it "
            "may have been carried out",
            reason=CONNECTION_LOST,
        )
    if isinstance(exc, DeadlineExceeded):
        within = f"within {timeout:g} s" if timeout else "in time"
        return DeadlineExceeded(f"the {server} at {target} did not answer {within}")
    return exc


def _sent_by_server(error: grpc.RpcError) -> bool:
    """Berth servers always attach a google.rpc.Status; grpc-core's own failures never do."""
    trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    # (key, value) pairs at run time, whatever the typing stubs call them.
    pairs = cast("Sequence[tuple[str, Any]]", trailing or ())
    return any(key == "grpc-status-details-bin" for key, _ in pairs)
