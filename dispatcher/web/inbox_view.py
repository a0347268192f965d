"""The inbox and audit pages as an officer reads them: who sent it (name, zone and, for
officers, a number to call when the sender is a known volunteer), what it is in words,
a sender's repeats folded into one item, times in the post's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.crypto import Unreadable, Vault
from dispatcher.db import db_now
from dispatcher.domain import ResponseKind
from dispatcher.errors import NotFound, Refused
from dispatcher.models import (
    AuditEvent,
    Contact,
    InboundMessage,
    Membership,
    Response,
    Volunteer,
    Zone,
)
from dispatcher.web import paging
from dispatcher.web.localtime import local_time

#: What each kind of inbox item is called on the page (a stranger's HELP is an urgent
#: field report: only a known volunteer's HELP is one).
KIND_LABELS = {ResponseKind.HELP: "HELP", ResponseKind.FIELD_REPORT: "Field report",
               ResponseKind.UNPARSED: "Reply not understood"}
#: Most rows a page shows (audit), and most senders an inbox page shows.
PAGE_ROWS = 500
INBOX_PAGE = 50
#: Earlier messages of a folded sender shown under the newest one.
FOLD_SHOWN = 5
#: Longest note an officer may leave on a handled item (the rest is cut, and says so).
NOTE_MAX_CHARS = 500
#: The inbox's order: a volunteer's HELP, then other urgent items (a stranger's HELP),
#: then the rest; a sender's rank is that of their most urgent message.
RANK_HELP, RANK_URGENT, RANK_OTHER = 0, 1, 2


def _rank() -> ColumnElement[int]:
    return case((Response.kind == ResponseKind.HELP.value, RANK_HELP),
                (Response.urgent.is_(True), RANK_URGENT), else_=RANK_OTHER)


def _sender() -> ColumnElement[str]:
    """Who sent a message: the volunteer, else the number (its hash), so a stranger's
    repeats fold into one item however many they send."""
    return case(
        (Response.volunteer_id.is_not(None),
         literal("v") + cast(Response.volunteer_id, String)),
        (InboundMessage.sender_hash.is_not(None), literal("h") + InboundMessage.sender_hash),
        else_=literal("r") + cast(Response.id, String))


def _messages(handled: bool) -> Select[int, datetime | None, str | None, str, int]:
    """Inbox messages (waiting or handled) with their sender and rank."""
    return (select(Response.id, Response.handled_at, Response.handled_by,
                   _sender().label("sender"), _rank().label("rank"))
            .select_from(Response)
            .outerjoin(InboundMessage, InboundMessage.id == Response.inbound_id)
            .where(Response.kind.in_(list(KIND_LABELS)),
                   Response.handled_at.is_not(None) if handled
                   else Response.handled_at.is_(None)))


@dataclass(frozen=True)
class InboxPage:
    """One page of the inbox: each item a sender's messages folded together."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def waiting_count(session: Session) -> int:
    """How many items wait for an officer (a sender's repeats count once)."""
    m = _messages(handled=False).subquery()
    return session.scalar(select(func.count(func.distinct(m.c.sender)))) or 0


def inbox_page(session: Session, timezone: str, *, cursor: str | None = None,
               limit: int = INBOX_PAGE, vault: Vault | None = None,
               officer: str = "") -> InboxPage:
    """Waiting items, one per sender: a volunteer's HELP first, then other urgent items,
    then the rest, newest first within each; a sender's repeats are folded (with a count),
    so a stranger's flood is one item and never pushes a volunteer's HELP off the page.
    With `vault` (for an officer, named by `officer`) a known sender's number is given
    in clear, and the read audited."""
    m = _messages(handled=False).subquery()
    groups = (select(m.c.sender, func.min(m.c.rank).label("rank"),
                     func.max(m.c.id).label("last_id"), func.count().label("n"))
              .group_by(m.c.sender).subquery())
    query = select(groups.c.rank, groups.c.last_id, groups.c.n)
    rank, last_id = paging.decode(cursor, 2)
    if rank is not None:
        after = groups.c.rank > rank
        if last_id is not None:
            after = or_(after, and_(groups.c.rank == rank, groups.c.last_id < last_id))
        query = query.where(after)
    rows = session.execute(query.order_by(groups.c.rank, groups.c.last_id.desc())
                           .limit(limit + 1)).all()
    shown = rows[:limit]
    items = _items(session, timezone, [(r.last_id, r.n, r.rank) for r in shown],
                   handled=False, vault=vault, officer=officer)
    return InboxPage(items, paging.next_cursor([(r.rank, r.last_id) for r in rows], limit))


def handled_page(session: Session, timezone: str, *, page: int = 0,
                 limit: int = INBOX_PAGE) -> InboxPage:
    """Handled items, most recently handled first: the messages one officer handled at
    once folded as they were shown, with who, when and the note."""
    m = _messages(handled=True).subquery()
    groups = (select(func.max(m.c.id).label("last_id"), func.count().label("n"),
                     func.min(m.c.rank).label("rank"), m.c.handled_at)
              .group_by(m.c.sender, m.c.handled_at, m.c.handled_by).subquery())
    rows = session.execute(select(groups.c.last_id, groups.c.n, groups.c.rank)
                           .order_by(groups.c.handled_at.desc(), groups.c.last_id.desc())
                           .offset(page * limit).limit(limit + 1)).all()
    items = _items(session, timezone, [(r.last_id, r.n, r.rank) for r in rows[:limit]],
                   handled=True)
    return InboxPage(items, str(page + 1) if len(rows) > limit else None)


def _items(session: Session, timezone: str, groups: list[tuple[int, int, int]], *,
           handled: bool, vault: Vault | None = None,
           officer: str = "") -> list[dict[str, Any]]:
    """The page's items from (newest id, count, rank) of each folded sender."""
    ids = [g[0] for g in groups]
    latest = {r.id: r for r in session.scalars(select(Response).where(Response.id.in_(ids)))}
    vols = {r.volunteer_id for r in latest.values() if r.volunteer_id}
    names = dict(session.execute(select(Volunteer.id, Volunteer.name)
                                 .where(Volunteer.id.in_(vols))).all())
    zone_names = dict(session.execute(select(Zone.id, Zone.name)).all()) if ids else {}
    home: dict[int, list[str]] = {}
    for member, zid in session.execute(select(Membership.volunteer_id, Membership.zone_id)
                                    .where(Membership.volunteer_id.in_(vols))
                                    .order_by(Membership.tier)):
        home.setdefault(member, []).append(zone_names.get(zid, ""))
    phones = _phones(session, vault, vols) if vault is not None else {}
    earlier = _earlier(session, [g[0] for g in groups if g[1] > 1], handled)
    notes = _notes(session, ids) if handled else {}
    items = []
    for last_id, count, rank in groups:
        r = latest[last_id]
        vid = r.volunteer_id
        items.append({
            "id": r.id, "kind": r.kind, "label": KIND_LABELS.get(ResponseKind(r.kind), r.kind),
            "help": rank == RANK_HELP, "urgent": rank <= RANK_URGENT,
            "text": r.text, "alert_id": r.alert_id, "count": count,
            "name": names.get(vid) if vid else None,
            "zone": zone_names.get(r.zone_id) if r.zone_id
            else ", ".join(dict.fromkeys(home.get(vid, []))) if vid else None,
            "sender": r.sender_masked or "", "phone": phones.get(vid) if vid else None,
            "at": local_time(r.created_at.isoformat(), timezone, "%Y-%m-%d %H:%M"),
            "earlier": [{"at": local_time(e.created_at.isoformat(), timezone, "%H:%M"),
                         "label": KIND_LABELS.get(ResponseKind(e.kind), e.kind),
                         "text": e.text} for e in earlier.get(r.id, [])],
            "by": r.handled_by or "", "note": notes.get(r.id, ""),
            "handled_at": local_time(r.handled_at.isoformat(), timezone, "%Y-%m-%d %H:%M")
            if r.handled_at else ""})
    if phones:
        audit.record(session, f"officer:{officer}", "inbox.phones_read",
                     volunteers=sorted(phones))
    return items


def _earlier(session: Session, ids: list[int], handled: bool) -> dict[int, list[Response]]:
    """Up to FOLD_SHOWN earlier messages folded under each shown one (same sender, same
    state; for handled items, handled in the same act)."""
    if not ids:
        return {}
    m = _messages(handled).subquery()
    shown = select(m.c.id, m.c.sender, m.c.handled_at).where(m.c.id.in_(ids)).subquery()
    ranked = (select(m.c.id.label("id"), shown.c.id.label("head"), func.row_number().over(
        partition_by=shown.c.id, order_by=m.c.id.desc()).label("n"))
              .join(shown, and_(m.c.sender == shown.c.sender, m.c.id < shown.c.id,
                                or_(and_(m.c.handled_at.is_(None),
                                         shown.c.handled_at.is_(None)),
                                    m.c.handled_at == shown.c.handled_at)))
              .subquery())
    pairs = session.execute(select(ranked.c.id, ranked.c.head)
                            .where(ranked.c.n <= FOLD_SHOWN)).all()
    rows = {r.id: r for r in session.scalars(select(Response).where(
        Response.id.in_([p.id for p in pairs])))}
    out: dict[int, list[Response]] = {}
    for p in sorted(pairs, key=lambda p: -p.id):
        out.setdefault(p.head, []).append(rows[p.id])
    return out


def _phones(session: Session, vault: Vault, volunteer_ids: set[int]) -> dict[int, str]:
    """Known senders' SMS numbers in clear (the caller is an officer; the read is audited)."""
    out: dict[int, str] = {}
    for c in session.scalars(select(Contact).where(Contact.volunteer_id.in_(volunteer_ids),
                                                   Contact.channel == "sms")):
        try:
            out[c.volunteer_id] = vault.decrypt(c.value_enc)
        except Unreadable:
            continue  # the masked number stays shown
    return out


def _notes(session: Session, ids: list[int]) -> dict[int, str]:
    """The note of the latest "handled" of each item."""
    notes: dict[int, str] = {}
    for e in session.scalars(select(AuditEvent).where(AuditEvent.action == "inbox.handled")
                             .order_by(AuditEvent.id.desc()).limit(PAGE_ROWS * 4)):
        rid = (e.details or {}).get("response_id")
        if isinstance(rid, int) and rid in ids and rid not in notes:
            notes[rid] = str((e.details or {}).get("note") or "")
    return notes


def _folded(session: Session, resp: Response) -> list[Response]:
    """The item as the inbox shows it: this message and the sender's earlier ones in the
    same state (waiting, or handled in the same act)."""
    m = _messages(resp.handled_at is not None).subquery()
    sender = session.scalar(select(m.c.sender).where(m.c.id == resp.id))
    if sender is None:
        return [resp]
    same = select(m.c.id).where(m.c.sender == sender, m.c.id <= resp.id)
    if resp.handled_at is not None:
        same = same.where(m.c.handled_at == resp.handled_at,
                          m.c.handled_by == resp.handled_by)
    return list(session.scalars(select(Response).where(Response.id.in_(same))))


def mark_handled(session: Session, response_id: int, officer: str, note: str = "") -> int:
    """An officer dealt with an inbox item: it and the sender's earlier waiting messages
    folded under it (never one that came in after); audited with the optional note.
    Returns how many messages that was."""
    resp = session.get(Response, response_id, with_for_update=True)
    if resp is None:
        raise NotFound(f"inbox item {response_id} not found")
    if resp.handled_at is not None:
        raise Refused(f"inbox item {response_id} was already handled by {resp.handled_by}")
    rows = _folded(session, resp)
    now = db_now(session)
    for r in rows:
        r.handled_at, r.handled_by = now, officer
    audit.record(session, f"officer:{officer}", "inbox.handled", alert_id=resp.alert_id,
                 response_id=response_id, messages=len(rows),
                 note=_clip(note.strip()) or None)
    return len(rows)


def reopen(session: Session, response_id: int, officer: str) -> None:
    """Undo "handled": the item (every message handled with it) is back in the inbox;
    audited."""
    resp = session.get(Response, response_id, with_for_update=True)
    if resp is None:
        raise NotFound(f"inbox item {response_id} not found")
    if resp.handled_at is None:
        return
    rows = _folded(session, resp)
    for r in rows:
        r.handled_at, r.handled_by = None, None
    audit.record(session, f"officer:{officer}", "inbox.reopened", alert_id=resp.alert_id,
                 response_id=response_id, messages=len(rows))


def _clip(text: str) -> str:
    return text if len(text) <= NOTE_MAX_CHARS else text[:NOTE_MAX_CHARS] + "…"

