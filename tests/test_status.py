"""The status JSON the database writes equals what the ORM objects gave (the oracle below
is the reading it replaced): acknowledgements, HELP, escalated and unreached zones, calls,
untrusted names, a duty officer, stamps on whole seconds; as a dict and as the text
`aln alert status --json` prints."""

from __future__ import annotations

import gc
import io
import json
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, selectinload

from dispatcher import recipient_json
from dispatcher import status as status_module
from dispatcher.db import _SQLITE_START_READ, READING, TWIN, fetch_plain
from dispatcher.domain import DUTY_OFFICER_TIER, Channel, tier_name
from dispatcher.models import AlertZone, Delivery, Recipient, Response, Volunteer
from dispatcher.recipient_json import _PG_WHOLE_ALERT, recipients_json
from dispatcher.runtime import Runtime
from dispatcher.status import (
    alert_head,
    alert_status,
    delivery_outcomes,
    figures_from,
    find_alert,
    recipient_rows,
    write_alert_status,
)
from tests.bench.fixtures import bulk_alert, bulk_roster

#: Names that must come out of the JSON as they went in.
UNTRUSTED_NAMES = ('Ana "la jefa" \\ Ruiz', "Bo\nb\t\x01</script>", "José Ñúñez 是 😀",
                   "{\"name\": 1}")


def _oracle_rows(session: Session, alert_id: int, *where: Any,
                 limit: int | None = None) -> tuple[list[Recipient], list[dict[str, Any]]]:
    recipients = list(session.scalars(
        select(Recipient).where(Recipient.alert_id == alert_id, *where)
        .options(selectinload(Recipient.volunteer).selectinload(Volunteer.contacts),
                 selectinload(Recipient.zone), selectinload(Recipient.deliveries))
        .order_by(Recipient.zone_id, Recipient.tier, Recipient.id).limit(limit)))
    replies: dict[int, Response] = {}
    for resp in session.scalars(select(Response).where(
            Response.alert_id == alert_id,
            Response.recipient_id.in_([r.id for r in recipients])).order_by(Response.id)):
        if resp.recipient_id is not None:
            replies[resp.recipient_id] = resp
    rows = []
    for r in recipients:
        by_channel = {c.channel: c for c in r.volunteer.contacts}
        sms = next((by_channel[ch] for ch in (Channel.SMS, Channel.WHATSAPP, Channel.VOICE)
                    if ch in by_channel), None)
        email = by_channel.get(Channel.EMAIL)
        reply = replies.get(r.id)
        rows.append({
            "id": r.id, "name": r.volunteer.name, "zone": r.zone.name,
            "tier": tier_name(r.tier), "duty_officer": r.tier == DUTY_OFFICER_TIER,
            "phone": sms.masked if sms else None, "email": email.masked if email else None,
            "state": r.state, "notified_at": _iso(r.notified_at),
            "acknowledged_at": _iso(r.acknowledged_at),
            "acknowledged_via": r.acknowledged_via, "skipped": r.skipped,
            "deliveries": [{"id": d.id, "channel": d.channel, "purpose": d.purpose,
                            "state": d.state, "error_code": d.error_code,
                            "possibly_duplicate": d.possibly_duplicate,
                            "attempts": d.attempts}
                           for d in sorted(r.deliveries, key=lambda d: d.id)],
            "reply": {"kind": reply.kind, "text": reply.text, "urgent": reply.urgent}
            if reply else None,
        })
    return recipients, rows


def _status_and_printed(session: Session, alert_id: int) -> tuple[dict[str, Any],
                                                                  dict[str, Any]]:
    """The alert's status as a dict, and as `aln alert status --json` prints it (parsed),
    both without their "now"."""
    got = alert_status(session, alert_id)
    out = io.StringIO()
    write_alert_status(session, alert_id, out)
    printed = json.loads(out.getvalue())
    for status in (got, printed):
        status.pop("now")
    return got, printed


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def test_status_from_rows_equals_the_orm_reading(rt: Runtime) -> None:
    bulk_roster(rt, 90, zones=5, email=True, tiers=3)
    alert_id = bulk_alert(rt, seed=3)
    with rt.db.session() as s:
        # Calls, a skipped path and a reply several alerts wait for.
        rows = s.execute(select(Delivery.recipient_id, Delivery.contact_id)
                         .where(Delivery.alert_id == alert_id, Delivery.channel == "sms")
                         .order_by(Delivery.id).limit(6)).all()
        s.execute(insert(Delivery), [
            {"alert_id": alert_id, "recipient_id": r.recipient_id, "contact_id": r.contact_id,
             "channel": "voice", "purpose": "alert", "body": "x", "attempts": 1,
             "state": ("no_answer", "delivered", "machine")[i % 3]}
            for i, r in enumerate(rows)])
        first = s.get_one(Recipient, rows[0].recipient_id)
        first.skipped = [{"channel": "whatsapp", "reason": "no session"}]
        s.add(Response(alert_id=alert_id, kind="ambiguous", text="YES",
                       recipient_id=rows[1].recipient_id, channel="sms"))
        # Names as a roster may bring them; a duty officer; stamps whose microseconds are
        # zero (isoformat leaves them out) or end in zeros.
        for rid, name in zip((r.recipient_id for r in rows), UNTRUSTED_NAMES, strict=False):
            volunteer_id = s.get_one(Recipient, rid).volunteer_id
            s.execute(update(Volunteer).where(Volunteer.id == volunteer_id).values(name=name))
        s.execute(update(Recipient).where(Recipient.id == rows[2].recipient_id)
                  .values(tier=DUTY_OFFICER_TIER))
        s.execute(update(Recipient).where(Recipient.id == rows[3].recipient_id).values(
            notified_at=datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC),
            acknowledged_at=datetime(2026, 3, 1, 12, 4, 0, 120000, tzinfo=UTC)))
    with rt.db.session() as s:
        recipients, expected_rows = _oracle_rows(s, alert_id)
        expected = {**alert_head(s, find_alert(s, alert_id), figures_from(recipients)),
                    "outcomes": delivery_outcomes(s, alert_id), "recipients": expected_rows}
        got, printed = _status_and_printed(s, alert_id)
        expected.pop("now")
        assert got == expected
        assert printed == json.loads(json.dumps(expected, default=str))
        assert {r["name"] for r in printed["recipients"]} >= set(UNTRUSTED_NAMES)
        assert "duty officer" in {r["tier"] for r in got["recipients"]}
        assert got["summary"]["help"] and got["outcomes"]["voice"]
        assert {r["state"] for r in got["recipients"]} >= {"acknowledged", "escalated",
                                                           "notified", "pending"}
        zone_id = recipients[0].zone_id
        page = recipient_rows(s, alert_id, Recipient.zone_id == zone_id, limit=7)
        assert page == _oracle_rows(s, alert_id, Recipient.zone_id == zone_id, limit=7)[1]


def test_reading_a_whole_alert_leaves_the_planner_settings_as_they_were(rt: Runtime) -> None:
    if rt.db.is_sqlite:
        pytest.skip("PostgreSQL's planner settings")
    bulk_roster(rt, 20, zones=2, tiers=2)
    alert_id = bulk_alert(rt)
    with rt.db.session() as s:
        before = {name: s.execute(text(f"SHOW {name}")).scalar() for name in _PG_WHOLE_ALERT}
        assert len(alert_status(s, alert_id)["recipients"]) == 20
        assert {name: s.execute(text(f"SHOW {name}")).scalar()
                for name in _PG_WHOLE_ALERT} == before


def test_rows_read_past_sqlalchemy_take_only_numbers_and_text(rt: Runtime) -> None:
    """A whole alert's rows come straight from the driver, which would write a time
    parameter its own way (not as SQLAlchemy stores it): such a statement is refused."""
    bulk_roster(rt, 4, zones=2, tiers=2)
    alert_id = bulk_alert(rt)
    with rt.db.session() as s:
        db = s.connection()
        ids = select(Recipient.id).where(Recipient.alert_id == alert_id).order_by(Recipient.id)
        assert [r[0] for r in fetch_plain(db, ids)] == list(s.scalars(ids))
        assert fetch_plain(db, ids.where(Recipient.id.in_([-1, -2]))) == []
        with pytest.raises(TypeError):
            fetch_plain(db, ids.where(Recipient.created_at < datetime(2030, 1, 1,
                                                                       tzinfo=UTC)))
    # A driver's error comes out as SQLAlchemy's (what the CLI and the retries catch).
    ghost = Table("no_such_table", MetaData(), Column("id", Integer))
    with rt.db.session() as s, pytest.raises(DBAPIError, match="no_such_table"):
        fetch_plain(s.connection(), select(ghost.c.id))


def test_no_garbage_collection_while_a_whole_alerts_rows_are_made(rt: Runtime) -> None:
    """100,000 rows' tuples set the cyclic collector off again and again (~0.5 s CPU time
    for an alert that size): it waits until the rows are made, and runs again after."""
    bulk_roster(rt, 20, zones=2, tiers=2)
    alert_id = bulk_alert(rt)
    while_fetching: list[bool] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            frame, names = sys._getframe(1), set()
            while frame is not None:
                names.add(frame.f_code.co_name)
                frame = frame.f_back  # type: ignore[assignment]
            while_fetching.append("fetch_plain" in names)

    threshold = gc.get_threshold()
    gc.callbacks.append(seen)
    gc.set_threshold(1)  # a collection at (nearly) every allocation
    try:
        with rt.db.session() as s:
            rows = recipients_json(s, alert_id)
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(seen)
    assert len(rows) == 20 and gc.isenabled()
    assert while_fetching and not any(while_fetching)  # collections, none while fetching


def test_the_printed_status_is_whole_across_its_slices(rt: Runtime,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`aln alert status --json` writes the recipients a slice at a time: none is lost or
    doubled at a slice's edge, and the text parses to the status."""
    bulk_roster(rt, 23, zones=3, tiers=2)
    alert_id = bulk_alert(rt)
    monkeypatch.setattr(status_module, "WRITE_SLICE", 5)
    with rt.db.session() as s:
        out = io.StringIO()
        write_alert_status(s, alert_id, out)
        printed, status = json.loads(out.getvalue()), alert_status(s, alert_id)
    assert [r["id"] for r in printed["recipients"]] == [r["id"] for r in status["recipients"]]
    assert len(printed["recipients"]) == 23
    printed.pop("now"), status.pop("now")
    assert printed == json.loads(json.dumps(status, default=str))


def test_printing_a_status_collects_no_garbage_while_its_rows_live(rt: Runtime) -> None:
    """Resumed while a whole alert's rows live, the cyclic collector walked them again at
    its next passes: it stays paused from the read until the rows are written and freed,
    and runs again after."""
    bulk_roster(rt, 20, zones=2, tiers=2)
    alert_id = bulk_alert(rt)
    during: list[bool] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            frame, names, rows_alive = sys._getframe(1), set(), False
            while frame is not None:
                names.add(frame.f_code.co_name)
                if frame.f_code.co_name == "write_alert_status":
                    rows_alive = "recipients" in frame.f_locals
                frame = frame.f_back  # type: ignore[assignment]
            during.append(rows_alive or {"_status", "write_alert_status"} <= names)

    threshold = gc.get_threshold()
    gc.callbacks.append(seen)
    gc.set_threshold(1)  # a collection at (nearly) every allocation
    try:
        with rt.db.session() as s:
            write_alert_status(s, alert_id, io.StringIO())
            [object() for _ in range(10)]
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(seen)
    assert gc.isenabled()
    assert during and not any(during)  # collections, none while the rows live


def test_a_recipients_deliveries_are_listed_in_id_order(rt: Runtime) -> None:
    """In id order, whatever order their channels, states and purposes would give (SQLite
    lists them in the order it reads them, which an index on recipient_id and another
    column would change): a whole alert's reading and a page's."""
    bulk_roster(rt, 8, zones=2, email=True, tiers=2)
    alert_id = bulk_alert(rt)
    with rt.db.session() as s:
        first = s.execute(select(Delivery.recipient_id, Delivery.contact_id)
                          .where(Delivery.alert_id == alert_id)
                          .order_by(Delivery.id).limit(1)).one()
        s.execute(insert(Delivery), [
            {"alert_id": alert_id, "recipient_id": first.recipient_id,
             "contact_id": first.contact_id, "channel": channel, "purpose": purpose,
             "body": "x", "attempts": 1, "state": state}
            for channel, purpose, state in (("whatsapp", "reminder", "sent"),
                                             ("voice", "failover", "accepted"),
                                             ("sms", "cancel", "delivered"),
                                             ("email", "alert", "pending"))])
    with rt.db.session() as s:
        expected = sorted(s.scalars(select(Delivery.id).where(
            Delivery.recipient_id == first.recipient_id)))
        whole = {r["id"]: r for r in alert_status(s, alert_id)["recipients"]}
        page = recipient_rows(s, alert_id, Recipient.id == first.recipient_id)
    assert len(expected) >= 5
    for row in (whole[first.recipient_id], page[0]):
        assert [d["id"] for d in row["deliveries"]] == expected


def _status_seeing(rt: Runtime, alert_id: int, statement_seen: Any) -> dict[str, Any]:
    """The alert's status read in a new session, `statement_seen(text)` called before each
    statement the engine's connections run meanwhile."""
    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statement_seen(statement)

    event.listen(rt.db.engine, "before_cursor_execute", seen)
    try:
        with rt.db.session() as s:
            return alert_status(s, alert_id)
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", seen)


def test_a_status_reads_its_recipients_and_zones_as_of_one_moment(rt: Runtime) -> None:
    """A recipient's acknowledgement and its zone's, committed while a status is read
    (after its recipients, before its zones), are in the status together or not at all:
    here not, the status being the one before the commit."""
    if rt.db.is_sqlite:
        pytest.skip("SQLite's transactions read one snapshot")
    bulk_roster(rt, 20, zones=2, tiers=2)
    alert_id = bulk_alert(rt)
    with rt.db.session() as s:
        before = alert_status(s, alert_id)
        rid, zone_id = s.execute(select(Recipient.id, Recipient.zone_id).where(
            Recipient.alert_id == alert_id, Recipient.state != "acknowledged")
            .limit(1)).one()
    zone_name = next(r["zone"] for r in before["recipients"] if r["id"] == rid)
    zone_acknowledged = any(z["state"] == "acknowledged" for z in before["zones"]
                            if z["zone"] == zone_name)
    committed: list[str] = []

    def commit_an_acknowledgement(statement: str) -> None:
        if "FROM alert_zones" in statement and not committed:
            committed.append(statement)
            with rt.db.engine.begin() as other:
                other.execute(update(Recipient).where(Recipient.id == rid)
                              .values(state="acknowledged"))
                other.execute(update(AlertZone).where(AlertZone.alert_id == alert_id,
                                                      AlertZone.zone_id == zone_id)
                              .values(state="waiting" if zone_acknowledged
                                      else "acknowledged"))

    during = _status_seeing(rt, alert_id, commit_an_acknowledgement)
    with rt.db.session() as s:
        after = alert_status(s, alert_id)
    assert committed
    for status in (before, during, after):
        status.pop("now")
    assert during == before != after


def _read_in_halves(rt: Runtime, monkeypatch: pytest.MonkeyPatch, volunteers: int,
                    zones: int) -> int:
    """An alert to `volunteers` in two tiers, big enough to be read in halves (PostgreSQL
    only: the test is skipped on SQLite)."""
    if rt.db.is_sqlite:
        pytest.skip("PostgreSQL's exported snapshots")
    monkeypatch.setattr(recipient_json, "HALVES_FROM", volunteers)
    bulk_roster(rt, volunteers, zones=zones, tiers=2)
    return bulk_alert(rt)


def test_a_whole_alert_read_in_halves_reads_one_snapshot(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL reads a whole alert's recipients in two halves at once, the second on
    another connection: a commit between the two halves' starts is in neither (the
    second imports the first's snapshot), and the halves add up to the reading in one
    connection (a transaction that read before the status cannot be shared so)."""
    alert_id = _read_in_halves(rt, monkeypatch, 40, zones=3)
    with rt.db.session() as s:
        s.execute(select(1))  # read before the status: one connection, one snapshot
        before = alert_status(s, alert_id)
        odd = s.scalars(select(Recipient.id).where(
            Recipient.alert_id == alert_id, Recipient.state != "acknowledged",
            Recipient.id % 2 == 1).limit(1)).one()
    imported: list[str] = []

    def commit_before_the_import(statement: str) -> None:
        # The second connection's first statement, before it imports the snapshot.
        if statement.startswith("SET TRANSACTION") and "READ ONLY" in statement:
            imported.append(statement)
            with rt.db.engine.begin() as other:
                other.execute(update(Recipient).where(Recipient.id == odd)
                              .values(state="acknowledged"))

    during = _status_seeing(rt, alert_id, commit_before_the_import)
    with rt.db.session() as s:
        after = alert_status(s, alert_id)
    assert len(imported) == 1
    for status in (before, during, after):
        status.pop("now")
    assert during == before != after
    assert {r["id"]: r["state"] for r in after["recipients"]}[odd] == "acknowledged"


def _second_connections(rt: Runtime, alert_id: int) -> int:
    """How many connections besides the session's a status of the alert read in."""
    seen: list[str] = []
    _status_seeing(rt, alert_id, lambda statement: seen.append(statement))
    return len([st for st in seen if st.startswith("SET TRANSACTION SNAPSHOT")])


def test_a_whole_alert_is_read_in_halves_only_when_big_and_a_connection_is_spare(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Halves pay from `HALVES_FROM` recipients on; and a status never waits for a second
    connection the pool has not got idle (statuses read at once in `aln serve` would each
    hold one while waiting for another)."""
    if rt.db.is_sqlite:
        pytest.skip("PostgreSQL's exported snapshots")
    bulk_roster(rt, 12, zones=2, tiers=2)
    alert_id = bulk_alert(rt)
    assert _second_connections(rt, alert_id) == 0
    monkeypatch.setattr(recipient_json, "HALVES_FROM", 12)
    assert _second_connections(rt, alert_id) == 1
    pool = rt.db.engine.pool
    held = [rt.db.engine.connect() for _ in range(pool.size() - 1)]  # type: ignore[attr-defined]
    try:
        assert _second_connections(rt, alert_id) == 0
    finally:
        for conn in held:
            conn.close()


def test_a_status_without_a_second_connection_reads_both_halves_in_one(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server refusing a second connection (at its limit, say) costs the status its
    speed, never its answer."""
    from sqlalchemy import event
    from sqlalchemy.exc import OperationalError

    alert_id = _read_in_halves(rt, monkeypatch, 12, zones=2)
    with rt.db.session() as s:
        whole = alert_status(s, alert_id)
    rt.db.engine.dispose()  # no idle connection: the second half needs a new one
    refused: list[int] = []
    sessions = 0

    def at_the_limit(*_: Any) -> None:
        nonlocal sessions
        sessions += 1
        if sessions > 1:
            refused.append(sessions)
            raise OperationalError("connect", {}, Exception(
                "FATAL: sorry, too many clients already"))

    event.listen(rt.db.engine, "do_connect", at_the_limit)
    try:
        with rt.db.session() as s:
            halved = alert_status(s, alert_id)
    finally:
        event.remove(rt.db.engine, "do_connect", at_the_limit)
    assert refused
    for status in (whole, halved):
        status.pop("now")
    assert halved == whole


def _sqlite_alert(rt: Runtime, volunteers: int) -> int:
    if not rt.db.is_sqlite:
        pytest.skip("SQLite's twin connection (PostgreSQL exports its snapshots)")
    bulk_roster(rt, volunteers, zones=2, tiers=2)
    return bulk_alert(rt)


def test_a_sqlite_twin_reads_its_sessions_snapshot(rt: Runtime) -> None:
    """`reading(twin=True)` on SQLite: the twin and the session read one snapshot. While
    the twin takes its first read nobody can commit (a commit then would be in one of the
    two reads and not in the other); a commit afterwards is in neither."""
    alert_id = _sqlite_alert(rt, 6)
    acknowledged = select(func.count()).where(Recipient.alert_id == alert_id,
                                              Recipient.state == "acknowledged")
    with rt.db.reading() as s:
        before = s.scalar(acknowledged)
    refused: list[str] = []

    def write_meanwhile(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement == _SQLITE_START_READ and conn.connection.info.get(READING):
            other = sqlite3.connect(rt.settings.sqlite_path(), timeout=0)
            try:
                other.execute("UPDATE recipients SET state = 'acknowledged'")
                other.commit()
            except sqlite3.OperationalError as exc:
                refused.append(str(exc))
            finally:
                other.close()

    event.listen(rt.db.engine, "before_cursor_execute", write_meanwhile)
    try:
        with rt.db.reading(twin=True) as s:
            event.remove(rt.db.engine, "before_cursor_execute", write_meanwhile)
            twin = s.info[TWIN]
            assert twin is not None
            with rt.db.session() as w:
                w.execute(update(Recipient).where(Recipient.alert_id == alert_id)
                          .values(state="acknowledged"))
            assert s.scalar(acknowledged) == twin.scalar(acknowledged) == before
    finally:
        if event.contains(rt.db.engine, "before_cursor_execute", write_meanwhile):
            event.remove(rt.db.engine, "before_cursor_execute", write_meanwhile)
    assert refused == ["database is locked"] * 2  # the session's first read, the twin's
    with rt.db.reading() as s:
        assert s.scalar(acknowledged) == s.scalar(
            select(func.count()).where(Recipient.alert_id == alert_id)) > before
    assert rt.db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_no_sqlite_twin_while_a_writer_holds_the_lock(rt: Runtime) -> None:
    """A writer (another process's, or a thread's of this one) holding the write lock
    means no twin, at once: a status is read in one then, never held up."""
    _sqlite_alert(rt, 4)
    other = sqlite3.connect(rt.settings.sqlite_path(), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with rt.db.reading(twin=True) as s:
            assert s.info[TWIN] is None
    finally:
        other.execute("ROLLBACK")
        other.close()
    writing, done = threading.Event(), threading.Event()

    def write() -> None:
        with rt.db.session() as w:
            w.execute(text("UPDATE recipients SET tier = tier"))
            writing.set()
            assert done.wait(30)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert writing.wait(30)
        with rt.db.reading(twin=True) as s:
            assert s.info[TWIN] is None
    finally:
        done.set()
        writer.join(30)
    with rt.db.reading(twin=True) as s:
        assert s.info[TWIN] is not None


def test_a_sqlite_status_in_halves_equals_the_one_read_in_one(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole alert's recipients read on SQLite in two halves at once (each a row of
    joined texts) are the recipients read in one, untrusted names and replies (one with
    the separator in it) included."""
    alert_id = _sqlite_alert(rt, 40)
    names = (*UNTRUSTED_NAMES, "Rec\x1eord Separator")
    with rt.db.session() as s:
        rids = s.scalars(select(Recipient.id).where(Recipient.alert_id == alert_id)
                         .order_by(Recipient.id).limit(len(names))).all()
        for rid, name in zip(rids, names, strict=True):
            volunteer_id = s.get_one(Recipient, rid).volunteer_id
            s.execute(update(Volunteer).where(Volunteer.id == volunteer_id).values(name=name))
        s.add(Response(alert_id=alert_id, kind="ambiguous", text="sí\x1eno",
                       recipient_id=rids[-1], channel="sms"))
    with rt.db.reading() as s:
        one = alert_status(s, alert_id)
    monkeypatch.setattr(recipient_json, "HALVES_FROM", 40)
    read: list[int] = []
    unjoined = recipient_json._unjoined

    def halves_read(joined: Any) -> Any:
        rows = unjoined(joined)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(recipient_json, "_unjoined", halves_read)
    with rt.db.reading(twin=True) as s:
        halves, printed = _status_and_printed(s, alert_id)
    assert read == [len(one["recipients"])] * 2  # read in halves, twice
    one.pop("now")
    assert halves == one
    assert printed == json.loads(json.dumps(one, default=str))
    assert {r["name"] for r in halves["recipients"]} >= set(names)
    assert "sí\x1eno" in {(r["reply"] or {}).get("text") for r in halves["recipients"]}
    assert unjoined([(None,) * 5]) == []  # a half with no rows
    monkeypatch.setattr(recipient_json, "JOINED_UP_TO", 39)  # a half's text too long
    with rt.db.reading(twin=True) as s:
        too_many = alert_status(s, alert_id)
    too_many.pop("now")
    assert too_many == one and len(read) == 2  # read in one


def test_no_sqlite_twin_beside_this_threads_own_write(rt: Runtime) -> None:
    """A status read inside a write of the same thread (whose lock is reentrant): that
    write holds SQLite's lock, so no twin, and no wait for a lock it holds itself."""
    alert_id = _sqlite_alert(rt, 4)
    with rt.db.reading() as s:
        before = alert_status(s, alert_id)
    with rt.db.session() as w:
        w.execute(update(Recipient).where(Recipient.alert_id == alert_id)
                  .values(state="acknowledged"))
        with rt.db.reading(twin=True) as s:
            assert s.info[TWIN] is None
            during = alert_status(s, alert_id)
    for status in (before, during):
        status.pop("now")
    assert during == before  # the write is not committed yet


def test_a_sqlite_twin_that_cannot_connect_means_a_read_in_one(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """No second connection to be had (a failing connect): the status is read in one,
    the same, never refused."""
    from sqlalchemy.exc import OperationalError

    alert_id = _sqlite_alert(rt, 40)
    monkeypatch.setattr(recipient_json, "HALVES_FROM", 40)
    with rt.db.reading() as s:
        one = alert_status(s, alert_id)
    rt.db.engine.dispose()  # no idle connection: the twin needs a new one
    connects = 0

    def refuse_the_second(*_: Any) -> None:
        nonlocal connects
        connects += 1
        if connects > 1:
            raise OperationalError("connect", {}, Exception("unable to open database file"))

    event.listen(rt.db.engine, "do_connect", refuse_the_second)
    try:
        with caplog.at_level("WARNING", logger="dispatcher.db"), \
                rt.db.reading(twin=True) as s:
            assert s.info[TWIN] is None
            got = alert_status(s, alert_id)
    finally:
        event.remove(rt.db.engine, "do_connect", refuse_the_second)
    for status in (one, got):
        status.pop("now")
    assert got == one and connects == 2
    assert "no twin connection" in caplog.text
