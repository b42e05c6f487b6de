"""novaclient's tables: prettytable (as novaclient draws them), every column left-aligned."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prettytable import PrettyTable


def cell_text(value: object) -> str:
    """How one value reads in a cell: None as empty, everything else as str()."""
    return "" if value is None else str(value)


def render(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A left-aligned table; a cell with newlines spans several lines of its row."""
    table = PrettyTable([str(header) for header in headers])
    table.align = "l"
    for number, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"row {number} has {len(row)} cells for {len(headers)} headers")
        table.add_row([cell_text(value) for value in row])
    return table.get_string()
