"""Async channels from one process to another, with the process's own token and TLS."""

from __future__ import annotations

import grpc
from berth.client.channel import parse_target
from grpc import aio

from services.common.settings import CommonSettings


def _uses_tls(target: str, settings: CommonSettings) -> bool:
    """`grpcs://` always, `grpc://` never, a bare host:port when a CA file is configured."""
    _, tls = parse_target(target)
    return tls if tls is not None else settings.tls_ca_file is not None


def aio_channel(target: str, settings: CommonSettings) -> aio.Channel:
    """A channel to `target` (the client library's target syntax), TLS verified by BERTH_TLS_CA_FILE."""
    address, _ = parse_target(target)
    options = [
        ("grpc.keepalive_time_ms", 30000),
        ("grpc.keepalive_permit_without_calls", 0),
        # gRPC backs reconnects off up to 120 s by default: a peer back from an outage would
        # stay unreached that long. Ten seconds keeps recovery prompt and still gentle.
        ("grpc.max_reconnect_backoff_ms", 10000),
    ]
    if _uses_tls(target, settings):
        ca = settings.tls_ca_file.read_bytes() if settings.tls_ca_file else None
        creds = grpc.ssl_channel_credentials(root_certificates=ca)
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
