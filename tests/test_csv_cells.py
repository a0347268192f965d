"""CSV the engine writes for officers: text from outside is never a spreadsheet formula."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.csv_cells import (
    FORMULA_STARTS,
    csv_columns_text,
    csv_text,
    safe_cell,
    safe_column,
    safe_row,
)
from dispatcher.reports.csv_export import render_csv

HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\r=1"]


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


@given(st.text())
def test_no_text_cell_starts_like_a_formula(value: str) -> None:
    cell = safe_cell(value)
    assert not cell.startswith(FORMULA_STARTS)
    assert cell.removeprefix("'") == value or cell == value


def test_numbers_stay_numbers() -> None:
    assert safe_cell(-5) == -5 and safe_cell(2.5) == 2.5


def test_report_csv_neutralises_names_and_replies() -> None:
    volunteers = [{"zone": "Oaxaca", "tier": 1, "name": name, "state": "acknowledged",
                   "channels_tried": ["sms"], "delivery_outcome": "delivered",
                   "error_codes": [], "time_to_ack_seconds": 12, "acknowledged_via": "sms",
                   "reply": {"text": name}, "contact": "+52******1001"} for name in HOSTILE]
    rows = _cells(render_csv({"volunteers": volunteers}))[1:]
    for row, name in zip(rows, HOSTILE, strict=True):
        assert row[2] == "'" + name and row[9] == "'" + name
        assert row[7] == "12"


def test_csv_text_writes_header_and_rows() -> None:
    assert _cells(csv_text(["a", "b"], [["=1", 2]])) == [["a", "b"], ["'=1", "2"]]


#: Text that starts like a formula or holds the character `safe_column` joins cells with.
_TRICKY = st.lists(st.sampled_from([*FORMULA_STARTS, "\x00", "a", " ", "'"]), max_size=4).map(
    "".join)


@given(st.lists(st.one_of(st.text(), _TRICKY, st.integers(), st.floats(allow_nan=False))))
def test_a_column_is_made_safe_as_its_cells_are(column: list[object]) -> None:
    """The bulk check of a column gives what each cell's own check gives."""
    assert safe_column(list(column)) == safe_row(column)


_CELL = st.one_of(st.text(), _TRICKY, st.sampled_from(["", ",", '"', "\r", "\n", 'a"b,c']),
                  st.integers(), st.floats(), st.none(), st.booleans())


@given(st.integers(1, 4).flatmap(lambda width: st.lists(
    st.lists(_CELL, min_size=width, max_size=width), max_size=6)))
def test_csv_columns_text_writes_what_csv_text_writes(rows: list[list[object]]) -> None:
    """The report's writer, a column at a time, against the csv module's, a row at a time:
    quoting, empty cells, numbers, formulas."""
    width = len(rows[0]) if rows else 2
    header = [f"h{i}" for i in range(width)]
    columns = [list(column) for column in zip(*rows, strict=True)] or [[]] * width
    assert csv_columns_text(header, columns) == csv_text(header, rows)
