"""Where a command's results go: a table for people, or JSON on stdout with --json."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from berth.cli.table import render


class UsageError(Exception):
    """Arguments argparse accepted but that make no sense together; exits 2 like argparse."""


class Output:
    """Commands write through this so --json and table output stay one decision."""

    def __init__(self, stream: TextIO, *, json_mode: bool = False) -> None:
        self.stream = stream
        self.json_mode = json_mode

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[object]], data: object) -> None:
        """Print `rows` under `headers`, or `data` (already JSON-ready) with --json."""
        if self.json_mode:
            self.json(data)
        else:
            print(render(headers, rows), file=self.stream)

    def json(self, data: object) -> None:
        print(json.dumps(data, indent=2, sort_keys=False), file=self.stream)

    def note(self, text: str) -> None:
        """A sentence for people; left out of --json output so it stays parseable."""
        if not self.json_mode:
            print(text, file=self.stream)


def message_dict(message: Message) -> dict[str, Any]:
    """A proto message as a JSON-ready dict, field names as in the .proto, defaults included."""
    return json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


def timestamp_text(message: Message, field: str) -> str:
    """A Timestamp field the way novaclient shows times (UTC, microseconds), or '-' if unset."""
    if not message.HasField(field):
        return "-"
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def dash(text: str) -> str:
    """novaclient shows '-' for an empty value."""
    return text or "-"
