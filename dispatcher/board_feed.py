"""The live board's producer: one per alert and server process, shared by every browser
watching that alert.

Each look costs a few index reads, whatever the alert's size: the alert's zones, deadlines
and HELP replies; every recipient's (zone, tier, state), bare tuples for the zone figures
and who to call; and the recipients, deliveries and replies stamped since the newest stamp
it has seen. Only the rows whose stamp is new are built in full. What differs from the last
look becomes one numbered change event, built once and sent to every browser; the last
ones are kept for a browser that reconnects with `Last-Event-ID`.

Several server processes (PostgreSQL) each run their own producer: event ids carry the
producer's epoch, so an id from another process asks for a snapshot, never a wrong gap.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, func, select, true, type_coerce, union_all
from sqlalchemy.orm import Session

from dispatcher.domain import DUTY_OFFICER_TIER, RecipientState
from dispatcher.errors import NotFound
from dispatcher.models import AlertZone, Delivery, Recipient, Response, Zone, table
from dispatcher.status import (
    ZoneFigures,
    alert_head,
    call_next_rule,
    call_outcomes_line,
    delivery_outcomes,
    find_alert,
    recipient_rows,
)

_R, _D, _P = table(Recipient), table(Delivery), table(Response)
#: How far behind the newest stamp it has seen each look reaches again: a transaction that
#: stamped its rows before another committed, but committed after it, is still found (a
#: reply's transaction lasts milliseconds; this also covers a few seconds of clock skew
#: between server processes).
LOOKBACK = timedelta(seconds=5)
#: Most people per zone the board names under "call next"; the rest are in the zone's
#: paged list (and one phone lookup reveals at most 50).
CALL_NEXT_SHOWN = 10
#: Zones whose first few to call one statement reads (`_SqlFigures`).
ZONES_PER_READ = 200
#: Volunteers per page of a zone's list (the snapshot holds each zone's first page).
PAGE_SIZE = 20
#: Change events kept for reconnecting browsers (five minutes of a busy alert's looks).
EVENTS_KEPT = 600
#: The head's parts an event carries only when they changed (zones go one by one).
HEAD_PARTS = ("id", "title", "kind", "msg_type", "exercise", "state", "reply_code",
              "ack_window_seconds", "sent_at", "references", "policy", "timezone",
              "next_escalation_at", "summary", "unattached_replies", "versions")


class BoardFeed:
    """One alert's board: snapshots, and change events numbered `<epoch>-<seq>`."""

    def __init__(self, alert_id: int) -> None:
        self.alert_id = alert_id
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self._head: dict[str, Any] | None = None
        self._events: deque[tuple[int, dict[str, Any]]] = deque(maxlen=EVENTS_KEPT)
        self._stamps: dict[tuple[str, int], object] = {}  # (table, row id) -> stamp sent
        self._newest: datetime | None = None
        self._started = False
        #: The calls' outcomes in words as last sent, and whether a look found deliveries
        #: stamped anew (only then are they counted again).
        self._calls_line: str | None = None
        self._deliveries_moved = False
        self._lock = threading.Lock()

    @property
    def last_event_id(self) -> str:
        return f"{self.epoch}-{self.seq}"

    def snapshot(self, session: Session) -> dict[str, Any]:
        """The whole board as of the last event: the head, the people to act on, and the
        first page of every zone. Raises NotFound for an unknown alert."""
        with self._lock:
            self._start(session)
            head = self._build_head(session)
            if self._head is None:
                self._head = head  # the first look's changes count from this snapshot
            ranked = select(Recipient.id, Recipient.zone_id, func.row_number().over(
                partition_by=Recipient.zone_id, order_by=(Recipient.tier, Recipient.id))
                .label("n")).where(Recipient.alert_id == self.alert_id).subquery()
            first = session.execute(select(ranked.c.id, ranked.c.zone_id, ranked.c.n)
                                    .where(ranked.c.n <= PAGE_SIZE)).all()
            ids = _attention(head) | {r.id for r in first}
            rows = recipient_rows(session, self.alert_id, Recipient.id.in_(ids)) if ids else []
            names = _zone_names(session, self.alert_id)
            listed = {z["zone"]: z["listed"] for z in head["zones"]}
            pages: dict[str, int | None] = {name: None for name in listed}
            for r in first:
                name = names.get(r.zone_id)
                if name is not None and r.n == PAGE_SIZE and listed[name] > PAGE_SIZE:
                    pages[name] = r.id
            # Every channel's outcomes are counted for a page (or a reconnect); a look counts
            # the calls again only when deliveries moved.
            outcomes = delivery_outcomes(session, self.alert_id)
            calls = call_outcomes_line(outcomes.get("voice", {}))
            if self._calls_line is None:
                self._calls_line = calls  # later lines count from here, as the head does
            return {**head, "outcomes": outcomes, "calls_line": calls,
                    "recipients": rows, "pages": pages, "event_id": self.last_event_id}

    def look(self, session: Session) -> dict[str, Any] | None:
        """What changed since the last look, as a numbered event (kept), or None."""
        with self._lock:
            self._start(session)
            head = self._build_head(session)
            before = self._head or head
            changed = self._changed_recipients(session)
            ids = changed | (_attention(head) - _attention(before))
            event: dict[str, Any] = {k: head[k] for k in HEAD_PARTS if head[k] != before[k]}
            old_zones = {z["zone"]: z for z in before["zones"]}
            zones = [z for z in head["zones"] if old_zones.get(z["zone"]) != z]
            if zones:
                event["zones"] = zones
            self._head = head
            if self._deliveries_moved:
                self._deliveries_moved = False
                calls = call_outcomes_line(delivery_outcomes(
                    session, self.alert_id, "voice").get("voice", {}))
                if calls != self._calls_line:
                    event["calls_line"] = self._calls_line = calls
            if not event and not ids:
                return None
            event["recipients"] = (recipient_rows(session, self.alert_id,
                                                  Recipient.id.in_(ids)) if ids else [])
            event["now"] = head["now"]
            self.seq += 1
            event["event_id"] = self.last_event_id
            self._events.append((self.seq, event))
            return event

    def missed(self, last_event_id: str) -> list[dict[str, Any]] | None:
        """The events after `last_event_id`, or None when they are not all kept (another
        process's id, one too old, or nonsense): the browser then gets a snapshot."""
        epoch, _, number = last_event_id.partition("-")
        if epoch != self.epoch or not number.isdigit():
            return None
        seen = int(number)
        with self._lock:
            if seen > self.seq:
                return None
            kept = [event for seq, event in self._events if seq > seen]
            if len(kept) != self.seq - seen:
                return None
            return kept

    # --- the reads -------------------------------------------------------------------------

    def _start(self, session: Session) -> None:
        """On the first read, start from the newest stamps now: what is older is in any
        snapshot taken from here on."""
        if self._started:
            return
        find_alert(session, self.alert_id)
        stamps = [session.scalar(select(func.max(Recipient.updated_at))
                                 .where(Recipient.alert_id == self.alert_id)),
                  session.scalar(select(func.max(Delivery.updated_at))
                                 .where(Delivery.alert_id == self.alert_id)),
                  session.scalar(select(func.max(Response.created_at))
                                 .where(Response.alert_id == self.alert_id))]
        known = [s for s in stamps if s is not None]
        self._newest = max(known) if known else None
        self._changed_recipients(session)  # what is already there is not a change
        self._started = True

    def _build_head(self, session: Session) -> dict[str, Any]:
        alert = find_alert(session, self.alert_id)
        figures = _SqlFigures(session, self.alert_id)
        head = alert_head(session, alert, figures)
        for z in head["zones"]:
            z["listed"], z["call_next_more"] = figures.extra.get(z["zone"], (0, 0))
        return head

    def _changed_recipients(self, session: Session) -> set[int]:
        """Recipients whose row, a delivery or a reply is stamped after what was sent.

        Stamps are compared as the database returns them (no datetime per row): a look
        re-reads a few seconds of rows, and only the newest stamp is read as a time."""
        since = self._newest - LOOKBACK if self._newest is not None else None
        a = self.alert_id
        # Core columns, not the ORM's: a look at 200 replies a second re-reads ~2,000 rows
        # (LOOKBACK's seconds of them), which the ORM's row loading made most of its cost.
        reads: list[tuple[str, Any, Any, Any, Any]] = [
            ("r", _R.c.id, _R.c.id, _R.c.updated_at, _R.c.alert_id == a),
            ("d", _D.c.id, _D.c.recipient_id, _D.c.updated_at, _D.c.alert_id == a),
            ("p", _P.c.id, _P.c.recipient_id, _P.c.created_at,
             (_P.c.alert_id == a) & _P.c.recipient_id.is_not(None))]
        changed: set[int] = set()
        stamps = self._stamps
        for kind, row_id, recipient, stamp, where in reads:
            if since is not None:
                where = where & (stamp >= since)
            fresh = False
            rows: Any = session.execute(
                select(row_id, recipient, type_coerce(stamp, String)).where(where))
            for rid, rec, at in rows:
                key = (kind, int(rid))
                if stamps.get(key) != at:
                    stamps[key] = at
                    changed.add(int(rec))
                    fresh = True
            if fresh:
                self._deliveries_moved |= kind == "d"
                newest = session.scalar(select(func.max(stamp)).where(where))
                if newest is not None and (self._newest is None or newest > self._newest):
                    self._newest = newest
        return changed


class _SqlFigures:
    """Zone figures from one grouped count and, per zone, the first few whom to call: the
    board's way to the numbers `figures_from` counts from loaded rows (same rule)."""

    def __init__(self, session: Session, alert_id: int) -> None:
        self.session, self.alert_id = session, alert_id
        self.counts: dict[int, dict[tuple[int, str], int]] = {}
        for zone_id, tier, state, n in session.execute(
                select(Recipient.zone_id, Recipient.tier,
                       type_coerce(Recipient.state, String), func.count())
                .where(Recipient.alert_id == alert_id)
                .group_by(Recipient.zone_id, Recipient.tier, Recipient.state)):
            self.counts.setdefault(zone_id, {})[(tier, state)] = n
        #: zone name -> (rows listed, whom to call beyond those named)
        self.extra: dict[str, tuple[int, int]] = {}
        # Every zone's first few to call, in one read: the rule gives each zone a tier and
        # states, and each zone's part reads its first CALL_NEXT_SHOWN from the index on
        # (alert, zone, tier, state) (a window over the whole alert's rows cost SQLite
        # three times as much, twice a second for each alert watched).
        self.rules: dict[int, tuple[int, tuple[RecipientState, ...] | None] | None] = {}
        parts = []
        for az in session.scalars(select(AlertZone).where(AlertZone.alert_id == alert_id)):
            tiers = {t for t, _ in self.counts.get(az.zone_id, {}) if t != DUTY_OFFICER_TIER}
            rule = self.rules[az.zone_id] = call_next_rule(az, tiers)
            if rule is not None:
                tier, states = rule
                parts.append(select(Recipient.zone_id, Recipient.id).where(
                    Recipient.alert_id == alert_id, Recipient.zone_id == az.zone_id,
                    Recipient.tier == tier,
                    Recipient.state.in_(states) if states is not None else true())
                    .order_by(Recipient.id).limit(CALL_NEXT_SHOWN).subquery().select())
        self.first: dict[int, list[int]] = {}
        found: list[Any] = []
        # SQLite takes at most 500 terms in one compound SELECT: a post may have more zones.
        for start in range(0, len(parts), ZONES_PER_READ):
            found += session.execute(union_all(*parts[start:start + ZONES_PER_READ])).all()
        for zone_id, rid in sorted(found):
            self.first.setdefault(int(zone_id), []).append(int(rid))

    def __call__(self, az: AlertZone, helpers: set[int], cancelled: bool) -> ZoneFigures:
        counts = self.counts.get(az.zone_id, {})
        rule = None if cancelled else self.rules.get(az.zone_id)
        chosen: list[int] = []
        total = 0
        if rule is not None:
            tier, states = rule
            chosen = list(self.first.get(az.zone_id, []))
            total = sum(n for (t, st), n in counts.items()
                        if t == tier and (states is None or st in states))
        if helpers:
            ordered = self.session.execute(
                select(Recipient.id).where(Recipient.id.in_(helpers))
                .order_by(Recipient.tier, Recipient.id)).scalars()
            chosen += [rid for rid in ordered if rid not in chosen]
        self.extra[az.zone.name] = (sum(counts.values()), max(0, total - CALL_NEXT_SHOWN))
        return ZoneFigures(
            sum(n for (t, _), n in counts.items() if t != DUTY_OFFICER_TIER),
            sum(n for (_, st), n in counts.items() if st == RecipientState.ACKNOWLEDGED),
            chosen)


def _zone_names(session: Session, alert_id: int) -> dict[int, str]:
    return {zid: name for zid, name in session.execute(
        select(Zone.id, Zone.name).join(AlertZone, AlertZone.zone_id == Zone.id)
        .where(AlertZone.alert_id == alert_id))}


def _attention(head: dict[str, Any]) -> set[int]:
    """The recipients the board names: whom to call next, zone by zone."""
    return {rid for z in head["zones"] for rid in z["call_next"]}


def zone_page(session: Session, alert_id: int, zone: str,
              after: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """One page of a zone's recipients in the board's order (tier, id), after the recipient
    `after`; and the id to ask the next page after (None: that was the last page)."""
    zone_id = next((zid for zid, name in _zone_names(session, alert_id).items()
                    if name == zone), None)
    if zone_id is None:
        raise NotFound(f"alert {alert_id} has no zone {zone!r}")
    where = [Recipient.zone_id == zone_id]
    if after is not None:
        tier = session.scalar(select(Recipient.tier).where(
            Recipient.id == after, Recipient.alert_id == alert_id,
            Recipient.zone_id == zone_id))
        if tier is None:
            raise NotFound(f"recipient {after} is not in zone {zone!r} of alert {alert_id}")
        where.append((Recipient.tier > tier) | ((Recipient.tier == tier) & (Recipient.id > after)))
    rows = recipient_rows(session, alert_id, *where, limit=PAGE_SIZE + 1)
    return rows[:PAGE_SIZE], rows[PAGE_SIZE - 1]["id"] if len(rows) > PAGE_SIZE else None
