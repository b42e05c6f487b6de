"""Where a command's results go: a table for people, or JSON, CSV or bare values for
scripts (`-f json|csv|value`, as OpenStack's CLI), with `-c` and `--sort-column`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Any, TextIO

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from berth.cli.table import cell_text, render

FORMATS = ("table", "json", "csv", "value")
PROPERTY_COLUMNS = ("Property", "Value")


class UsageError(Exception):
    """Arguments argparse accepted but that make no sense together; exits 2 like argparse."""


class Output:
    """Commands write through this so the output format stays one decision."""

    def __init__(
        self,
        stream: TextIO,
        *,
        json_mode: bool = False,
        format: str | None = None,
        columns: Sequence[str] = (),
        sort_columns: Sequence[str] = (),
    ) -> None:
        self.stream = stream
        self.format = format or ("json" if json_mode else "table")
        self.columns = list(columns)
        self.sort_columns = list(sort_columns)

    @property
    def json_mode(self) -> bool:
        return self.format == "json"

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[object]], data: object) -> None:
        """Print `rows` under `headers` (as a table, CSV or bare values), or `data` (already
        JSON-ready: a list of one object per row, or one object) as JSON.

        --sort-column orders the JSON objects as it orders the rows; with -c, JSON is one
        object per row keyed by the chosen headers, as OpenStack's CLI prints it."""
        headers = list(headers)
        cells = [list(row) for row in rows]
        order = self._order(headers, cells)
        if isinstance(data, list) and len(data) == len(cells):
            data = [data[i] for i in order]
        cells = [cells[i] for i in order]
        if self.columns:
            picked = [_column(headers, name) for name in self.columns]
            headers = [headers[i] for i in picked]
            cells = [[row[i] for i in picked] for row in cells]
            if self.json_mode:
                data = [dict(zip(headers, row, strict=True)) for row in cells]
        if self.json_mode:
            self.json(data)
        elif self.format == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
            writer.writerow(headers)
            writer.writerows([[_csv_cell(v) for v in row] for row in cells])
            self.stream.write(buffer.getvalue())
        elif self.format == "value":
            for row in cells:
                print(" ".join(cell_text(v) for v in row), file=self.stream)
        else:
            print(render(headers, cells), file=self.stream)

    def properties(self, items: Sequence[tuple[str, object]], data: dict[str, Any]) -> None:
        """One object as Property/Value rows, or `data` as JSON. -c picks properties, as
        OpenStack's CLI does for a single object (`-c vcpus -f value` prints the number)."""
        if self.columns:
            names = [name for name, _ in items]
            items = [items[_column(names, name)] for name in self.columns]
            data = dict(items)
        if self.json_mode:
            self.json(data)
        elif self.format == "value":
            for _, value in items:
                print(cell_text(value), file=self.stream)
        else:
            Output(self.stream, format=self.format).table(PROPERTY_COLUMNS, items, None)

    def _order(self, headers: list[str], rows: list[list[object]]) -> list[int]:
        """Row indexes in --sort-column order (stable: ties keep the command's order)."""
        order = list(range(len(rows)))
        for name in reversed(self.sort_columns):  # the first column sorts last
            index = _column(headers, name)
            order.sort(key=lambda i: _sort_key(rows[i][index]))
        return order

    def json(self, data: object) -> None:
        print(json.dumps(data, indent=2, sort_keys=False), file=self.stream)

    def note(self, text: str) -> None:
        """A sentence for people; left out of machine-readable output."""
        if self.format == "table":
            print(text, file=self.stream)


def _column(headers: Sequence[str], name: str) -> int:
    """A column by its header, case and spaces aside (`-c "Host Name"`, `-c host_name`)."""
    wanted = _plain(name)
    for index, header in enumerate(headers):
        if _plain(header) == wanted:
            return index
    raise UsageError(f"no column {name!r}; the columns are: {', '.join(headers)}")


def _plain(name: str) -> str:
    return name.lower().replace(" ", "_").replace("-", "_")


def _sort_key(value: object) -> tuple[int, Any]:
    """Numbers by value, before text; text as text; empty cells last."""
    if value is None or value == "":
        return (2, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    text = str(value)
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)


def _csv_cell(value: object) -> object:
    return (
        value
        if isinstance(value, int | float) and not isinstance(value, bool)
        else cell_text(value)
    )


# Integer fields json_format writes as strings (JSON numbers lose precision past 2**53;
# Berth's counts and sizes never get there, and scripts want numbers).
_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def message_dict(message: Message) -> dict[str, Any]:
    """A proto message as a JSON-ready dict: field names as in the .proto, defaults
    included, 64-bit integers as numbers, and enums as the words the tables show
    (`INSTANCE_STATE_ACTIVE` -> `active`)."""
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _plain_values(message.DESCRIPTOR, data)


def _plain_values(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        convert = _converter(field)
        if convert is None:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            inner = _converter(value_field)
            if inner is not None:
                data[field.name] = {k: inner(v) for k, v in value.items()}
        elif field.is_repeated:
            data[field.name] = [convert(v) for v in value]
        else:
            data[field.name] = convert(value)
    return data


def _converter(field: FieldDescriptor) -> Any:
    if field.type in _INT64:
        return int
    enum, message = field.enum_type, field.message_type
    if field.type == FieldDescriptor.TYPE_ENUM and enum is not None:
        return lambda name: enum_word(enum.name, name)
    if message is not None and message.full_name.startswith("berth."):
        return lambda value: _plain_values(message, value)
    return None


# Enums whose words Nova writes with dashes (`--group-policy anti-affinity`).
_DASHED = frozenset({"GroupPolicy"})


def enum_word(enum_name: str, value: str) -> str:
    """An enum value name without its type's prefix, lower case: what the tables show
    (`InstanceState`, `INSTANCE_STATE_ACTIVE` -> `active`; `GroupPolicy`,
    `GROUP_POLICY_ANTI_AFFINITY` -> `anti-affinity`; unspecified -> "")."""
    prefix = "".join(f"_{c}" if c.isupper() else c for c in enum_name).lstrip("_").upper() + "_"
    word = str(value).removeprefix(prefix).lower()
    if word == "unspecified":
        return ""
    return word.replace("_", "-") if enum_name in _DASHED else word


def timestamp_text(message: Message, field: str) -> str:
    """A Timestamp field the way novaclient shows times (UTC, microseconds), or '-' if unset."""
    if not message.HasField(field):
        return "-"
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def dash(text: str) -> str:
    """novaclient shows '-' for an empty value."""
    return text or "-"
