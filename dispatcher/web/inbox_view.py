"""The inbox page as an officer reads it: who sent it (name and zone when the
sender is a known volunteer), what it is in words, times in the post's time zone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.db import db_now
from dispatcher.domain import ResponseKind
from dispatcher.errors import NotFound, Refused
from dispatcher.models import AuditEvent, Response, Volunteer, Zone
from dispatcher.web.localtime import local_time

#: What each kind of inbox item is called on the page.
KIND_LABELS = {ResponseKind.HELP: "HELP", ResponseKind.FIELD_REPORT: "Field report",
               ResponseKind.UNPARSED: "Reply not understood"}
#: Most rows a page shows.
PAGE_ROWS = 500
#: How many handled items the inbox still shows (with who, when, the note, and Undo).
HANDLED_SHOWN = 30
#: Longest note an officer may leave on a handled item (the rest is cut, and says so).
NOTE_MAX_CHARS = 500


def inbox_items(session: Session, timezone: str) -> list[dict[str, Any]]:
    """Unhandled field reports, HELP and unreadable replies: HELP from volunteers first,
    then other urgent ones, then the newest."""
    rows = session.scalars(
        select(Response).where(Response.kind.in_(list(KIND_LABELS)),
                               Response.handled_at.is_(None))
        .order_by(Response.id.desc()).limit(PAGE_ROWS)).all()
    names = dict(session.execute(select(Volunteer.id, Volunteer.name).where(
        Volunteer.id.in_({r.volunteer_id for r in rows if r.volunteer_id}))).all())
    zones = dict(session.execute(select(Zone.id, Zone.name).where(
        Zone.id.in_({r.zone_id for r in rows if r.zone_id}))).all())
    items = [{
        "id": r.id, "kind": r.kind, "label": KIND_LABELS.get(ResponseKind(r.kind), r.kind),
        "urgent": r.urgent, "text": r.text, "alert_id": r.alert_id,
        "name": names.get(r.volunteer_id) if r.volunteer_id else None,
        "zone": zones.get(r.zone_id) if r.zone_id else None,
        "sender": r.sender_masked or "",
        "at": local_time(r.created_at.isoformat(), timezone, "%Y-%m-%d %H:%M"),
    } for r in rows]
    items.sort(key=lambda i: (not (i["kind"] == ResponseKind.HELP and i["name"]),
                              not i["urgent"]))  # stable: newest first within each
    return items


def handled_items(session: Session, timezone: str) -> list[dict[str, Any]]:
    """The most recently handled items, with who handled them, when, and their note."""
    rows = session.scalars(
        select(Response).where(Response.kind.in_(list(KIND_LABELS)),
                               Response.handled_at.is_not(None))
        .order_by(Response.handled_at.desc()).limit(HANDLED_SHOWN)).all()
    notes: dict[int, str] = {}
    for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "inbox.handled")
                             .order_by(AuditEvent.id.desc()).limit(PAGE_ROWS)):
        rid = (e.details or {}).get("response_id")
        if isinstance(rid, int) and rid not in notes:
            notes[rid] = str((e.details or {}).get("note") or "")
    names = dict(session.execute(select(Volunteer.id, Volunteer.name).where(
        Volunteer.id.in_({r.volunteer_id for r in rows if r.volunteer_id}))).all())
    return [{"id": r.id, "label": KIND_LABELS.get(ResponseKind(r.kind), r.kind),
             "text": r.text, "name": names.get(r.volunteer_id) if r.volunteer_id else None,
             "sender": r.sender_masked or "", "by": r.handled_by or "",
             "at": local_time(r.handled_at.isoformat(), timezone, "%Y-%m-%d %H:%M")
             if r.handled_at else "", "note": notes.get(r.id, "")} for r in rows]


def mark_handled(session: Session, response_id: int, officer: str, note: str = "") -> None:
    """An officer dealt with an inbox item (with an optional note); audited."""
    resp = session.get(Response, response_id)
    if resp is None:
        raise NotFound(f"inbox item {response_id} not found")
    if resp.handled_at is not None:
        raise Refused(f"inbox item {response_id} was already handled by {resp.handled_by}")
    resp.handled_at = db_now(session)
    resp.handled_by = officer
    audit.record(session, f"officer:{officer}", "inbox.handled", alert_id=resp.alert_id,
                 response_id=response_id, note=_clip(note.strip()) or None)


def reopen(session: Session, response_id: int, officer: str) -> None:
    """Undo "handled": the item is back in the inbox; audited."""
    resp = session.get(Response, response_id)
    if resp is None:
        raise NotFound(f"inbox item {response_id} not found")
    resp.handled_at = None
    resp.handled_by = None
    audit.record(session, f"officer:{officer}", "inbox.reopened", alert_id=resp.alert_id,
                 response_id=response_id)


def _clip(text: str) -> str:
    return text if len(text) <= NOTE_MAX_CHARS else text[:NOTE_MAX_CHARS] + "…"

