"""Writing many rows at once: an alert's recipients, deliveries and deadlines by the
hundred thousand, at the speed of the database rather than of the ORM's unit of work.

Ids are allocated first (so a delivery can name its recipient without reading it back),
then rows go in as one `executemany` on SQLite and one COPY on PostgreSQL, in the
caller's transaction. Values are bound by the columns' own SQLAlchemy types, and
columns a row leaves out take the model's defaults, so a row written here reads back
exactly as the ORM would have written it. Row triggers fire for every row either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import Column, Table, func, inspect, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from dispatcher.models import Base, table

#: Rows handed to the driver per call: bounds the memory of one write, not its speed.
CHUNK_ROWS = 5000
_MISSING = object()


def allocate_ids(session: Session, model: type[Base], count: int) -> list[int]:
    """`count` fresh primary keys of `model`'s table, for rows written in this transaction.

    SQLite: the transaction holds the write lock (`BEGIN IMMEDIATE`, see `dispatcher.db`),
    so the ids after the largest are ours alone, exactly those SQLite would have given.
    PostgreSQL: taken from the table's sequence, so concurrent writers never collide.
    """
    if count <= 0:
        return []
    tbl = table(model)
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(text(
            "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": tbl.name, "n": count})
        return [r[0] for r in rows]
    last = session.scalar(select(func.max(tbl.c.id))) or 0
    return list(range(last + 1, last + 1 + count))


def values_of(obj: Base, columns: Iterable[str]) -> dict[str, Any]:
    """`columns` of a new (never flushed) ORM object as a row for `insert`: what it was
    given, else its column's default, as a flush would have written them."""
    given = inspect(obj).dict
    tbl = table(type(obj))
    out = {}
    for name in columns:
        if name in given:
            out[name] = given[name]
        else:
            default: Any = tbl.c[name].default
            out[name] = None if default is None else _default_of(tbl.c[name])()
    return out


def insert(session: Session, model: type[Base], columns: Sequence[str],
           rows: Iterable[Sequence[Any]]) -> int:
    """Insert `rows` (each a sequence of values in the order of `columns`) into `model`'s
    table; returns how many were written."""
    it = iter(rows)
    written = 0
    writer: _Writer | None = None
    while chunk := list(islice(it, CHUNK_ROWS)):
        if writer is None:
            writer = _Writer(session, table(model), list(columns))
        writer.write(chunk)
        written += len(chunk)
    return written


class _Writer:
    """The statement and value conversions for one table and one set of columns."""

    def __init__(self, session: Session, tbl: Table, given: list[str]) -> None:
        self.session = session
        self.dialect: Dialect = session.get_bind().dialect
        # Columns the rows leave out but the model fills (state, created_at, counters...).
        self.defaults: list[tuple[str, Callable[[], Any]]] = [
            (col.name, _default_of(col)) for col in tbl.columns
            if col.name not in given and col.default is not None]
        names = given + [name for name, _ in self.defaults]
        processors: list[Callable[[Any], Any] | None] = [
            tbl.c[name].type._cached_bind_processor(self.dialect) for name in names]
        self.row_processors = [(i, p) for i, p in enumerate(processors[:len(given)])
                               if p is not None]
        self.default_processors = processors[len(given):]
        cols = ", ".join(names)
        if self.dialect.name == "postgresql":
            self.sql = f"COPY {tbl.name} ({cols}) FROM STDIN"
        else:
            marks = ", ".join("?" for _ in names)
            self.sql = f"INSERT INTO {tbl.name} ({cols}) VALUES ({marks})"

    def write(self, chunk: Sequence[Sequence[Any]]) -> None:
        # Defaults are taken once per chunk (one created_at for the rows of one write).
        fixed = tuple(value if proc is None or value is None else proc(value)
                      for (_, make), proc in zip(self.defaults, self.default_processors,
                                                 strict=True)
                      for value in (make(),))
        out: list[tuple[Any, ...]]
        if not self.row_processors:
            out = [(*row, *fixed) for row in chunk]
        else:
            # The rows of one tier share most values (one due time, one state): each
            # distinct value is converted once per chunk. Unhashable ones (a JSON list)
            # are remembered by identity, which holds while the chunk holds them.
            memos: list[dict[Any, Any]] = [{} for _ in self.row_processors]
            out = []
            for row in chunk:
                values = list(row)
                for (i, proc), memo in zip(self.row_processors, memos, strict=True):
                    value = values[i]
                    if value is None:
                        continue
                    key = (id(value),) if isinstance(value, list | dict) else value
                    done = memo.get(key, _MISSING)
                    if done is _MISSING:
                        done = memo[key] = proc(value)
                    values[i] = done
                out.append((*values, *fixed))
        conn = self.session.connection()
        if self.dialect.name == "postgresql":
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(self.sql) as copy:
                for record in out:
                    copy.write_row(record)
        else:
            conn.exec_driver_sql(self.sql, out)


def _default_of(col: Column[Any]) -> Callable[[], Any]:
    default: Any = col.default
    if default.is_callable:
        return lambda: default.arg({})
    value = default.arg
    return lambda: value
