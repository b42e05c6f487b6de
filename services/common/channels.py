"""Async channels from one process to another, with the process's own token and TLS."""

from __future__ import annotations

import grpc
from grpc import aio

from services.common.settings import CommonSettings


def aio_channel(target: str, settings: CommonSettings) -> aio.Channel:
    """`host:port` / `grpc://…` plaintext, `grpcs://…` TLS (verified against BERTH_TLS_CA_FILE)."""
    scheme, sep, rest = target.partition("://")
    address = rest if sep else target
    options = [("grpc.keepalive_time_ms", 30000), ("grpc.keepalive_permit_without_calls", 0)]
    if sep and scheme == "grpcs":
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
    if settings.token and not target.startswith("grpcs://"):
        return (("authorization", f"Bearer {settings.token}"),)
    return ()
