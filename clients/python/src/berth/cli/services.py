"""service-list, service-enable, service-disable, service-force-down, service-delete."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from berth.cli.output import Output, UsageError, dash, message_dict, timestamp_text
from berth.client.registry import looks_like_uuid
from berth.v1 import registry_pb2 as pb

# novaclient: Id, Binary, Host, Zone, Status, State, Updated_at, Disabled Reason, Forced down.
LIST_COLUMNS = (
    "ID",
    "Binary",
    "Host",
    "Zone",
    "Status",
    "State",
    "Updated At",
    "Disabled Reason",
    "Forced Down",
)


# Nova's binaries, and what Berth calls the process that does the same work.
NOVA_BINARIES = {
    "nova-compute": "berth-compute",
    "nova-scheduler": "berth-scheduler",
    "nova-conductor": "berth-registry",
    "nova-api": "berth-registry",
    "nova-placement-api": "berth-node",
}


def binary_name(value: str) -> str:
    """A binary as given; one named like Nova's gets a hint to Berth's name instead of
    matching nothing."""
    if value in NOVA_BINARIES:
        raise argparse.ArgumentTypeError(
            f"{value!r} is Nova's; Berth's is {NOVA_BINARIES[value]!r}"
        )
    return value


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the service-* sub-commands to `sub` (argparse's subparsers object)."""
    p = sub.add_parser("service-list", parents=[common], help="List Berth processes.")
    p.add_argument("--host", default="", help="Only services on this host.")
    p.add_argument("--binary", default="", type=binary_name, help="Only services of this binary.")
    p.set_defaults(func=service_list, client="registry")

    p = sub.add_parser("service-enable", parents=[common], help="Enable a service.")
    _add_ref(p)
    p.set_defaults(func=service_enable, client="registry")

    p = sub.add_parser("service-disable", parents=[common], help="Disable a service.")
    _add_ref(p)
    p.add_argument("--reason", default="", help="Why the service is disabled.")
    p.set_defaults(func=service_disable, client="registry")

    p = sub.add_parser(
        "service-force-down", parents=[common], help="Report a service down (fence it)."
    )
    _add_ref(p)
    p.add_argument("--unset", action="store_true", help="Clear forced down instead.")
    p.set_defaults(func=service_force_down, client="registry")

    p = sub.add_parser("service-delete", parents=[common], help="Delete a service.")
    p.add_argument(
        "service", nargs="+", metavar="UUID_OR_HOST_BINARY", help="UUID, or HOST BINARY."
    )
    p.set_defaults(func=service_delete, client="registry")


def _add_ref(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", nargs="?", help="Host name of the service.")
    parser.add_argument(
        "binary", nargs="?", type=binary_name, help="Binary of the service (e.g. berth-compute)."
    )
    parser.add_argument("--uuid", help="Name the service by uuid instead of HOST BINARY.")


def service_ref(args: argparse.Namespace) -> dict[str, str]:
    """Keyword arguments naming the service: uuid=..., or host=... and binary=..."""
    if args.uuid:
        if args.host or args.binary:
            raise UsageError("give HOST BINARY or --uuid, not both")
        return {"uuid": args.uuid}
    if not (args.host and args.binary):
        raise UsageError("give HOST BINARY, or --uuid")
    return {"host": args.host, "binary": args.binary}


def delete_ref(words: Sequence[str]) -> dict[str, str]:
    """`UUID`, `HOST BINARY` or `"HOST BINARY"` -> keyword arguments naming the service."""
    parts = [part for word in words for part in word.split()]
    if len(parts) == 1 and looks_like_uuid(parts[0]):
        return {"uuid": parts[0]}
    if len(parts) == 2:
        try:
            return {"host": parts[0], "binary": binary_name(parts[1])}
        except argparse.ArgumentTypeError as exc:
            raise UsageError(str(exc)) from None
    raise UsageError("give the service's UUID, or its HOST and BINARY")


def service_row(service: pb.Service) -> list[object]:
    return [
        service.uuid,
        service.binary,
        service.host,
        dash(service.availability_zone),
        "disabled" if service.disabled else "enabled",
        "up" if service.up else "down",
        timestamp_text(service, "last_seen_up"),
        dash(service.disabled_reason),
        service.forced_down,
    ]


def service_list(client: Any, args: argparse.Namespace, out: Output) -> int:
    services = sorted(
        client.list_services(host=args.host, binary=args.binary),
        key=lambda service: (service.host, service.binary),
    )
    out.table(
        LIST_COLUMNS,
        [service_row(service) for service in services],
        [message_dict(service) for service in services],
    )
    return 0


def _show_one(out: Output, service: pb.Service, columns: Sequence[str]) -> None:
    row = dict(zip(LIST_COLUMNS, service_row(service), strict=True))
    out.table(columns, [[row[column] for column in columns]], message_dict(service))


def service_enable(client: Any, args: argparse.Namespace, out: Output) -> int:
    service = client.enable_service(**service_ref(args))
    _show_one(out, service, ("ID", "Host", "Binary", "Status"))
    return 0


def service_disable(client: Any, args: argparse.Namespace, out: Output) -> int:
    service = client.disable_service(**service_ref(args), reason=args.reason)
    _show_one(out, service, ("ID", "Host", "Binary", "Status", "Disabled Reason"))
    return 0


def service_force_down(client: Any, args: argparse.Namespace, out: Output) -> int:
    service = client.force_down(**service_ref(args), unset=args.unset)
    _show_one(out, service, ("ID", "Host", "Binary", "Forced Down"))
    return 0


def service_delete(client: Any, args: argparse.Namespace, out: Output) -> int:
    ref = delete_ref(args.service)
    client.delete_service(**ref)
    # novaclient prints nothing; --json still answers with an object saying what went.
    if out.json_mode:
        out.json({"deleted": ref})
    return 0
