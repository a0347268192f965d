"""Writing many rows at once: an alert's recipients, deliveries and deadlines by the
hundred thousand, at the speed of the database rather than of the ORM's unit of work.

Ids are allocated first (so a delivery can name its recipient without reading it back),
then rows go in as one INSERT ... SELECT over a JSON array on SQLite (`executemany` when a
value has no exact JSON form) and one COPY on PostgreSQL, in the caller's transaction.
Values are bound by the columns' own SQLAlchemy types, and columns a row leaves out take
the model's defaults, so a row written here reads back exactly as the ORM would have
written it. Row triggers fire for every row either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from itertools import islice, repeat
from typing import Any

from psycopg.adapt import PyFormat, Transformer
from sqlalchemy import Column, Numeric, Table, TypeDecorator, func, inspect, select, text
from sqlalchemy.engine import Connection, Dialect
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
        # One row holding them all, rather than a row per id to fetch and unpack.
        return list(session.scalar(text(
            "SELECT array(SELECT nextval(pg_get_serial_sequence(:t, 'id')) "
            "FROM generate_series(1, :n))"), {"t": tbl.name, "n": count}))
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
        self.copy = self.dialect.name == "postgresql"
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
        self.head = f"{tbl.name} ({', '.join(names)})"
        # SQLite may read a float back from JSON a unit off in its last digit (its own
        # decimal conversion, exact only where long doubles are wider than doubles).
        self.json_exact = not any(isinstance(_impl(tbl.c[name].type), Numeric)
                                  for name in names)

    def write(self, chunk: Sequence[Sequence[Any]]) -> None:
        conn = self.session.connection()
        raw: Any = conn.connection.driver_connection
        # COPY: a converted value (a timestamp, a JSON document) goes as the text COPY
        # would have made of it, made once rather than once per row.
        finish = _copy_text(raw) if self.copy else None
        # Defaults are taken once per chunk (one created_at for the rows of one write).
        fixed = [_converted([make()], proc, finish)[0]
                 for (_, make), proc in zip(self.defaults, self.default_processors,
                                            strict=True)]
        # Column by column: the rows of one tier share most converted values (one due
        # time, one state), so each distinct value is converted once per chunk.
        columns: list[Sequence[Any]] = list(zip(*chunk, strict=True))
        for i, proc in self.row_processors:
            columns[i] = _converted(columns[i], proc, finish)
        if not self.copy and self.json_exact and self._insert_select(
                conn, columns, fixed, len(chunk)):
            return
        out = list(zip(*columns, *(repeat(value, len(chunk)) for value in fixed),
                       strict=True))
        if self.copy:
            with raw.cursor() as cur, cur.copy(f"COPY {self.head} FROM STDIN") as copy:
                for record in out:
                    copy.write_row(record)
        else:
            marks = ", ".join("?" for _ in out[0])
            conn.exec_driver_sql(f"INSERT INTO {self.head} VALUES ({marks})", out)

    def _insert_select(self, conn: Connection, columns: list[Sequence[Any]],
                       fixed: list[Any], count: int) -> bool:
        """SQLite: the chunk as one INSERT ... SELECT, each value the rows share bound
        once and the others read from one JSON array of rows (binding every value of
        every row cost more than SQLite's writing it). False when some value has no exact
        JSON form, for `executemany` to write."""
        shared: list[Any] = []
        varying: list[Sequence[Any]] = []
        exprs: list[str] = []
        for col in columns:
            if col.count(col[0]) == count:
                shared.append(col[0])
                exprs.append("?")
            elif _counts_up(col):
                # Ids allocated in one range: the first is bound, each row adds its index.
                shared.append(col[0])
                exprs.append("? + key")
            else:
                exprs.append(f"value ->> {len(varying)}")
                varying.append(col)
        exprs += ["?"] * len(fixed)
        if len(varying) == 1:
            # One column: a flat array, each element read as is (taking a value out of a
            # row's array parses that row again: most of the JSON's cost).
            exprs = ["value" if e == "value ->> 0" else e for e in exprs]
        rows = sqlite_json(list(varying[0]) if len(varying) == 1
                           else list(zip(*varying, strict=True)) if varying else [0] * count)
        if rows is None:
            return False
        conn.exec_driver_sql(
            f"INSERT INTO {self.head} SELECT {', '.join(exprs)} FROM json_each(?)",
            (*shared, *fixed, rows))
        return True


def sqlite_json(value: Any) -> str | None:
    """`value` as JSON text that SQLite's JSON functions read back exactly; None when it
    has none (a value JSON cannot carry, a float that is no number, or a string holding a
    NUL: SQLite's JSON reads a string only up to one)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return None if "\\u0000" in text else text


def _counts_up(values: Sequence[Any]) -> bool:
    """Integers each one more than the one before (ids from `allocate_ids`)."""
    first = values[0]
    return (type(first) is int and set(map(type, values)) == {int}
            and list(values) == list(range(first, first + len(values))))


def _converted(values: Sequence[Any], proc: Callable[[Any], Any] | None,
               finish: Callable[[Any], Any] | None) -> list[Any]:
    """`values` bound by `proc` (then `finish`), each distinct one converted once.
    Unhashable ones (a JSON list) are remembered by identity, which holds while the
    chunk holds them."""
    if proc is None and finish is None:
        return list(values)
    memo: dict[Any, Any] = {}
    out = []
    last: Any = _MISSING
    done: Any = None
    for value in values:
        if value is not last:
            last = value
            if value is None:
                done = None
            else:
                key = (id(value),) if isinstance(value, list | dict) else value
                done = memo.get(key, _MISSING)
                if done is _MISSING:
                    done = value if proc is None else proc(value)
                    if finish is not None and done is not None:
                        done = finish(done)
                    memo[key] = done
        out.append(done)
    return out


def _copy_text(raw: Any) -> Callable[[Any], Any]:
    """The text COPY sends for a bound value, by the connection's own dumpers (so a JSON
    document is serialized as the driver would, and a timestamp keeps its zone)."""
    tx = Transformer(raw)

    def text(value: Any) -> Any:
        if isinstance(value, str | int):
            return value
        dumped = tx.get_dumper(value, PyFormat.TEXT).dump(value)
        return None if dumped is None else bytes(dumped).decode()
    return text


def _impl(kind: Any) -> Any:
    return kind.impl if isinstance(kind, TypeDecorator) else kind


def _default_of(col: Column[Any]) -> Callable[[], Any]:
    default: Any = col.default
    if default.is_callable:
        return lambda: default.arg({})
    value = default.arg
    return lambda: value
