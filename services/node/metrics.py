"""The node service's own metrics: each node's resources as Placement counts them
(openstack-exporter's `openstack_placement_resource_*`), and snapshots taken and refused.

Node gauges are read at scrape time from the latest event of each node on the change feed
(loaded once at start), so they are what the node service last stored, node by node.
"""

from __future__ import annotations

from collections.abc import Iterator

from berth.v1 import node_pb2
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.metrics import LatestObjects

SNAPSHOTS = Counter(
    "berth_snapshots_total",
    "Resource snapshots received, by result: changed, unchanged (stored as seen), or why "
    "one was refused (stale sequence, another host's node, invalid).",
    ["result"],
)

FIRST_REPORTS = Counter(
    "berth_node_first_reports_total",
    "Compute nodes created, restored or moved by a snapshot, by path: batch (created "
    "together with the other new nodes of one write) or single (a node known by its uuid, "
    "or a race with another writer: judged on its own).",
    ["path"],
)


class NodeResources(Collector):
    def __init__(self) -> None:
        self.latest: LatestObjects[node_pb2.ComputeNode] = LatestObjects(
            lambda event: event.node if event.HasField("node") else None,
            lambda node: node.uuid,
        )

    def collect(self) -> Iterator[Metric]:
        labels = ["host", "node", "resource"]
        families = {
            name: GaugeMetricFamily(metric, text, labels=labels)
            for name, metric, text in (
                ("total", "berth_node_resource_total", "What the node has, by resource class."),
                (
                    "used",
                    "berth_node_resource_used",
                    "What the node reports in use (instances plus reserved amounts).",
                ),
                (
                    "reserved",
                    "berth_node_resource_reserved",
                    "What the node holds back for its host.",
                ),
                (
                    "allocation_ratio",
                    "berth_node_resource_allocation_ratio",
                    "How far the node's resource may be over-committed.",
                ),
            )
        }
        for node in self.latest.values():
            for resource, total, used, reserved, ratio in (
                (
                    "VCPU",
                    node.total.vcpus,
                    node.used.vcpus,
                    node.reserved_host_cpus,
                    node.cpu_allocation_ratio,
                ),
                (
                    "MEMORY_MB",
                    node.total.memory_mb,
                    node.used.memory_mb,
                    node.reserved_host_memory_mb,
                    node.ram_allocation_ratio,
                ),
                (
                    "DISK_GB",
                    node.total.disk_gb,
                    node.used.disk_gb,
                    -(-node.reserved_host_disk_mb // 1024),  # whole GiB, rounded up
                    node.disk_allocation_ratio,
                ),
            ):
                key = [node.host, node.nodename, resource]
                families["total"].add_metric(key, total)
                families["used"].add_metric(key, used)
                families["reserved"].add_metric(key, reserved)
                families["allocation_ratio"].add_metric(key, ratio or 1.0)
        yield from families.values()
