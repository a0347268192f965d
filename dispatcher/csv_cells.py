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
from collections.abc import Iterable
from typing import Any

#: First characters a spreadsheet takes as the start of a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_row(row: Iterable[Any]) -> list[Any]:
    """Each cell of `row` as it is, or for text a spreadsheet would evaluate, that text
    behind an apostrophe. Numbers are left alone: -5 is a number, not a formula. (One
    expression a row, not a call a cell: 660,000 calls were most of a report's CSV.)"""
    return [("'" + v if v.startswith(FORMULA_STARTS) else v) if isinstance(v, str) else v
            for v in row]


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
