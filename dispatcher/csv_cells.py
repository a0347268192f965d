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


def safe_cell(value: Any) -> Any:
    """`value`, or for text a spreadsheet would evaluate, that text behind an apostrophe.
    Numbers are left alone: -5 is a number, not a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    """A CSV document (header first) with every cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(list(header))
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return out.getvalue()
