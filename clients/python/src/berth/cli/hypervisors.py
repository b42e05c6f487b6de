"""hypervisor-list, -show, -search, -stats and -servers: the node view, as novaclient shows it."""

from __future__ import annotations

import argparse
import contextlib
import json
import textwrap
from datetime import UTC, datetime
from typing import Any

from berth.cli.output import Output, UsageError, dash, enum_word, message_dict, timestamp_text
from berth.client.errors import InvalidArgument, NotFound
from berth.client.registry import looks_like_uuid
from berth.v1 import node_pb2 as pb

# The registry's binary of a compute agent: its row says whether a node's host is alive.
COMPUTE_BINARY = "berth-compute"

LIST_COLUMNS = ("ID", "Hypervisor hostname", "State", "Status", "Hypervisor type", "Host")
SEARCH_COLUMNS = ("ID", "Hypervisor hostname", "Host")
SERVERS_COLUMNS = (
    "ID",
    "Name",
    "Flavor",
    "Project",
    "User",
    "vcpus",
    "memory_mb",
    "disk_gb",
    "State",
    "Hypervisor hostname",
)
UPTIME_COLUMNS = ("ID", "Hypervisor hostname", "State", "Status", "Uptime")
CPU_INFO_WIDTH = 72  # characters per line of the cpu_info cell
NODE_HELP = "UUID, HOST/NODENAME, or a NODENAME that only one host has."


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the hypervisor-* sub-commands to `sub` (argparse's subparsers object)."""
    p = sub.add_parser(
        "hypervisor-list", parents=[common], help="List compute nodes, with their host's state."
    )
    p.add_argument("--host", default="", help="Only the nodes of this host.")
    p.set_defaults(func=hypervisor_list, client="node+registry")

    p = sub.add_parser("hypervisor-show", parents=[common], help="Show one compute node.")
    # dest node_ref: `node` is the global --node URL.
    p.add_argument("node_ref", metavar="NODE", help=NODE_HELP)
    p.set_defaults(func=hypervisor_show, client="node+registry")

    p = sub.add_parser(
        "hypervisor-uptime",
        parents=[common],
        help="How long a compute node has been reported without a restart of its agent.",
    )
    p.add_argument("node_ref", metavar="NODE", help=NODE_HELP)
    p.set_defaults(func=hypervisor_uptime, client="node+registry")

    p = sub.add_parser(
        "hypervisor-search", parents=[common], help="Find compute nodes by part of their name."
    )
    p.add_argument("pattern", metavar="PATTERN", help="Part of the hypervisor hostname.")
    p.set_defaults(func=hypervisor_search, client="node")

    p = sub.add_parser(
        "hypervisor-stats", parents=[common], help="Totals and usage over every compute node."
    )
    p.set_defaults(func=hypervisor_stats, client="node")

    p = sub.add_parser(
        "hypervisor-servers", parents=[common], help="List the instances of a compute node."
    )
    p.add_argument("node_ref", metavar="NODE", nargs="?", help=NODE_HELP)
    p.add_argument("--host", default="", help="The instances of every node of this host instead.")
    p.set_defaults(func=hypervisor_servers, client="node")


# -- naming a node --------------------------------------------------------------------------


def find_node(client: Any, text: str) -> pb.ComputeNode:
    """The node `text` names: a uuid, `host/nodename`, or a nodename only one host has."""
    text = text.strip()
    host, slash, nodename = text.partition("/")
    if slash:
        if not host or not nodename:
            raise UsageError(f"{text!r} is not HOST/NODENAME")
        return client.get_node(host=host, nodename=nodename)
    if not text:
        raise UsageError(f"name the node: {NODE_HELP}")
    if looks_like_uuid(text):
        try:
            return client.get_node(uuid=text)
        except NotFound:
            pass  # bare-metal nodes are named by a uuid of their own: try it as a nodename
    return _by_nodename(client, text)


def _by_nodename(client: Any, name: str) -> pb.ComputeNode:
    found = list(client.search_nodes(name))
    exact = [node for node in found if node.nodename == name]
    if len(exact) == 1:
        return exact[0]
    if exact:
        matches = ", ".join(f"{node.host}/{node.nodename} ({node.uuid})" for node in exact)
        raise InvalidArgument.field(
            "node",
            f"{len(exact)} hypervisors are named {name!r}: {matches}; "
            "name one as HOST/NODENAME or by UUID",
        )
    sentence = f"no hypervisor has the uuid or hostname {name!r}"
    if found:
        near = ", ".join(f"{node.host}/{node.nodename}" for node in found[:5])
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        sentence += f" (hostnames containing it: {near}{more})"
    raise NotFound(sentence)


# -- the commands ---------------------------------------------------------------------------


def _by_place(node: pb.ComputeNode) -> tuple[str, str]:
    """Rows in order of host, then nodename."""
    return node.host, node.nodename


def node_state(service: Any) -> tuple[str, str | None]:
    """(State, Status) of a node from its host's compute service; no service: down, unknown."""
    if service is None:
        return "down", None
    return ("up" if service.up else "down"), ("disabled" if service.disabled else "enabled")


def hypervisor_list(clients: Any, args: argparse.Namespace, out: Output) -> int:
    nodes = sorted(clients.node.list_nodes(host=args.host), key=_by_place)
    # The node service does not know liveness; the registry's compute services do.
    services = {
        service.host: service
        for service in clients.registry.list_services(host=args.host, binary=COMPUTE_BINARY)
    }
    rows, data = [], []
    for node in nodes:
        state, status = node_state(services.get(node.host))
        rows.append(
            [node.uuid, node.nodename, state, dash(status or ""), node.hypervisor_type, node.host]
        )
        data.append({**message_dict(node), "state": state, "status": status})
    out.table(LIST_COLUMNS, rows, data)
    return 0


def node_properties(node: pb.ComputeNode) -> list[tuple[str, object]]:
    """Every field of a node as novaclient's hypervisor-show names it, resources flattened."""
    cells = node.numa_topology.cells
    return [
        ("id", node.uuid),
        ("hypervisor_hostname", node.nodename),
        ("host", node.host),
        ("host_ip", dash(node.host_ip)),
        ("hypervisor_type", dash(node.hypervisor_type)),
        ("hypervisor_version", dash(node.hypervisor_version)),
        # What the node offers: a custom class taken whole (bare metal), or '-' for VMs.
        ("resource_class", dash(node.resource_class)),
        ("whole_machine", node.whole_machine),
        ("vcpus", node.total.vcpus),
        ("vcpus_used", node.used.vcpus),
        ("memory_mb", node.total.memory_mb),
        ("memory_mb_used", node.used.memory_mb),
        ("local_gb", node.total.disk_gb),
        ("local_gb_used", node.used.disk_gb),
        ("free_ram_mb", node.free_ram_mb),
        ("free_disk_gb", node.free_disk_gb),
        ("disk_available_least", node.disk_available_least_gb),
        ("running_vms", node.running_vms),
        ("current_workload", node.current_workload),
        ("io_ops", node.io_ops),
        ("cpu_allocation_ratio", node.cpu_allocation_ratio),
        ("ram_allocation_ratio", node.ram_allocation_ratio),
        ("disk_allocation_ratio", node.disk_allocation_ratio),
        ("reserved_host_cpus", node.reserved_host_cpus),
        ("reserved_host_memory_mb", node.reserved_host_memory_mb),
        ("reserved_host_disk_mb", node.reserved_host_disk_mb),
        ("cpu_info", cpu_info_text(node.cpu_info)),
        ("pci_device_pools", len(node.pci_device_pools)),
        ("pci_devices", sum(pool.count for pool in node.pci_device_pools)),
        ("numa_cells", "\n".join(numa_cell_text(cell) for cell in cells) if cells else "-"),
        ("supported_instances", ", ".join(node.supported_instances) or "-"),
        ("generation", node.generation),
        ("created_at", timestamp_text(node, "created_at")),
        ("updated_at", timestamp_text(node, "updated_at")),
    ]


def cpu_info_text(cpu_info: str, width: int = CPU_INFO_WIDTH) -> str:
    """The driver's CPU description, wrapped so a cluster's long JSON keeps the table narrow."""
    if not cpu_info:
        return "-"
    # Spaces after separators give the wrap places to break; the JSON stays the same.
    # Text that is not JSON is wrapped as it is.
    with contextlib.suppress(ValueError):
        cpu_info = json.dumps(json.loads(cpu_info), separators=(", ", ": "))
    return textwrap.fill(cpu_info, width=width, break_long_words=False, break_on_hyphens=False)


def numa_cell_text(cell: pb.NumaCell) -> str:
    """`0: 8 cpus (2 used), 16384 MB (4096 used)`: one line per cell."""
    return (
        f"{cell.id}: {len(cell.cpus)} cpus ({cell.cpu_usage} used), "
        f"{cell.memory_mb} MB ({cell.memory_usage_mb} used)"
    )


def _state_of(clients: Any, node: pb.ComputeNode) -> tuple[str, str | None]:
    services = clients.registry.list_services(host=node.host, binary=COMPUTE_BINARY)
    return node_state(next(iter(services), None))


def hypervisor_show(clients: Any, args: argparse.Namespace, out: Output) -> int:
    node = find_node(clients.node, args.node_ref)
    state, status = _state_of(clients, node)
    properties = node_properties(node)
    # Where novaclient shows them: after the type and version.
    properties[6:6] = [("state", state), ("status", dash(status or ""))]
    out.properties(properties, {**message_dict(node), "state": state, "status": status})
    return 0


def hypervisor_uptime(clients: Any, args: argparse.Namespace, out: Output) -> int:
    node = find_node(clients.node, args.node_ref)
    state, status = _state_of(clients, node)
    uptime = uptime_text(node)
    out.table(
        UPTIME_COLUMNS,
        [[node.uuid, node.nodename, state, dash(status or ""), uptime]],
        {
            "id": node.uuid,
            "hypervisor_hostname": node.nodename,
            "state": state,
            "status": status,
            "uptime": uptime,
            "up_since": timestamp_text(node, "boot_epoch"),
        },
    )
    return 0


def uptime_text(node: pb.ComputeNode, now: datetime | None = None) -> str:
    """`up 2 days, 3:04:05 (since 2026-12-03T03:56:55Z)`: since the agent's tracker of the
    node started; the machine's own uptime is its agent's to know, not Berth's."""
    if not node.HasField("boot_epoch"):
        return "-"
    since = node.boot_epoch.ToDatetime(tzinfo=UTC)
    elapsed = (now or datetime.now(UTC)) - since
    days, rest = divmod(max(int(elapsed.total_seconds()), 0), 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    lead = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    return f"up {lead}{clock} (since {since.strftime('%Y-%m-%dT%H:%M:%SZ')})"


def hypervisor_search(client: Any, args: argparse.Namespace, out: Output) -> int:
    nodes = sorted(client.search_nodes(args.pattern), key=_by_place)
    out.table(
        SEARCH_COLUMNS,
        [[node.uuid, node.nodename, node.host] for node in nodes],
        [message_dict(node) for node in nodes],
    )
    return 0


def statistics_properties(stats: pb.GetStatisticsResponse) -> dict[str, int]:
    """The sums hypervisor-stats shows, under novaclient's names."""
    return {
        "count": stats.count,
        "vcpus": stats.total.vcpus,
        "vcpus_used": stats.used.vcpus,
        "memory_mb": stats.total.memory_mb,
        "memory_mb_used": stats.used.memory_mb,
        "local_gb": stats.total.disk_gb,
        "local_gb_used": stats.used.disk_gb,
        "free_ram_mb": stats.free_ram_mb,
        "free_disk_gb": stats.free_disk_gb,
        "disk_available_least": stats.disk_available_least_gb,
        "running_vms": stats.running_vms,
        "current_workload": stats.current_workload,
    }


def hypervisor_stats(client: Any, args: argparse.Namespace, out: Output) -> int:
    properties = statistics_properties(client.statistics())
    out.properties(list(properties.items()), properties)
    return 0


def instance_state(instance: pb.Instance) -> str:
    """INSTANCE_STATE_ACTIVE -> `active`; unset -> `-`."""
    return dash(enum_word("InstanceState", pb.InstanceState.Name(instance.state)))


def hypervisor_servers(client: Any, args: argparse.Namespace, out: Output) -> int:
    if bool(args.node_ref) == bool(args.host):
        raise UsageError("give a NODE, or --host for every node of a host")
    if args.host:
        instances = list(client.node_instances(host=args.host))
    else:
        node = find_node(client, args.node_ref)
        instances = list(client.node_instances(uuid=node.uuid))
    instances.sort(key=lambda i: (i.nodename, i.name, i.uuid))
    out.table(
        SERVERS_COLUMNS,
        [
            [
                instance.uuid,
                dash(instance.name),
                dash(instance.flavor_name),
                dash(instance.project_id),
                dash(instance.user_id),
                instance.resources.vcpus,
                instance.resources.memory_mb,
                instance.resources.disk_gb,
                instance_state(instance),
                instance.nodename,
            ]
            for instance in instances
        ],
        [message_dict(instance) for instance in instances],
    )
    return 0
