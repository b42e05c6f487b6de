"""berth.cli.table draws novaclient-shaped ASCII tables."""

from __future__ import annotations

import pytest
from berth.cli.table import render


def test_a_table_has_rules_above_and_below_the_header_and_at_the_end():
    text = render(["Id", "Binary"], [["1", "berth-compute"], ["22", "x"]])

    assert text == "\n".join(
        [
            "+----+---------------+",
            "| Id | Binary        |",
            "+----+---------------+",
            "| 1  | berth-compute |",
            "| 22 | x             |",
            "+----+---------------+",
        ]
    )


def test_an_empty_table_still_shows_its_header_like_prettytable():
    assert render(["host_name", "zone"], []) == "\n".join(
        [
            "+-----------+------+",
            "| host_name | zone |",
            "+-----------+------+",
            "+-----------+------+",
        ]
    )


def test_none_reads_as_empty_and_other_values_as_str():
    text = render(["a", "b", "c"], [[None, True, 3]])

    assert "|   | True | 3 |" in text


def test_a_cell_with_newlines_spans_several_lines_of_its_row():
    text = render(["Name", "Hosts"], [["rack1", "cmp1\ncmp22"]])

    assert text.splitlines()[3:5] == ["| rack1 | cmp1  |", "|       | cmp22 |"]


def test_a_row_with_the_wrong_number_of_cells_is_refused():
    with pytest.raises(ValueError, match="row 0"):
        render(["a", "b"], [["only one"]])
