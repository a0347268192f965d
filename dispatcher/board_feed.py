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
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.errors import NotFound
from dispatcher.models import AlertZone, Delivery, Recipient, Response, Zone
from dispatcher.status import alert_head, find_alert, recipient_rows

#: How far behind the newest stamp it has seen each look reaches again: a transaction that
#: stamped its rows before another committed, but committed after it, is still found (a
#: reply's transaction lasts milliseconds; this also covers a few seconds of clock skew
#: between server processes).
LOOKBACK = timedelta(seconds=5)
#: Most people per zone the board names under "call next"; the rest are in the zone's
#: paged list (and one phone lookup reveals at most 50).
CALL_NEXT_SHOWN = 20
#: Volunteers per page of a zone's list (the snapshot holds each zone's first page).
PAGE_SIZE = 25
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
        self._stamps: dict[tuple[str, int], datetime] = {}  # (table, row id) -> stamp sent
        self._newest: datetime | None = None
        self._started = False
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
            return {**head, "recipients": rows, "pages": pages,
                    "event_id": self.last_event_id}

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
        members = session.execute(
            select(Recipient.id, Recipient.zone_id, Recipient.tier, Recipient.state)
            .where(Recipient.alert_id == self.alert_id)).all()
        head = alert_head(session, alert, members)
        listed: dict[int, int] = {}
        for m in members:
            listed[m.zone_id] = listed.get(m.zone_id, 0) + 1
        names = _zone_names(session, self.alert_id)
        counts = {names[zid]: n for zid, n in listed.items() if zid in names}
        for z in head["zones"]:
            z["listed"] = counts.get(z["zone"], 0)
            z["call_next_more"] = max(0, len(z["call_next"]) - CALL_NEXT_SHOWN)
            z["call_next"] = z["call_next"][:CALL_NEXT_SHOWN]
        return head

    def _changed_recipients(self, session: Session) -> set[int]:
        """Recipients whose row, a delivery or a reply is stamped after what was sent."""
        since = self._newest - LOOKBACK if self._newest is not None else None
        a = self.alert_id
        reads: list[tuple[str, Any, Any]] = [
            ("r", select(Recipient.id, Recipient.id, Recipient.updated_at)
             .where(Recipient.alert_id == a), Recipient.updated_at),
            ("d", select(Delivery.id, Delivery.recipient_id, Delivery.updated_at)
             .where(Delivery.alert_id == a), Delivery.updated_at),
            ("p", select(Response.id, Response.recipient_id, Response.created_at)
             .where(Response.alert_id == a, Response.recipient_id.is_not(None)),
             Response.created_at)]
        changed: set[int] = set()
        for table, query, stamp in reads:
            if since is not None:
                query = query.where(stamp >= since)
            for row in session.execute(query):
                row_id, rid, at = cast(tuple[int, int, datetime], tuple(row))
                if self._stamps.get((table, row_id)) != at:
                    self._stamps[(table, row_id)] = at
                    changed.add(rid)
                if self._newest is None or at > self._newest:
                    self._newest = at
        return changed


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
