"""The audit page as an officer reads it: who (officer, volunteer or the engine, by name),
what happened in words, and the details with names of volunteers and zones instead of ids;
filtered by actor, alert and kind. Untrusted text (a claimed login name, a note) stays
text: the template escapes it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.errors import AlnError
from dispatcher.localtime import local_time
from dispatcher.models import AuditEvent, Contact, Recipient, Volunteer
from dispatcher.web.limits import MAX_ROW_ID

#: Most rows the page shows (newest first; the CSV export has more).
PAGE_ROWS = 500
#: What each kind of event is called on the page (a kind not listed shows as recorded).
KIND_LABELS = {
    "alert.sent": "Alert sent", "alert.updated": "Alert updated",
    "alert.cancelled": "Alert cancelled", "alert.completed": "Alert completed",
    "alert.drafted_from_cap": "Draft made from a CAP file",
    "alert.draft_cancelled_by_cap": "Draft cancelled by a CAP file",
    "alert.phones_read": "Phone numbers shown to an officer",
    "recipient.acknowledged": "Volunteer acknowledged",
    "recipient.unreachable": "Volunteer unreachable",
    "zone.acknowledged": "Zone covered", "zone.escalated": "Zone escalated",
    "zone.unreached": "Zone unreached", "delivery.failover": "Switched channel",
    "delivery.possibly_duplicated": "Message possibly sent twice",
    "volunteer.needs_help": "Volunteer asked for HELP",
    "volunteer.erased": "Volunteer erased", "contact.opted_out": "Contact opted out",
    "contact.opted_in": "Contact opted back in", "reply.attached": "Reply attached to alert",
    "inbox.handled": "Inbox item handled", "inbox.reopened": "Inbox item reopened",
    "officer.login": "Officer logged in", "officer.login_failed": "Failed login",
    "officer.logout": "Officer logged out", "officer.added": "Officer added",
    "officer.password_set": "Officer password set", "officer.revoked": "Officer revoked",
    "roster.read": "Roster read", "roster.imported": "Roster imported",
    "post.created": "Post created", "retention.applied": "Old records erased (retention)",
    "keys.rotation_started": "Key rotation started", "keys.rotated": "Keys rotated",
}
#: How a detail is called on the page; ids named here are replaced by a name.
DETAIL_LABELS = {
    "recipient_id": "volunteer", "volunteer_id": "volunteer", "recipients": "volunteers",
    "contact_ids": "contacts", "response_id": "inbox item",
    "delivery_id": "message", "from_channel": "from", "to_channel": "to",
    "client": "from address", "name": "name tried", "messages": "messages sent",
    "late_seconds": "late by", "from_tier": "from", "to_tier": "to",
}


#: Actors that are not a person's name.
ACTOR_LABELS = {"volunteer": "a volunteer", "anonymous": "anonymous (not logged in)",
                "system": "the engine", "cli": "the command line"}
#: Details that hold ids of recipients, volunteers or contacts: shown as names.
_NAMED = {"recipient_id": "recipient", "recipients": "recipient",
          "volunteer_id": "volunteer", "contact_ids": "contact"}


class BadFilter(AlnError):
    """A filter of the audit page that names nothing it can filter by."""


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    alert_id: int | None = None
    kind: str | None = None


def actor_label(actor: str) -> str:
    """"officer:duty" -> "duty (officer)"; "volunteer" -> "a volunteer"."""
    kind, _, name = actor.partition(":")
    if name:
        return f"{name} ({kind})"
    return ACTOR_LABELS.get(actor, actor)


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def choices(session: Session) -> tuple[list[str], list[str]]:
    """The actors and kinds the trail holds, for the filter form (and to check a filter)."""
    actors = sorted(session.scalars(select(AuditEvent.actor).distinct()))
    kinds = sorted(session.scalars(select(AuditEvent.action).distinct()))
    return actors, kinds


def parse_filter(params: Mapping[str, str], actors: list[str],
                 kinds: list[str]) -> AuditFilter:
    """The page's query parameters as a filter; BadFilter names what is wrong."""
    actor = (params.get("actor") or "").strip() or None
    kind = (params.get("kind") or "").strip() or None
    raw_alert = (params.get("alert") or "").strip()
    alert_id = None
    if raw_alert:
        if not raw_alert.isdigit() or not 1 <= int(raw_alert) <= MAX_ROW_ID:
            raise BadFilter(f"alert must be an alert number such as 12, not {raw_alert[:40]!r}")
        alert_id = int(raw_alert)
    if actor is not None and actor not in actors:
        raise BadFilter(f"nobody called {actor[:64]!r} is in the audit trail")
    if kind is not None and kind not in kinds:
        raise BadFilter(f"{kind[:64]!r} is not a kind of event in the audit trail")
    return AuditFilter(actor=actor, alert_id=alert_id, kind=kind)


def audit_events(session: Session, timezone: str,
                 where: AuditFilter = AuditFilter()) -> list[dict[str, Any]]:
    """The newest matching events, in words: who, what, and details with names."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE_ROWS)
    if where.actor is not None:
        query = query.where(AuditEvent.actor == where.actor)
    if where.alert_id is not None:
        query = query.where(AuditEvent.alert_id == where.alert_id)
    if where.kind is not None:
        query = query.where(AuditEvent.action == where.kind)
    events = list(session.scalars(query))
    names = _names(session, events)
    return [{"at": local_time(e.at.isoformat(), timezone, "%Y-%m-%d %H:%M:%S"),
             "actor": e.actor, "who": actor_label(e.actor), "kind": e.action,
             "what": kind_label(e.action), "alert_id": e.alert_id,
             "details": _details(e.details or {}, names)} for e in events]


def _ids(value: Any) -> list[int]:
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, int) and not isinstance(v, bool)]


def _names(session: Session, events: list[AuditEvent]) -> dict[tuple[str, int], str]:
    """Names for the recipient, volunteer and contact ids the events mention, keyed by
    ("recipient" | "volunteer" | "contact", id)."""
    wanted: dict[str, set[int]] = {"recipient": set(), "volunteer": set(), "contact": set()}
    for e in events:
        for key, what in _NAMED.items():
            wanted[what].update(_ids((e.details or {}).get(key)))
    names: dict[tuple[str, int], str] = {}
    if wanted["recipient"]:
        for rid, name in session.execute(
                select(Recipient.id, Volunteer.name).join(Volunteer)
                .where(Recipient.id.in_(wanted["recipient"]))):
            names["recipient", rid] = name
    if wanted["volunteer"]:
        for vid, name in session.execute(select(Volunteer.id, Volunteer.name)
                                         .where(Volunteer.id.in_(wanted["volunteer"]))):
            names["volunteer", vid] = name
    if wanted["contact"]:
        for cid, channel, name in session.execute(
                select(Contact.id, Contact.channel, Volunteer.name).join(Volunteer)
                .where(Contact.id.in_(wanted["contact"]))):
            names["contact", cid] = f"{name} ({channel})"
    return names


def _details(details: dict[str, Any], names: dict[tuple[str, int], str]) -> list[
        tuple[str, str]]:
    out = []
    for key, value in sorted(details.items()):
        if value is None or value == "" or value == []:
            continue
        if key in _NAMED:
            what = _NAMED[key]
            shown = ", ".join(names.get((what, i), f"#{i}") for i in _ids(value))
        elif key.endswith("_id") and isinstance(value, int):
            shown = f"#{value}"  # an id with nothing more readable to show
        elif key.endswith("_seconds") and isinstance(value, int | float):
            shown = f"{value:.0f} s"
        else:
            shown = _value(value)
        out.append((DETAIL_LABELS.get(key, key.replace("_", " ")), shown))
    return out


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in value.items())
    return str(value)
