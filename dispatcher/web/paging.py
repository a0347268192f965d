"""Pages of the API's lists: a bounded `limit` and an opaque cursor, newest first.

A cursor names a position in a list ordered by a key that only grows (row ids), so a
page never repeats or skips a row when others are inserted while a client pages: new
rows land before the first page, never between two. Any string of the documented form
is a valid position (a position past every row is simply the start), so a cursor can
neither fail nor carry an overflow into a query.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel, Field

from dispatcher.web.limits import MAX_ROW_ID

#: A page holds at most this many rows, and this many when no `limit` is given.
MAX_PAGE = 500
DEFAULT_PAGE = 100
#: A cursor: one or two base-36 numbers joined by a dot (clients treat it as opaque).
CURSOR_PATTERN = r"^[0-9a-z]{1,7}(\.[0-9a-z]{1,7})?$"

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=(
    f"rows per page, 1..{MAX_PAGE} (default {DEFAULT_PAGE})"))]
Cursor = Annotated[str | None, Query(max_length=15, pattern=CURSOR_PATTERN, description=(
    "`next_cursor` of the previous page; omit for the first (newest) page"))]


class Page(BaseModel):
    """Common to every page: where the next one starts (null on the last page)."""

    next_cursor: str | None = Field(description="pass as `cursor` for the next page; "
                                                "null when this is the last page")


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def encode(*parts: int) -> str:
    """The cursor for a position given by the key of the last row a page showed."""
    return ".".join(_b36(p) for p in parts)


def decode(cursor: str | None, width: int) -> tuple[int | None, ...]:
    """The position a cursor names, one part per key (`width`); a part past every database
    integer is None: no bound on that key (before every row), never an overflow."""
    parts: list[int | None] = [None] * width
    if cursor is not None:
        for i, text in enumerate(cursor.split(".")[:width]):
            value = int(text, 36)
            parts[i] = value if value <= MAX_ROW_ID else None
    return tuple(parts)


def next_cursor(rows: list[tuple[int, ...]], limit: int) -> str | None:
    """The cursor after the last of `rows` (one more than `limit` were fetched: a full page
    only says there is more when the extra row exists)."""
    return encode(*rows[limit - 1]) if len(rows) > limit else None
