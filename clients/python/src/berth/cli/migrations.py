"""migration-list: the instance moves of hosts in maintenance (as Nova's migration-list),
each with its instance's name from the node service."""

from __future__ import annotations

import argparse
from typing import Any

from berth.cli.output import Output, dash, message_dict, timestamp_text

COLUMNS = (
    "Instance",
    "Name",
    "Source Host",
    "Dest Host",
    "Dest Node",
    "Status",
    "Reason",
    "Updated At",
)


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "migration-list",
        parents=[common],
        help="List the instance moves of hosts in maintenance, with their state.",
    )
    p.add_argument("--host", default="", help="Only the moves off this host.")
    p.set_defaults(func=migration_list, client="registry+node")


def migration_list(clients: Any, args: argparse.Namespace, out: Output) -> int:
    migrations = clients.registry.hosts.list_migrations(args.host)
    # The registry keeps the move, the node service the instance (and its name).
    names = {
        i.uuid: i.name
        for i in clients.node.instances_by_uuid(sorted({m.instance_uuid for m in migrations}))
    }
    migrations.sort(key=lambda m: (m.source_host, names.get(m.instance_uuid, ""), m.instance_uuid))
    out.table(
        COLUMNS,
        [
            [
                m.instance_uuid,
                dash(names.get(m.instance_uuid, "")),
                m.source_host,
                dash(m.dest_host),
                dash(m.dest_node),
                m.state,
                dash(m.reason),
                timestamp_text(m, "updated_at"),
            ]
            for m in migrations
        ],
        [{**message_dict(m), "instance_name": names.get(m.instance_uuid, "")} for m in migrations],
    )
    return 0
