"""The registry's own metrics: what a Nova operator alerts on (openstack-exporter's
`openstack_nova_agent_state`), heartbeats taken and refused, and maintenance moves.

Service states are read at scrape time from the latest event of each service on the
registry's change feed (loaded once at start): no counter to drift, and a service that
goes down shows as down in the next scrape, with its binary, host and zone.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from berth.v1 import registry_pb2
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.metrics import LatestObjects

# Maintenance moves: moved (built elsewhere, deleted here), stayed (no room, no aggregate,
# refused), held (an agent unreachable: resumed when asked again).
MAINTENANCE_MOVES = Counter(
    "berth_maintenance_moves_total",
    "Instances of hosts in maintenance, by what became of their move.",
    ["outcome"],
)
HEARTBEATS = Counter(
    "berth_heartbeats_total",
    "Heartbeats received, by result: stored, or why one was refused.",
    ["result"],
)

REGISTRATIONS_ABANDONED = Counter(
    "berth_registrations_abandoned_total",
    "Registrations dropped unwritten because their caller left (deadline) before their batch.",
)
REGISTRATION_BATCH = Histogram(
    "berth_registration_batch_size",
    "Registrations (RegisterService) stored per transaction by the group commit.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)


class ServiceStates(Collector):
    """The latest state of every service, from the change feed."""

    def __init__(self) -> None:
        self.latest: LatestObjects[registry_pb2.Service] = LatestObjects(
            lambda event: event.service if event.HasField("service") else None,
            lambda service: service.uuid,
        )

    def collect(self) -> Iterator[Metric]:
        labels = ["binary", "host", "zone"]
        up = GaugeMetricFamily(
            "berth_service_up",
            "1 while the service heartbeats within service_down_time and is not forced "
            "down (openstack_nova_agent_state), else 0.",
            labels=labels,
        )
        enabled = GaugeMetricFamily(
            "berth_service_enabled",
            "1 when the service is enabled, 0 when disabled.",
            labels=labels,
        )
        counts: Tally[tuple[str, str, str]] = Tally()
        for service in self.latest.values():
            key = [service.binary, service.host, service.availability_zone]
            up.add_metric(key, 1.0 if service.up else 0.0)
            enabled.add_metric(key, 0.0 if service.disabled else 1.0)
            state = "up" if service.up else "down"
            counts[(service.binary, state, "disabled" if service.disabled else "enabled")] += 1
        totals = GaugeMetricFamily(
            "berth_services",
            "Services by binary, state (up/down) and status (enabled/disabled).",
            labels=["binary", "state", "status"],
        )
        for (binary, state, status), count in sorted(counts.items()):
            totals.add_metric([binary, state, status], count)
        yield from (up, enabled, totals)
