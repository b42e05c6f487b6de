"""host-list and host-describe, with novaclient's columns."""

from __future__ import annotations

import argparse
from typing import Any

from berth.cli.output import Output, dash, message_dict


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


def host_list(client: Any, args: argparse.Namespace, out: Output) -> int:
    hosts = list(client.list_hosts(zone=args.zone))
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
