"""host-update: enable / disable a host's compute service, or enter / leave maintenance mode
with the progress of moving its instances away."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from berth.cli.output import Output, UsageError, message_dict
from berth.v1 import host_pb2 as pb

_STATUS = {"enable": pb.HOST_STATUS_ENABLED, "disable": pb.HOST_STATUS_DISABLED}
_MODE = {"enable": pb.MAINTENANCE_MODE_ENABLED, "disable": pb.MAINTENANCE_MODE_DISABLED}
_BAR = 30  # characters of the progress bar


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add host-update to `sub` (argparse's subparsers object)."""
    p = sub.add_parser(
        "host-update",
        parents=[common],
        help="Enable or disable a host, or put it in (or out of) maintenance mode.",
        description="--status enables or disables the host's compute service. --maintenance "
        "enable disables it (reason 'maintenance') and moves every instance to another host "
        "of the host's aggregates, showing progress; instances that cannot move stay and are "
        "listed (exit code 1). Asking again retries them and resumes moves cut short. "
        "--maintenance disable enables the service again; nothing moves back.",
    )
    p.add_argument("host", metavar="HOST", help="Host name.")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--status", choices=sorted(_STATUS), help="Enable or disable the host.")
    which.add_argument(
        "--maintenance", choices=sorted(_MODE), help="Enter (enable) or leave maintenance mode."
    )
    p.add_argument("--reason", default="", help="Why the host is disabled (--status disable).")
    p.set_defaults(func=host_update, client="hosts")


def host_update(client: Any, args: argparse.Namespace, out: Output) -> int:
    if args.reason and args.status != "disable":
        raise UsageError("--reason goes with --status disable")
    if args.status:
        stream = client.update_host(
            args.host, status=_STATUS[args.status], disabled_reason=args.reason
        )
    else:
        stream = client.update_host(args.host, maintenance_mode=_MODE[args.maintenance])
    err: TextIO = getattr(args, "stderr", sys.stderr)
    show = _Progress(err, enabled=bool(args.maintenance) and not out.json_mode)
    last: pb.UpdateHostResponse | None = None
    for message in stream:
        last = message
        if out.json_mode:  # one object per event, one per line, fields in the proto's order
            fields = message_dict(message)
            ordered = {
                f.name: fields[f.name] for f in message.DESCRIPTOR.fields if f.name in fields
            }
            print(json.dumps(ordered), file=out.stream, flush=True)
        else:
            show.update(message)
    show.end()
    if last is None:
        raise RuntimeError("the registry ended host-update without an answer")
    if not out.json_mode:
        _summary(last, out, moves=bool(args.maintenance))
    return 1 if last.failures else 0


def _name(enum: Any, value: int) -> str:
    """HOST_STATUS_ENABLED -> enabled."""
    return str(enum.Name(value)).rsplit("_", 1)[-1].lower()


def _summary(last: pb.UpdateHostResponse, out: Output, *, moves: bool) -> None:
    headers = ["host", "status", "maintenance_mode"]
    row: list[object] = [
        last.host,
        _name(pb.HostStatus, last.status),
        _name(pb.MaintenanceMode, last.maintenance_mode),
    ]
    if moves:
        headers += ["moved", "stayed"]
        row += [last.moved, len(last.failures)]
    out.table(headers, [row], None)
    if last.failures:
        out.note("")
        out.table(
            ("instance_uuid", "reason"),
            [[f.instance_uuid, f.reason] for f in last.failures],
            None,
        )


class _Progress:
    """A bar redrawn in place on a terminal; a line per change otherwise."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = enabled and hasattr(stream, "isatty") and stream.isatty()
        self.last = ""

    def update(self, message: pb.UpdateHostResponse) -> None:
        if not self.enabled:
            return
        moved, stayed, remaining = message.moved, len(message.failures), message.remaining
        total = moved + stayed + remaining
        text = f"{moved}/{total} moved, {stayed} stayed, {remaining} remaining"
        if message.waiting:
            until = message.waiting_until.ToDatetime().strftime("%H:%M:%S UTC")
            text += f"; waiting: {message.waiting} until {until}"
        if text == self.last:
            return
        self.last = text
        if self.tty:
            done = (moved + stayed) / total if total else 1.0
            filled = round(done * _BAR)
            bar = "#" * filled + "." * (_BAR - filled)
            print(f"\r{message.host} [{bar}] {text}", end="", file=self.stream, flush=True)
        else:
            print(f"{message.host}: {text}", file=self.stream, flush=True)

    def end(self) -> None:
        if self.tty and self.last:
            print(file=self.stream, flush=True)
