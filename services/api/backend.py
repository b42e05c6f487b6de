"""The Berth services behind the API: one client (one channel) each, shared by every
request. The clients are the `berth` command's own, so a boot or a delete here is exactly
`berth boot` / `berth delete`. Their calls block, so each runs in a worker thread."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from berth.client.base import BaseClient
from berth.client.compute import ComputeClient
from berth.client.errors import BerthError
from berth.client.host import HostClient
from berth.client.node import NodeClient
from berth.client.registry import RegistryClient
from berth.client.scheduler import SchedulerClient

from services.api.faults import from_berth
from services.api.settings import ApiSettings

# Items per page when the API lists from a Berth service: the servers' largest page, so a
# listing of 10,000 is 10 round trips, not 100.
PAGE = 1000

T = TypeVar("T")
C = TypeVar("C", bound=BaseClient[Any])


def _text(path: Path | None) -> str | None:
    return str(path) if path else None


class Backend:
    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self.registry = self._connect(RegistryClient, settings.registry_url)
        self.hosts: HostClient = self.registry.hosts
        self.node = self._connect(NodeClient, settings.node_url)
        self.scheduler = self._connect(SchedulerClient, settings.scheduler_url)

    def _connect(self, kind: type[C], target: str) -> C:
        """A client with the API's own token, CA and client certificate."""
        settings = self._settings
        return kind.connect(
            target,
            token=settings.token,
            tls_ca_file=_text(settings.tls_ca_file),
            tls_cert_file=_text(settings.tls_client_cert_file),
            tls_key_file=_text(settings.tls_client_key_file),
            timeout=settings.backend_timeout,
        )

    def agent(self, endpoint: str) -> ComputeClient:
        """A compute agent's client (boot and delete open one per host they use)."""
        return self._connect(ComputeClient, endpoint)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`function(*args, **kwargs)` in a worker thread; a Berth error becomes Nova's."""
        return await anyio.to_thread.run_sync(
            functools.partial(_translated, function, *args, **kwargs)
        )

    def close(self) -> None:
        for client in (self.registry, self.node, self.scheduler):
            client.close()


def _translated(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        return function(*args, **kwargs)
    except BerthError as exc:
        raise from_berth(exc) from None
