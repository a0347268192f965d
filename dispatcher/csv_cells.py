"""CSV for spreadsheets: untrusted text is never a formula.

A volunteer's name, a reply or a login name that starts with `=`, `+`, `-`, `@`, a tab
or a carriage return is read as a formula by Excel, LibreOffice and Google Sheets
(CSV injection). Every CSV the engine writes for officers (the report, the audit
trail) goes through `csv_text`, which prefixes such text with an apostrophe: shown
as typed, never evaluated.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from itertools import chain, repeat
from typing import Any

#: First characters a spreadsheet takes as the start of a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_row(row: Iterable[Any]) -> list[Any]:
    """Each cell of `row` as it is, or for text a spreadsheet would evaluate, that text
    behind an apostrophe. Numbers are left alone: -5 is a number, not a formula. (One
    expression a row, not a call a cell: 660,000 calls were most of a report's CSV.)"""
    return [("'" + v if v.startswith(FORMULA_STARTS) else v) if isinstance(v, str) else v
            for v in row]


#: Joins a column's cells to look for formulas in one search: a cell that starts like one
#: is the whole text's start or follows this character.
_SEP = "\x00"
#: A cell (after the first) that starts like a formula, in a column's cells joined by `_SEP`.
_FORMULA_AFTER_SEP = re.compile(re.escape(_SEP) + "[" + re.escape("".join(FORMULA_STARTS)) + "]")
assert all(len(start) == 1 for start in FORMULA_STARTS)  # the class above: one character each


def safe_column(values: list[Any]) -> list[Any]:
    """The cells of one column made safe (`safe_row`), looked at in bulk: a column of text
    in which no cell starts like a formula (a report's zones, states, outcomes) comes back
    as it is, after one search instead of a look at each cell."""
    try:
        joined = _SEP.join(values)
    except TypeError:  # numbers among the cells: one by one
        return safe_row(values)
    if joined.startswith(FORMULA_STARTS) or _FORMULA_AFTER_SEP.search(joined):
        return safe_row(values)
    return values


def safe_cell(value: Any) -> Any:
    """One cell made safe (`safe_row`)."""
    return safe_row((value,))[0]


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A CSV document (header first) with every cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(header))
    writer.writerows(map(safe_row, rows))
    return out.getvalue()


#: What makes the csv module quote a cell (the excel dialect `csv_text` writes): the
#: delimiter, the quote character, a line break.
_NEEDS_QUOTES = re.compile('[,"\r\n]')


def _csv_cells(values: list[Any]) -> list[Any]:
    """One column's cells made safe (`safe_column`) and as the csv module writes them: text
    as it is (quoted only where `_NEEDS_QUOTES`, its quotes doubled), None as nothing, a
    float as its repr, any other value as its str."""
    values = safe_column(values)
    try:
        joined = _SEP.join(values)
    except TypeError:  # numbers among the text
        values = [v if isinstance(v, str) else "" if v is None
                  else repr(v) if isinstance(v, float) else str(v) for v in values]
        joined = _SEP.join(values)
    if _NEEDS_QUOTES.search(joined) is None:
        return values
    if '"' not in joined and "\r" not in joined and "\n" not in joined:  # commas only
        return ['"' + v + '"' if "," in v else v for v in values]
    return ['"' + v.replace('"', '""') + '"' if _NEEDS_QUOTES.search(v) else v for v in values]


def csv_columns_text(header: Iterable[str], columns: list[list[Any]]) -> str:
    """What `csv_text` writes, of these columns (each a list of one cell per row): for many
    rows (a report's 60,000 volunteers), the cells checked and written a column at a time
    (`_csv_cells`) and the rows joined in one call; the csv module's writer,
    a call per row, was most of the time. `tests/test_csv_cells.py` holds them equal."""
    out = io.StringIO()
    csv.writer(out).writerow(list(header))
    if len(columns) < 2:  # a lone empty cell is written as "" by the csv module: its rule
        csv.writer(out).writerows(zip(*map(safe_column, columns), strict=True))
        return out.getvalue()
    if len({len(column) for column in columns}) > 1:
        raise ValueError("CSV columns of different lengths")
    cells: list[Iterable[Any]] = []
    for column in columns:
        cells += (_csv_cells(column), repeat(","))
    cells[-1] = repeat("\r\n")
    # The separators repeat without end: the columns end the rows.
    out.write("".join(chain.from_iterable(zip(*cells, strict=False))))
    return out.getvalue()
