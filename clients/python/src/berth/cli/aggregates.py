"""aggregate-create, -delete, -list, -show, -add-host, -remove-host, -set-metadata."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from berth.cli.output import Output, UsageError, dash, message_dict
from berth.v1 import registry_pb2 as pb

LIST_COLUMNS = ("ID", "Name", "Availability Zone")
SHOW_COLUMNS = ("ID", "Name", "Availability Zone", "Hosts", "Metadata")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the aggregate-* sub-commands to `sub` (argparse's subparsers object)."""
    p = sub.add_parser("aggregate-create", parents=[common], help="Create a host aggregate.")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "availability_zone", metavar="AZ", nargs="?", default="", help="Make it this zone."
    )
    p.set_defaults(func=aggregate_create, client="registry")

    p = sub.add_parser("aggregate-delete", parents=[common], help="Delete an empty aggregate.")
    p.add_argument("aggregate", metavar="NAME", help="Name or UUID of the aggregate.")
    p.set_defaults(func=aggregate_delete, client="registry")

    p = sub.add_parser("aggregate-list", parents=[common], help="List aggregates.")
    p.set_defaults(func=aggregate_list, client="registry")

    p = sub.add_parser("aggregate-show", parents=[common], help="Show one aggregate.")
    p.add_argument("aggregate", metavar="NAME", help="Name or UUID of the aggregate.")
    p.set_defaults(func=aggregate_show, client="registry")

    p = sub.add_parser(
        "aggregate-update", parents=[common], help="Rename an aggregate or change its zone."
    )
    p.add_argument("aggregate", metavar="NAME", help="Name or UUID of the aggregate.")
    p.add_argument("--name", dest="new_name", default="", help="Its new name.")
    p.add_argument(
        "--availability-zone",
        default=None,
        metavar="AZ",
        help='Its new availability zone ("" for none).',
    )
    p.set_defaults(func=aggregate_update, client="registry")

    p = sub.add_parser("aggregate-add-host", parents=[common], help="Add a host to an aggregate.")
    p.add_argument("aggregate", metavar="NAME", help="Name or UUID of the aggregate.")
    p.add_argument("host", metavar="HOST")
    p.set_defaults(func=aggregate_add_host, client="registry")

    p = sub.add_parser(
        "aggregate-remove-host", parents=[common], help="Remove a host from an aggregate."
    )
    p.add_argument("aggregate", metavar="NAME", help="Name or UUID of the aggregate.")
    p.add_argument("host", metavar="HOST")
    p.set_defaults(func=aggregate_remove_host, client="registry")

    p = sub.add_parser(
        "aggregate-set-metadata", parents=[common], help="Set or remove aggregate metadata."
    )
    p.add_argument("aggregate", metavar="NAME", help="Name or UUID of the aggregate.")
    p.add_argument(
        "metadata", metavar="KEY=VALUE", nargs="+", help="Set KEY; KEY= with no value removes it."
    )
    p.set_defaults(func=aggregate_set_metadata, client="registry")


def parse_metadata(pairs: Sequence[str]) -> dict[str, str]:
    """`["k=v", "gone="]` -> `{"k": "v", "gone": ""}`; the empty value asks for removal."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{pair!r} is not KEY=VALUE (KEY= removes KEY)")
        metadata[key.strip()] = value
    return metadata


def aggregate_row(aggregate: pb.Aggregate) -> list[object]:
    # novaclient quotes list items this way: 'host1', 'host2' and 'key=value'.
    hosts = ", ".join(f"'{host}'" for host in aggregate.hosts)
    metadata = ", ".join(f"'{key}={aggregate.metadata[key]}'" for key in sorted(aggregate.metadata))
    return [aggregate.uuid, aggregate.name, dash(aggregate.availability_zone), hosts, metadata]


def _show(out: Output, aggregate: pb.Aggregate) -> None:
    out.table(SHOW_COLUMNS, [aggregate_row(aggregate)], message_dict(aggregate))


def aggregate_create(client: Any, args: argparse.Namespace, out: Output) -> int:
    _show(out, client.create_aggregate(args.name, availability_zone=args.availability_zone))
    return 0


def aggregate_delete(client: Any, args: argparse.Namespace, out: Output) -> int:
    client.delete_aggregate(args.aggregate)
    out.note(f"Aggregate {args.aggregate} has been successfully deleted.")
    if out.json_mode:
        out.json({"deleted": args.aggregate})
    return 0


def aggregate_list(client: Any, args: argparse.Namespace, out: Output) -> int:
    aggregates = sorted(client.list_aggregates(), key=lambda aggregate: aggregate.name)
    out.table(
        LIST_COLUMNS,
        [aggregate_row(aggregate)[:3] for aggregate in aggregates],
        [message_dict(aggregate) for aggregate in aggregates],
    )
    return 0


def aggregate_show(client: Any, args: argparse.Namespace, out: Output) -> int:
    _show(out, client.get_aggregate(args.aggregate))
    return 0


def aggregate_update(client: Any, args: argparse.Namespace, out: Output) -> int:
    if not args.new_name and args.availability_zone is None:
        raise UsageError("give --name, --availability-zone, or both")
    aggregate = client.update_aggregate(
        args.aggregate, name=args.new_name, availability_zone=args.availability_zone
    )
    out.note(f"Aggregate {aggregate.name} has been successfully updated.")
    _show(out, aggregate)
    return 0


def aggregate_add_host(client: Any, args: argparse.Namespace, out: Output) -> int:
    aggregate = client.add_aggregate_host(args.aggregate, args.host)
    out.note(f"Host {args.host} has been successfully added for aggregate {aggregate.name}")
    _show(out, aggregate)
    return 0


def aggregate_remove_host(client: Any, args: argparse.Namespace, out: Output) -> int:
    aggregate = client.remove_aggregate_host(args.aggregate, args.host)
    out.note(f"Host {args.host} has been successfully removed from aggregate {aggregate.name}")
    _show(out, aggregate)
    return 0


def aggregate_set_metadata(client: Any, args: argparse.Namespace, out: Output) -> int:
    metadata = parse_metadata(args.metadata)
    _show(out, client.set_aggregate_metadata(args.aggregate, metadata))
    return 0
