"""Async channels from one process to another, with the process's own token, TLS and
client certificate."""

from __future__ import annotations

from typing import ClassVar

import grpc
from berth.client.channel import parse_target
from berth.client.errors import Unavailable, from_rpc_error
from grpc import aio

from services.common.settings import CommonSettings


def _uses_tls(target: str, settings: CommonSettings) -> bool:
    """`grpcs://` always, `grpc://` never, a bare host:port when a CA file is configured."""
    _, tls = parse_target(target)
    return tls if tls is not None else settings.tls_ca_file is not None


def _reconnect_cap_ms(settings: CommonSettings) -> int:
    return int(min(10.0, max(1.0, 2 * settings.report_interval)) * 1000)


def _credentials(settings: CommonSettings) -> grpc.ChannelCredentials:
    """Verify the server by BERTH_TLS_CA_FILE (else the system roots); present the client
    certificate when one is configured, for servers that require one (mutual TLS)."""
    key, cert = settings.tls_client_key_file, settings.tls_client_cert_file
    return grpc.ssl_channel_credentials(
        root_certificates=settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None,
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None,
    )


def aio_channel(target: str, settings: CommonSettings) -> aio.Channel:
    """A channel to `target` (the client library's target syntax). Every call from one Berth
    process to another goes through one of these: the client certificate rides on TLS
    channels only, a plaintext target (`grpc://`) is reached without it."""
    address, _ = parse_target(target)
    options = [
        ("grpc.keepalive_time_ms", 30000),
        ("grpc.keepalive_permit_without_calls", 0),
        # gRPC backs reconnects off up to 120 s by default: a peer back from an outage would
        # stay unreached that long. Two report intervals (at most ten seconds) keep recovery
        # inside the registry's grace after its restart, and still gentle.
        ("grpc.max_reconnect_backoff_ms", _reconnect_cap_ms(settings)),
    ]
    if _uses_tls(target, settings):
        creds = _credentials(settings)
        if settings.token:
            creds = grpc.composite_channel_credentials(
                creds, grpc.access_token_call_credentials(settings.token)
            )
        return aio.secure_channel(address, creds, options=options)
    return aio.insecure_channel(address, options=options)


def call_metadata(settings: CommonSettings, target: str) -> tuple[tuple[str, str], ...]:
    """Plaintext channels cannot carry call credentials; send the token as metadata instead."""
    if settings.token and not _uses_tls(target, settings):
        return (("authorization", f"Bearer {settings.token}"),)
    return ()


class PeerLink:
    """A channel to another Berth service, opened on first use, and calls whose failures say
    who could not be asked: the peer's own answers about the request (`passed_on`) pass on
    as they are; anything else is UNAVAILABLE naming the service and what was asked."""

    # Set by each link: "the node service", its UNAVAILABLE reason, the codes passed on.
    peer: ClassVar[str]
    unavailable_reason: ClassVar[str]
    passed_on: ClassVar[frozenset[grpc.StatusCode]]
    deadline_s: ClassVar[float] = 10.0

    def __init__(self, settings: CommonSettings, url: str) -> None:
        self._settings = settings
        self._url = url
        self._channel: aio.Channel | None = None

    @property
    def channel(self) -> aio.Channel:
        if self._channel is None:
            self._channel = aio_channel(self._url, self._settings)
        return self._channel

    async def _call(self, method, request, what: str):
        try:
            return await method(
                request,
                metadata=call_metadata(self._settings, self._url),
                timeout=self.deadline_s,
            )
        except aio.AioRpcError as exc:
            if exc.code() in self.passed_on:
                raise from_rpc_error(exc) from None
            raise Unavailable(
                f"cannot ask {self.peer} at {self._url} {what} "
                f"({exc.code().name}: {exc.details()}); retry when it is back",
                reason=self.unavailable_reason,
            ) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
