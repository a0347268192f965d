"""A recipient as the status JSON shows it, written by the database: one JSON text per row.

An alert to 100,000 volunteers is 45 MB of JSON; built in Python (a dict per recipient, a
datetime per stamp, then the encoder) it took seconds, built by SQLite's `json_object` or
PostgreSQL's `row_to_json` (`json_build_object` for a page of the board) it is one read (a
big alert's is two halves read at once in one snapshot, on two connections).
Both databases write the same values Python did (`tests/test_status.py` holds the old
reading as the reference): ISO stamps in UTC as `datetime.isoformat` writes them,
`true`/`false`, nested lists and objects.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import Any, NamedTuple

from psycopg.pq import TransactionStatus
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    Text,
    case,
    cast,
    func,
    literal_column,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from dispatcher.db import TWIN, connection_reads_one_snapshot, fetch_plain, spare_connections
from dispatcher.domain import DUTY_OFFICER_TIER, Channel, tier_name
from dispatcher.heap import collector_paused
from dispatcher.models import Contact, Delivery, Recipient, Response, Volunteer, Zone, table

_R, _V, _Z, _C, _D, _RESP = (table(m) for m in (Recipient, Volunteer, Zone, Contact, Delivery,
                                                 Response))

#: The path whose number an officer calls: the SMS one, else WhatsApp's, else a call's.
PHONE_ORDER = (Channel.SMS, Channel.WHATSAPP, Channel.VOICE)
#: A delivery as the status JSON shows it: these keys, from these columns.
DELIVERY_KEYS = ("id", "channel", "purpose", "state", "error_code", "possibly_duplicate",
                 "attempts")
#: `datetime.isoformat` of a UTC time: microseconds only when not zero, then the offset.
_PG_STAMP, _PG_STAMP_US = 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'


#: The board's order of an alert's recipients: zone, tier, id (in SQL, and of a
#: `RecipientJson`).
BOARD_ORDER = (_R.c.zone_id, _R.c.tier, _R.c.id)
_board_order = itemgetter(1, 2, 0)


class RecipientJson(NamedTuple):
    """One recipient's row: what the zone figures count (`status.Member`), and its JSON."""

    id: int
    zone_id: int
    tier: int
    state: str
    json: str


class _Sql:
    """The few expressions the two databases write differently."""

    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite

    def obj(self, pairs: dict[str, Any]) -> ColumnElement[Any]:
        build = func.json_object if self.sqlite else func.json_build_object
        # Keys are our constants, written into the statement (PostgreSQL cannot type a
        # bound key of json_build_object).
        args: list[Any] = []
        for key, value in pairs.items():
            args += (literal_column(f"'{key}'"), value)
        return build(*args)

    def nested(self, value: Any) -> Any:
        """A JSON value from a subquery: SQLite forgets it is JSON there (a string then)."""
        return func.json(value) if self.sqlite else value

    def flag(self, value: Any) -> Any:
        """A boolean (SQLite keeps 0 and 1) of a column that is never null."""
        # json() of each constant, not of the CASE: SQLite then parses "true" and "false"
        # once per statement instead of once per row (~0.1 s of a whole alert's read).
        return case((value, func.json("true")), else_=func.json("false")) if self.sqlite \
            else value

    def stamp(self, column: Any) -> Any:
        """A UTC time as `datetime.isoformat` writes it (SQLite keeps naive UTC text with
        six digits of microseconds)."""
        if self.sqlite:
            text = type_coerce(column, String)
            whole = func.substr(text, 20).in_(("", ".000000"))
            return func.replace(case((whole, func.substr(text, 1, 19)), else_=text),
                                " ", "T").concat("+00:00")
        utc = func.timezone("UTC", column)
        return case((func.date_trunc("second", column) == column, func.to_char(utc, _PG_STAMP)),
                    else_=func.to_char(utc, _PG_STAMP_US))

    def array(self, item: Any) -> Any:
        """A recipient's JSON list of `item` over its deliveries, in id order; `[]` for
        none."""
        mine = _D.c.recipient_id == _R.c.id
        if self.sqlite:
            # Aggregated straight from the table, the objects keep their JSON subtype: the
            # list is neither joined as text and parsed again (~0.09 s of CPU time for a
            # whole alert) nor its items quoted. They come in id order: SQLite reads a
            # recipient's deliveries through the index on recipient_id, whose entries
            # with one value run in rowid (= id) order, or by a scan in rowid order (a
            # FROM subquery's ORDER BY would keep the order but lose the subtype).
            return select(func.json_group_array(item)).where(mine).scalar_subquery()
        agg = select(func.json_agg(aggregate_order_by(item, _D.c.id))).where(mine)
        return func.coalesce(agg.scalar_subquery(), _PG_EMPTY)


#: PostgreSQL's empty JSON list.
_PG_EMPTY: ColumnElement[Any] = literal_column("'[]'::json")
#: PostgreSQL settings for reading a whole alert: one hash join per table, whatever the
#: statistics say (a fresh alert's are not gathered yet, and the planner then looks up
#: 100,000 rows one by one); no JIT (its compiling costs more than it saves here); room to
#: sort the deliveries in memory. Set for that one read, in its transaction only.
_PG_WHOLE_ALERT = {"enable_nestloop": "off", "jit": "off", "work_mem": "'64MB'"}


@contextmanager
def whole_alert_plan(db: Connection) -> Iterator[None]:
    """PostgreSQL: the statements of the block are planned as reads of a whole alert
    (`_PG_WHOLE_ALERT`); after it, even when it fails, the transaction plans as usual. The
    status and the report read this way."""
    if db.dialect.name == "sqlite":
        yield
        return
    for name, value in _PG_WHOLE_ALERT.items():
        db.exec_driver_sql(f"SET LOCAL {name} = {value}")
    try:
        yield
    except BaseException:
        # A statement that failed aborted the transaction, and its settings go with it:
        # resetting them there would fail too, and raise that failure in place of the
        # statement's own (a deadlock `Database.run` retries, say).
        if _usable(db):
            _reset_plan(db)
        raise
    _reset_plan(db)


def _reset_plan(db: Connection) -> None:
    for name in _PG_WHOLE_ALERT:
        db.exec_driver_sql(f"SET LOCAL {name} TO DEFAULT")


def _usable(db: Connection) -> bool:
    """PostgreSQL: the transaction still takes statements (not failed, nor its connection
    lost or closed)."""
    if db.closed or db.invalidated:
        return False
    info = db.connection.driver_connection.info  # type: ignore[union-attr]
    return bool(info.transaction_status == TransactionStatus.INTRANS)


def _row(pairs: dict[str, Any], name: str, *of: Any) -> Any:
    """PostgreSQL: the values (of these tables' rows) as one row with these column names,
    for `row_to_json` (a quarter cheaper than `json_build_object`, which looks up every
    value's type anew)."""
    return (select(*(value.label(key) for key, value in pairs.items())).correlate(*of)
            .lateral(name))


def contact_paths(channels: Iterable[Channel]) -> dict[Channel, Any]:
    """An alias of the contacts table for each of these channels, for `join_contact_paths`."""
    return {ch: _C.alias(f"path_{ch.value}") for ch in channels}


def join_contact_paths(joined: Any, paths: dict[Channel, Any], volunteer_id: Any) -> Any:
    """`joined` (a join or a select reading `volunteer_id`) with the volunteer's contact on
    each channel of `paths`, an outer join each: at most one row, as (volunteer, channel)
    is unique."""
    for ch, path in paths.items():
        joined = joined.outerjoin(path, (path.c.volunteer_id == volunteer_id)
                                  & (path.c.channel == ch.value))
    return joined


log = logging.getLogger(__name__)

#: A whole alert is read in two halves at once from this many recipients: a read of
#: 100,000 takes PostgreSQL's server ~0.85 s of CPU time (SQLite ~0.6 s), so one of
#: 10,000 ~0.09 s, of which the halves would save less than a second connection's set-up
#: and round trips cost.
HALVES_FROM = 10_000
#: SQLite reads halves up to this many recipients: each half is one text (`_joined`), and
#: SQLite's longest is 1e9 bytes, ~2 million recipients' JSON.
JOINED_UP_TO = 1_000_000
#: What `pg_export_snapshot` returns (written into SET TRANSACTION SNAPSHOT, which takes no
#: parameter): hex digits and dashes.
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+(-[0-9A-F]+)*")


def _one_snapshot(db: Connection) -> bool:
    """PostgreSQL: this transaction reads one snapshot (`db.read_one_snapshot`), which a
    second connection can import."""
    level = db.exec_driver_sql("SHOW transaction_isolation").scalar()
    return level in ("repeatable read", "serializable")


#: A second reader of a transaction's snapshot: the rows of a statement, read on another
#: connection.
Reader = Callable[[Select[Any]], list[tuple[Any, ...]]]


def _second_reader(session: Session, db: Connection) -> Reader | None:
    """Another connection reading what the session's transaction reads, or None: on
    SQLite the twin `Database.reading(twin=True)` set up; on PostgreSQL a new transaction
    importing this one's snapshot, when the pool has a connection to spare."""
    if db.dialect.name == "sqlite":
        twin = session.info.get(TWIN)
        return None if twin is None else partial(fetch_plain, twin)
    if not (_one_snapshot(db) and spare_connections(db.engine)):
        return None
    snapshot = str(db.exec_driver_sql("SELECT pg_export_snapshot()").scalar())
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        raise ValueError(f"unexpected snapshot id {snapshot!r}")
    return partial(_fetch_in_snapshot, db.engine, snapshot)


def _fetch_in_halves(db: Connection, second: Reader, halves: list[Select[Any]]
                     ) -> list[tuple[Any, ...]]:
    """The rows of two statements, the first read by this transaction, the second at the
    same time by `second`, in the same snapshot: the database builds a whole alert's JSON
    (~0.6-0.85 s of CPU time for 100,000 recipients) on two cores while this process
    waits (SQLite's C code runs outside the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        other = pool.submit(second, halves[1])
        rows = fetch_plain(db, halves[0])
        try:
            rows += other.result()
        except OperationalError:
            # No second connection (the server at its connection limit, say): this one
            # reads the other half too, in the same snapshot. A status is never refused
            # for want of a connection it did not need.
            log.warning("status: the second connection's half failed; reading it here",
                        exc_info=True)
            rows += fetch_plain(db, halves[1])
    return rows


def _fetch_in_snapshot(engine: Engine, snapshot: str, statement: Select[Any]
                       ) -> list[tuple[Any, ...]]:
    """The rows of a statement read by a new transaction in an exported snapshot."""
    with engine.connect() as other:
        connection_reads_one_snapshot(other, read_only=True)
        other.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        with whole_alert_plan(other):
            rows = fetch_plain(other, statement)
        other.rollback()
    return rows


def recipients_json(session: Session, alert_id: int, *where: ColumnElement[bool],
                    limit: int | None = None) -> list[RecipientJson]:
    """Some of an alert's recipients (all of them when no `where`), in the board's order
    (zone, tier, id), each with its JSON: name, zone, tier, masked phone and email, state,
    stamps, skipped paths, deliveries and latest reply."""
    db = session.connection()
    sql = _Sql(db.dialect.name == "sqlite")
    per_tier: dict[int, int] = dict(db.execute(
        select(_R.c.tier, func.count()).where(_R.c.alert_id == alert_id, *where)
        .group_by(_R.c.tier)).all())
    tiers, count = list(per_tier), sum(per_tier.values())
    if not tiers:
        return []
    # PostgreSQL reads a whole alert's deliveries in one pass, grouped by recipient; a
    # page of the board reads its few rows' deliveries (as SQLite always does).
    whole_alert = not where and limit is None
    whole_pg = whole_alert and not sql.sqlite
    # A whole alert's rows straight from the driver; a page's (whose `where` may hold a
    # time) through SQLAlchemy.
    # No collections while 200,000 tuples (none in a cycle) are made: each full pass
    # walked every object the process holds (~0.5 s of CPU in all).
    with whole_alert_plan(db) if whole_pg else nullcontext(), collector_paused():
        if not whole_alert:
            rows: list[Any] = list(db.execute(
                _statement(sql, alert_id, tiers, where, limit, whole_pg, None)))
        elif count >= HALVES_FROM and not (sql.sqlite and count > JOINED_UP_TO) and \
                (second := _second_reader(session, db)) is not None:
            halves = [_statement(sql, alert_id, tiers, (), None, whole_pg, half)
                      for half in range(2)]
            if sql.sqlite:
                rows = _unjoined(_fetch_in_halves(db, second, [_joined(h) for h in halves]))
            else:
                rows = _fetch_in_halves(db, second, halves)
        else:
            rows = fetch_plain(db, _statement(sql, alert_id, tiers, (), None, whole_pg, None))
        rows.sort(key=_board_order)
        # tuple.__new__ straight from C: `_make` is a Python call a row (0.035 s against
        # 0.017 s for 100,000); the statement's columns are the fields.
        found: list[RecipientJson] = list(map(tuple.__new__, repeat(RecipientJson), rows))
    return found


#: SQLite: what `_joined` puts between its rows' values. JSON text never holds it (a
#: string's control characters are escaped), nor does a state.
_SEP = "\x1e"


def _joined(statement: Select[Any]) -> Select[Any]:
    """SQLite: `statement`'s rows as one row of five texts, each a column's values joined
    by `_SEP`. Each of the two connections then returns one row, so each thread lets go
    of the GIL for its whole read; read a row at a time, each took the GIL back after
    every row (200,000 hand-overs), and the two took as long as one."""
    rows = statement.subquery()
    return select(*(func.group_concat(column, literal_column(f"char({ord(_SEP)})"))
                    for column in rows.c))


def _unjoined(joined: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows `_joined` read, back as (id, zone id, tier, state, JSON) rows. The five
    texts of a row list their values in one order: SQLite steps every aggregate of a
    statement on each row in turn, and group_concat skips only NULLs, which none of the
    five columns holds. A half with no rows reads as NULLs."""
    rows: list[tuple[Any, ...]] = []
    for ids, zones, tiers, states, docs in joined:
        if ids is not None:
            rows += zip(map(int, ids.split(_SEP)), map(int, zones.split(_SEP)),
                        map(int, tiers.split(_SEP)), states.split(_SEP), docs.split(_SEP),
                        strict=True)
    return rows


def _statement(sql: _Sql, alert_id: int, tiers: list[int], where: Iterable[ColumnElement[bool]],
               limit: int | None, whole_pg: bool, half: int | None) -> Select[Any]:
    """The read of `recipients_json`: of the recipients whose id has this parity when
    `half` is given (each table's rows filtered alike: the halves add up to the whole)."""
    def mine(recipient_id: Any) -> list[ColumnElement[bool]]:
        return [] if half is None else [recipient_id % 2 == half]

    paths = contact_paths((*PHONE_ORDER, Channel.EMAIL))
    delivery_pairs = {key: sql.flag(_D.c[key]) if key == "possibly_duplicate" else _D.c[key]
                      for key in DELIVERY_KEYS}
    grouped = None
    if whole_pg:
        each = _row(delivery_pairs, "delivery", _D)
        grouped = (select(_D.c.recipient_id, func.json_agg(aggregate_order_by(
            each.table_valued(), _D.c.id)).label("list"))
            .select_from(_D.join(each, true()))
            .where(_D.c.alert_id == alert_id, *mine(_D.c.recipient_id))
            .group_by(_D.c.recipient_id).subquery())
    # The latest reply of each recipient who replied (responses have no recipient index).
    last = (select(_RESP.c.recipient_id, func.max(_RESP.c.id).label("id"))
            .where(_RESP.c.alert_id == alert_id, _RESP.c.recipient_id.is_not(None),
                   *mine(_RESP.c.recipient_id))
            .group_by(_RESP.c.recipient_id).subquery())
    reply = _RESP.alias("reply")
    pairs = {
        "id": _R.c.id, "name": _V.c.name, "zone": _Z.c.name,
        "tier": case({t: tier_name(t) for t in tiers}, value=_R.c.tier),
        "duty_officer": sql.flag(_R.c.tier == DUTY_OFFICER_TIER),
        "phone": func.coalesce(*(paths[ch].c.masked for ch in PHONE_ORDER)),
        "email": paths[Channel.EMAIL].c.masked,
        "state": _R.c.state, "notified_at": sql.stamp(_R.c.notified_at),
        "acknowledged_at": sql.stamp(_R.c.acknowledged_at),
        "acknowledged_via": _R.c.acknowledged_via,
        "skipped": sql.nested(_R.c.skipped),
        "deliveries": sql.array(sql.obj(delivery_pairs)) if grouped is None
        else func.coalesce(grouped.c.list, _PG_EMPTY),
        "reply": sql.nested(case((reply.c.id.is_(None), None), else_=sql.obj({
            "kind": reply.c.kind, "text": reply.c.text, "urgent": sql.flag(reply.c.urgent)}))),
    }
    joined: Any = _R.join(_V, _V.c.id == _R.c.volunteer_id).join(_Z, _Z.c.id == _R.c.zone_id)
    joined = join_contact_paths(joined, paths, _R.c.volunteer_id)
    if grouped is not None:
        joined = joined.outerjoin(grouped, grouped.c.recipient_id == _R.c.id)
    joined = joined.outerjoin(last, last.c.recipient_id == _R.c.id).outerjoin(
        reply, reply.c.id == last.c.id)
    doc: Any = sql.obj(pairs)
    if whole_pg:
        whole = _row(pairs, "recipient", _R, _V, _Z, *paths.values(), grouped, reply)
        joined = joined.join(whole, true())
        doc = func.row_to_json(whole.table_valued())
    return (select(_R.c.id, _R.c.zone_id, _R.c.tier, type_coerce(_R.c.state, String),
                   cast(doc, Text))
            .select_from(joined).where(_R.c.alert_id == alert_id, *where, *mine(_R.c.id))
            # Sorted by the database only for a page: sorting 45 MB of rows costs SQLite
            # more than their building, Python sorts the keys in a blink.
            .order_by(*(BOARD_ORDER if limit is not None else ())).limit(limit))
