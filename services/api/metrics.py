"""berth-api's metrics: requests by route, method and status, and their time."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "berth_api_requests_total",
    "Compute API requests answered, by route (the endpoint's name), method and HTTP status.",
    ["route", "method", "status"],
)
SECONDS = Histogram(
    "berth_api_request_seconds",
    "Time from a Compute API request's arrival to its answer, by route and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
