"""Prometheus metrics shared by every process, served over HTTP when BERTH_METRICS_LISTEN is set."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from berth.v1 import common_pb2
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.registry import Collector

from services.common.listeners import StartupError, require_credentials, require_free
from services.common.settings import split_host_port

log = logging.getLogger(__name__)

RPC_HANDLED = Counter(
    "berth_grpc_server_handled_total",
    "RPCs completed, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_SECONDS = Histogram(
    "berth_grpc_server_handling_seconds",
    "Time from the start of an RPC to its end (whole stream for streaming RPCs).",
    ["grpc_service", "grpc_method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Metrics of one process's own work live with that process (services/<process>/metrics.py):
# an agent shows no maintenance counter. These are every process's.

# Background loops (reporter, watches, pushers, flushers) restarted after an unexpected
# error, by task kind: anything above zero is a bug worth a look, and the log says which.
TASK_RESTARTS = Counter(
    "berth_task_restarts_total",
    "Background tasks that died of an unexpected error and were started again, by task.",
    ["task"],
)


T = TypeVar("T")


class LatestObjects(Generic[T]):
    """The latest version of each object on a process's change feed (a service, a node),
    for gauges read at scrape time: a listing taken at start, then every event. An event
    that arrives while the listing is read is newer than the listing."""

    def __init__(self, pick: Callable[[Any], T | None], key: Callable[[T], str]) -> None:
        self._pick = pick
        self._key = key
        self._objects: dict[str, T] = {}
        self._seen_during_load: set[str] | None = set()

    def on_event(self, event: Any) -> None:
        found = self._pick(event)
        if found is None:
            return
        key = self._key(found)
        if self._seen_during_load is not None:
            self._seen_during_load.add(key)
        if event.type == common_pb2.EVENT_TYPE_DELETED:
            self._objects.pop(key, None)
        else:
            self._objects[key] = found

    def loaded(self, objects: list[T]) -> None:
        seen, self._seen_during_load = self._seen_during_load or set(), None
        for found in objects:
            if self._key(found) not in seen:
                self._objects[self._key(found)] = found

    def values(self) -> list[T]:
        return list(self._objects.values())  # a copy: the scrape runs in another thread


_collectors: dict[str, Collector] = {}


def register_collector(name: str, collector: Collector) -> None:
    """Expose `collector` in this process's /metrics, replacing an earlier one of the same
    name (tests start several servers in one process; the newest one counts)."""
    if name in _collectors:
        REGISTRY.unregister(_collectors[name])
    REGISTRY.register(collector)
    _collectors[name] = collector


def serve_metrics(listen: str, has_credentials: bool) -> None:
    """Start the /metrics HTTP endpoint in a daemon thread; StartupError says why it cannot.

    Beyond loopback it needs credentials configured, as the gRPC port does (the endpoint
    itself answers anyone who reaches it: scrapers carry no Berth token)."""
    require_credentials(listen, has_credentials, "Prometheus metrics", "BERTH_METRICS_LISTEN")
    require_free(listen, "BERTH_METRICS_LISTEN")
    host, port = split_host_port(listen)
    try:
        start_http_server(port, addr=host)
    except OSError as exc:  # another process took it since the check
        raise StartupError(
            f"cannot listen on {listen} (BERTH_METRICS_LISTEN): {exc.strerror or exc}"
        ) from None
    log.info("metrics served", extra={"address": f"http://{listen}/metrics"})
