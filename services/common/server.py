"""The gRPC server every Berth process runs: interceptors, health, reflection, TLS, shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import auth, interceptors
from services.common.listeners import StartupError, is_loopback, require_credentials, require_free
from services.common.reflection import serve_reflection
from services.common.settings import CommonSettings
from services.common.workers import this_worker

__all__ = ["ServiceSpec", "StartupError", "build_server", "is_loopback", "set_serving"]

log = logging.getLogger(__name__)

Registrar = Callable[[aio.Server], None]


@dataclass
class ServiceSpec:
    """What a process serves: servicers to add, their full names, and its auth policy."""

    registrars: list[Registrar]
    service_names: list[str]
    policy: auth.MethodPolicy = field(default_factory=auth.MethodPolicy)
    quiet_methods: frozenset[str] = frozenset()
    translators: tuple[interceptors.Translator, ...] = ()


def _load_tokens(settings: CommonSettings) -> auth.TokenTable | None:
    if settings.auth_file is None:
        return None
    try:
        return auth.TokenTable.load(settings.auth_file)
    except (OSError, ValueError, KeyError) as exc:
        raise StartupError(f"cannot use BERTH_AUTH_FILE: {exc}") from exc


def _credentials(settings: CommonSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None:
        if settings.tls_client_ca_file is not None:
            raise StartupError(
                "BERTH_TLS_CLIENT_CA_FILE (mutual TLS) needs BERTH_TLS_CERT_FILE and BERTH_TLS_KEY_FILE"
            )
        return None
    if settings.tls_key_file is None:
        raise StartupError("BERTH_TLS_CERT_FILE needs BERTH_TLS_KEY_FILE")
    try:
        pair = (settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())
        client_ca = (
            settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
        )
    except OSError as exc:
        raise StartupError(f"cannot read TLS files: {exc}") from exc
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def build_server(
    settings: CommonSettings, spec: ServiceSpec
) -> tuple[aio.Server, int, health.aio.HealthServicer]:
    """A ready-to-start server bound to `settings.listen_address` -> (server, port, health)."""
    address = settings.listen_address
    tokens = _load_tokens(settings)
    require_credentials(address, tokens is not None, "gRPC", "BERTH_LISTEN")
    # A worker shares its port with the others (its parent checked and holds it).
    shared_port = this_worker() is not None
    if not shared_port:
        require_free(address, "BERTH_LISTEN")
    if tokens is None:
        log.warning("no credentials configured: serving loopback only, every caller is admin")
    server = aio.server(
        interceptors=[
            interceptors.RequestIdInterceptor(),
            interceptors.ObserveInterceptor(spec.quiet_methods),
            interceptors.ErrorInterceptor(spec.translators),
            interceptors.AuthInterceptor(tokens, spec.policy),
            interceptors.DecodeInterceptor(),
        ],
        options=[
            ("grpc.so_reuseport", 1 if shared_port else 0),
            ("grpc.max_concurrent_streams", 20000),
            # The default cap on calls waiting to be accepted left most of 10,000 agents'
            # heartbeat streams unopened (measured); a fleet reconnecting at once needs room.
            ("grpc.server.max_pending_requests", 20000),
            ("grpc.server.max_pending_requests_hard_limit", 30000),
        ],
    )
    for register in spec.registrars:
        register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    serve_reflection(server, [*spec.service_names, health.SERVICE_NAME])
    credentials = _credentials(settings)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # gRPC says only "Failed to bind"; another process won the race
        port = 0
    if port == 0:
        raise StartupError(
            f"cannot listen on {address} (BERTH_LISTEN): the address is in use or not local"
        )
    return server, port, health_servicer


async def set_serving(
    health_servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        await health_servicer.set(name, status)


class Running(Protocol):
    """What a process's start function returns: its server and health (read when used: a
    rebooted compute agent serves from new ones), its stop sequence, and an event it may
    set to stop itself (None where it never does)."""

    server: Any
    health: Any

    @property
    def stop_requested(self) -> asyncio.Event | None: ...

    async def drain(self) -> None: ...
    async def stop(self, grace_s: float = ...) -> None: ...


async def run_until_signalled(process: Running, names: list[str], grace_s: float) -> None:
    """Serve until SIGTERM/SIGINT, or until the process asks itself to stop (a compute agent
    whose host was shut down), then: NOT_SERVING -> end streams (`drain`) -> drain calls ->
    stop loops and close pools (`stop`)."""
    signalled = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signalled.set)
    await set_serving(process.health, names, True)
    events = [signalled]
    if process.stop_requested is not None:
        events.append(process.stop_requested)
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    log.info("stopping: health NOT_SERVING, draining calls", extra={"grace_s": grace_s})
    await set_serving(process.health, names, False)
    await process.drain()
    await process.server.stop(grace_s)
    await process.stop(0)
    log.info("stopped")
