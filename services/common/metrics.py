"""Prometheus metrics shared by every process, served over HTTP when BERTH_METRICS_LISTEN is set."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Histogram, start_http_server

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

# The registry's maintenance moves: moved (built elsewhere, deleted here), stayed (no room,
# no aggregate, refused), held (an agent unreachable: resumed when asked again).
MAINTENANCE_MOVES = Counter(
    "berth_maintenance_moves_total",
    "Instances of hosts in maintenance, by what became of their move.",
    ["outcome"],
)


# Background loops (reporter, watches, pushers, flushers) restarted after an unexpected
# error, by task kind: anything above zero is a bug worth a look, and the log says which.
TASK_RESTARTS = Counter(
    "berth_task_restarts_total",
    "Background tasks that died of an unexpected error and were started again, by task.",
    ["task"],
)


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
