"""Plain ASCII tables in the shape of novaclient's prettytable output (+----+ borders)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell_text(value: object) -> str:
    """How one value reads in a cell: None as empty, everything else as str()."""
    return "" if value is None else str(value)


def render(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A left-aligned table; a cell with newlines spans several lines of its row."""
    # Each row becomes a list of cells, each cell a list of lines.
    body = [[cell_text(value).splitlines() or [""] for value in row] for row in rows]
    for number, row in enumerate(body):
        if len(row) != len(headers):
            raise ValueError(f"row {number} has {len(row)} cells for {len(headers)} headers")
    widths = [len(header) for header in headers]
    for row in body:
        for column, lines in enumerate(row):
            widths[column] = max(widths[column], *(len(line) for line in lines))
    rule = "+" + "+".join("-" * (width + 2) for width in widths) + "+"
    out = [rule, _line(headers, widths), rule]
    for row in body:
        for index in range(max(len(lines) for lines in row) if row else 1):
            out.append(_line([lines[index] if index < len(lines) else "" for lines in row], widths))
    # prettytable closes an empty table with a second rule right under the header.
    out.append(rule)
    return "\n".join(out)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return (
        "|"
        + "|".join(f" {cell.ljust(width)} " for cell, width in zip(cells, widths, strict=True))
        + "|"
    )
