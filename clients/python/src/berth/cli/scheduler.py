"""scheduler-hosts and scheduler-resync: the scheduler's HostState cache, as it places from it."""

from __future__ import annotations

import argparse
import math
from typing import Any

from berth.cli.output import Output, dash, message_dict
from berth.v1 import scheduler_pb2 as pb

HOSTS_COLUMNS = (
    "Node",
    "Host",
    "State",
    "Status",
    "Zone",
    "Free vCPUs",
    "Free RAM MB",
    "Free disk GB",
    "Claims",
    "Instances",
    "Generation",
)
# Nodes of these hypervisor types are physical servers one instance takes whole.
BARE_METAL_TYPES = frozenset({"ironic"})


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the scheduler-* sub-commands to `sub` (argparse's subparsers object)."""
    p = sub.add_parser(
        "scheduler-hosts",
        parents=[common],
        help="Show the scheduler's view of every node: free capacity, pending claims.",
        description="The scheduler's HostState cache. Free is total x allocation ratio - "
        "used (with the host's reserved amounts) - pending claims; --json adds every field "
        "and each pending claim.",
    )
    p.add_argument("--host", default="", help="Only the nodes of this host.")
    p.set_defaults(func=scheduler_hosts, client="scheduler")

    p = sub.add_parser(
        "scheduler-resync",
        parents=[common],
        help="Rebuild the scheduler's cache from the registry and the node service.",
    )
    p.set_defaults(func=scheduler_resync, client="scheduler")


def free(state: pb.HostState) -> tuple[int, int, int]:
    """(vCPUs, MB, GB) a new claim could still take, as the scheduler counts them: a
    bare-metal node is free whole or not at all."""
    if state.hypervisor_type in BARE_METAL_TYPES:
        if state.num_instances or state.pending_claims or _any(state.claimed):
            return 0, 0, 0
        return (
            state.total.vcpus - state.used.vcpus,
            state.total.memory_mb - state.used.memory_mb,
            state.total.disk_gb - state.used.disk_gb,
        )
    return (
        math.floor(state.total.vcpus * state.cpu_allocation_ratio)
        - state.used.vcpus
        - state.claimed.vcpus,
        math.floor(state.total.memory_mb * state.ram_allocation_ratio)
        - state.used.memory_mb
        - state.claimed.memory_mb,
        math.floor(state.total.disk_gb * state.disk_allocation_ratio)
        - state.used.disk_gb
        - state.claimed.disk_gb,
    )


def _any(resources: Any) -> bool:
    return bool(resources.vcpus or resources.memory_mb or resources.disk_gb)


def scheduler_hosts(client: Any, args: argparse.Namespace, out: Output) -> int:
    states = sorted(client.list_host_states(host=args.host), key=lambda s: (s.host, s.nodename))
    rows = []
    for state in states:
        vcpus, memory_mb, disk_gb = free(state)
        rows.append(
            [
                state.nodename,
                state.host,
                "up" if state.service_up else "down",
                "disabled" if state.service_disabled else "enabled",
                dash(state.availability_zone),
                vcpus,
                memory_mb,
                disk_gb,
                len(state.pending_claims),
                state.num_instances,
                state.generation,
            ]
        )
    data = []
    for state in states:
        vcpus, memory_mb, disk_gb = free(state)
        free_dict = {"vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb}
        data.append({**message_dict(state), "free": free_dict})
    out.table(HOSTS_COLUMNS, rows, data)
    return 0


def scheduler_resync(client: Any, args: argparse.Namespace, out: Output) -> int:
    done = client.resync()
    properties = {"nodes": done.nodes, "services": done.services, "duration_ms": done.duration_ms}
    out.properties(list(properties.items()), properties)
    return 0
