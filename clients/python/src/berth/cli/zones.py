"""availability-zone-list and server-group-list: Nova's views of where things are, read
from the registry's services and the node service's instances."""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from berth.cli.output import Output, enum_word, timestamp_text
from berth.v1 import common_pb2

COMPUTE_BINARY = "berth-compute"
# Where Nova lists the services that place nothing (scheduler, conductor, ...).
INTERNAL_ZONE = "internal"


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "availability-zone-list",
        parents=[common],
        help="List availability zones: available while a compute service there is up and enabled.",
    )
    p.add_argument(
        "--long", action="store_true", help="One row per host and service, with its state."
    )
    p.set_defaults(func=availability_zone_list, client="registry")

    p = sub.add_parser(
        "server-group-list",
        parents=[common],
        help="List server groups: their policy, members and the hosts they are on.",
    )
    p.set_defaults(func=server_group_list, client="node")


def availability_zone_list(client: Any, args: argparse.Namespace, out: Output) -> int:
    by_zone: dict[str, list[Any]] = defaultdict(list)
    for service in client.list_services():
        zone = service.availability_zone if service.binary == COMPUTE_BINARY else INTERNAL_ZONE
        by_zone[zone or INTERNAL_ZONE].append(service)
    rows: list[list[object]] = []
    data = []
    for zone in sorted(by_zone):
        services = sorted(by_zone[zone], key=lambda s: (s.host, s.binary))
        available = zone == INTERNAL_ZONE or any(s.up and not s.disabled for s in services)
        status = "available" if available else "not available"
        hosts = sorted({s.host for s in services})
        if args.long:
            for s in services:
                state = f"{'enabled' if not s.disabled else 'disabled'} {'up' if s.up else 'down'}"
                rows.append(
                    [zone, status, s.host, s.binary, state, timestamp_text(s, "updated_at")]
                )
        else:
            rows.append([zone, status, "\n".join(hosts)])
        data.append(
            {
                "zone_name": zone,
                "zone_status": status,
                "hosts": {
                    s.host: {s.binary: {"available": s.up and not s.disabled, "active": s.up}}
                    for s in services
                },
            }
        )
    headers = (
        ("Zone Name", "Zone Status", "Host Name", "Service Name", "Service Status", "Updated At")
        if args.long
        else ("Zone Name", "Zone Status", "Hosts")
    )
    out.table(headers, rows, data)
    return 0


def server_group_list(client: Any, args: argparse.Namespace, out: Output) -> int:
    members: dict[str, list[Any]] = defaultdict(list)
    for instance in client.node_instances():
        if instance.server_group:
            members[instance.server_group].append(instance)
    if not members:
        out.table(("Name", "Policy", "Members", "Hosts"), [], [])
        return 0
    rows, data = [], []
    for name in sorted(members):
        group = members[name]
        policy = _policy(group[0].group_policy)
        hosts = sorted({i.host for i in group})
        group.sort(key=lambda i: (i.name or i.uuid, i.uuid))
        labels = [i.name or i.uuid for i in group]
        rows.append([name, policy, "\n".join(labels), "\n".join(hosts)])
        data.append(
            {
                "name": name,
                "policy": policy,
                # Nova's members are uuids; the names beside them, in the same order.
                "members": [i.uuid for i in group],
                "member_names": [i.name for i in group],
                "hosts": hosts,
            }
        )
    out.table(("Name", "Policy", "Members", "Hosts"), rows, data)
    return 0


def _policy(value: common_pb2.GroupPolicy.ValueType) -> str:
    """GROUP_POLICY_ANTI_AFFINITY -> anti-affinity (as `berth boot --group-policy`)."""
    return enum_word("GroupPolicy", common_pb2.GroupPolicy.Name(value))
