"""host-list, host-describe and host-action, with novaclient's columns."""

from __future__ import annotations

import argparse
from typing import Any

from berth.cli.output import Output, dash, enum_word, message_dict, timestamp_text
from berth.client.host import POWER_ACTIONS
from berth.v1 import host_pb2


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the host-* sub-commands to `sub` (argparse's subparsers object)."""
    p = sub.add_parser("host-list", parents=[common], help="List hosts and their services.")
    p.add_argument("--zone", default="", help="Only hosts in this availability zone.")
    p.set_defaults(func=host_list, client="hosts")

    p = sub.add_parser(
        "host-describe", parents=[common], help="Show a host's resources, in total and per project."
    )
    p.add_argument("host", metavar="HOST", help="Host name.")
    p.set_defaults(func=host_describe, client="hosts")

    p = sub.add_parser(
        "host-action",
        parents=[common],
        help="Start up, shut down or reboot a host through its compute agent's driver.",
        description="Start up, shut down or reboot a host through its compute agent's driver "
        "(admin only). fake and fake-cluster hosts shut down or reboot with their agent and "
        "cannot start themselves; fake-ironic powers its bare-metal nodes through their BMCs; "
        "local does none.",
    )
    p.add_argument("host", metavar="HOST", help="Host name.")
    p.add_argument("--action", required=True, choices=POWER_ACTIONS, help="The power action.")
    p.add_argument(
        "--nodename",
        default="",
        metavar="NODE",
        help="Bare metal: only this node of the host (default: every node).",
    )
    p.set_defaults(func=host_action, client="hosts")


def host_list(client: Any, args: argparse.Namespace, out: Output) -> int:
    hosts = sorted(client.list_hosts(zone=args.zone), key=lambda h: (h.host_name, h.service))
    out.table(
        ("host_name", "service", "zone"),
        [[host.host_name, host.service, dash(host.zone)] for host in hosts],
        [message_dict(host) for host in hosts],
    )
    return 0


def host_describe(client: Any, args: argparse.Namespace, out: Output) -> int:
    rows = client.describe_host(args.host)
    out.table(
        ("HOST", "PROJECT", "cpu", "memory_mb", "disk_gb"),
        [
            [
                row.host,
                row.project,
                row.resources.vcpus,
                row.resources.memory_mb,
                row.resources.disk_gb,
            ]
            for row in rows
        ],
        [message_dict(row) for row in rows],
    )
    return 0


def host_action(client: Any, args: argparse.Namespace, out: Output) -> int:
    done = client.host_action(args.host, args.action, nodename=args.nodename)
    if out.json_mode:
        out.json(message_dict(done))
        return 0
    out.table(
        ("HOST", "power_action", "result", "requested_at"),
        [[done.host, args.action, done.result, timestamp_text(done, "requested_at")]],
        None,
    )
    if done.nodes:
        out.table(
            ("NODE", "power_state"),
            [[node.nodename, _power_state(node.power_state)] for node in done.nodes],
            None,
        )
    return 0


def _power_state(value: host_pb2.PowerState.ValueType) -> str:
    """POWER_STATE_OFF -> `off`, the word --json writes too."""
    return dash(enum_word("PowerState", host_pb2.PowerState.Name(value)))
