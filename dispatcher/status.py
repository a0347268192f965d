"""An alert's live state: zones and recipients, as `aln alert status` and the board show it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter
from typing import Any, Protocol, TextIO, cast

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, selectinload

from dispatcher.crypto import Unreadable, Vault
from dispatcher.db import db_now, read_one_snapshot
from dispatcher.domain import (
    DUTY_OFFICER_TIER,
    AlertState,
    DeadlineKind,
    DeadlineState,
    DeliveryPurpose,
    RecipientState,
    ResponseKind,
    ZoneState,
    tier_name,
)
from dispatcher.errors import NotFound
from dispatcher.heap import collector_paused
from dispatcher.models import (
    Alert,
    AlertZone,
    Deadline,
    Delivery,
    Post,
    Recipient,
    Response,
    Volunteer,
    Zone,
)
from dispatcher.recipient_json import (
    PHONE_ORDER,
    RecipientJson,
    recipients_json,
    whole_alert_plan,
)
from dispatcher.replies.attach import unattached

#: Recipients still to be called: asked, and not (yet) answering.
SILENT = (RecipientState.PENDING, RecipientState.NOTIFIED, RecipientState.ESCALATED,
          RecipientState.FAILED)
#: The board's order: what needs a call first. A zone with a HELP comes right after the
#: unreached ones, whatever its state.
ZONE_PRIORITY = {ZoneState.UNREACHED: 0, "help": 1, ZoneState.WAITING: 2,
                 ZoneState.ACKNOWLEDGED: 3}


#: The deliveries whose outcomes are counted: the alert itself, or it again on another path.
OUTCOME_PURPOSES = (DeliveryPurpose.ALERT.value, DeliveryPurpose.FAILOVER.value)
#: Recipients joined at a time into the status's JSON array (~0.4 MB of JSON).
WRITE_SLICE = 1000


def delivery_outcomes(session: Session, alert_id: int,
                      channel: str | None = None) -> dict[str, dict[str, int]]:
    """How the alert's messages ended, per channel: {"voice": {"no_answer": 2, ...}, ...}
    (the board, the status JSON and the report count them here); one channel's only when
    given."""
    where = [Delivery.alert_id == alert_id, Delivery.purpose.in_(OUTCOME_PURPOSES)]
    if channel is not None:
        where.append(Delivery.channel == channel)
    return outcomes_of(session.execute(
        select(Delivery.channel, Delivery.purpose, Delivery.state, func.count())
        .where(*where).group_by(Delivery.channel, Delivery.purpose, Delivery.state)))


def outcomes_of(counts: Iterable[Any]) -> dict[str, dict[str, int]]:
    """`delivery_outcomes` from (channel, purpose, state, count) rows, any grouping finer
    than channel and state (the report's counts of every delivery come this way too):
    the outcome purposes only, channels and states in alphabetical order."""
    tally: dict[tuple[str, str], int] = {}
    for channel, purpose, state, count in counts:
        if purpose in OUTCOME_PURPOSES:
            key = (str(channel), str(getattr(state, "value", state)))
            tally[key] = tally.get(key, 0) + int(count)
    out: dict[str, dict[str, int]] = {}
    for (channel, state), count in sorted(tally.items()):
        out.setdefault(channel, {})[state] = count
    return out


#: How a call's delivery state reads for an officer (the board, the report).
CALL_OUTCOME_WORDS = {"delivered": "answered", "answered": "on the line",
                      "no_answer": "no answer", "machine": "voicemail", "sent": "ringing",
                      "accepted": "queued", "sending": "dialling", "pending": "to call"}


def call_outcomes_line(counts: dict[str, int]) -> str:
    """"2 answered, 1 no answer, 1 voicemail": a channel's outcome counts in words."""
    return ", ".join(f"{n} {CALL_OUTCOME_WORDS.get(state, state)}"
                     for state, n in counts.items())


def alert_status(session: Session, alert_id: int) -> dict[str, Any]:
    """The JSON of DESIGN.md: `id`, `recipients` and `zones`, plus what an officer needs."""
    head, recipients = _status(session, alert_id)
    return {**head, "recipients": json.loads(_json_list(recipients))}


def write_alert_status(session: Session, alert_id: int, out: TextIO) -> None:
    """`alert_status` as compact JSON on `out`, its recipients as the database wrote them
    (never parsed into dicts: an alert to 100,000 volunteers is 45 MB of them)."""
    # The collector waits until the rows are written and freed: resumed while they live,
    # its next passes walk their 200,000 new tuples again and again (~0.2 s of CPU time).
    with collector_paused():
        head, recipients = _status(session, alert_id)
        out.write(json.dumps(head, ensure_ascii=False, default=str)[:-1])
        out.write(', "recipients": ')
        # In slices: one 45 MB string (joined, then encoded whole) cost ~0.2 s more.
        out.writelines(_json_list_parts(recipients))
        out.write("}\n")
        del recipients


def _status(session: Session, alert_id: int) -> tuple[dict[str, Any], list[RecipientJson]]:
    """The status JSON but its recipients, and the recipients' rows, read as of one
    moment (the zones' states must agree with their recipients')."""
    read_one_snapshot(session)
    alert = find_alert(session, alert_id)
    recipients = recipients_json(session, alert_id)
    # PostgreSQL counts the whole alert's deliveries with room to sort them in memory (a
    # fresh alert's count was planned for one row, and its sort spilled to disk).
    with whole_alert_plan(session.connection()):
        outcomes = delivery_outcomes(session, alert_id)
    return ({**alert_head(session, alert, figures_from(recipients)),
             "outcomes": outcomes}, recipients)


def _json_list(rows: Sequence[RecipientJson]) -> str:
    return "".join(_json_list_parts(rows))


def _json_list_parts(rows: Sequence[RecipientJson]) -> Iterator[str]:
    """The JSON array of the rows' JSON texts, in pieces of `WRITE_SLICE` rows."""
    yield "["
    for start in range(0, len(rows), WRITE_SLICE):
        if start:
            yield ","
        yield ",".join([r.json for r in rows[start:start + WRITE_SLICE]])
    yield "]"


def find_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def recipient_rows(session: Session, alert_id: int, *where: ColumnElement[bool],
                   limit: int | None = None) -> list[dict[str, Any]]:
    """Some of an alert's recipients as the status JSON shows them, in the board's order
    (zone, tier, id): the board's changed rows and its pages of a zone's volunteers."""
    return cast(list[dict[str, Any]], json.loads(_json_list(
        recipients_json(session, alert_id, *where, limit=limit))))


def alert_head(session: Session, alert: Alert, figures: Figures) -> dict[str, Any]:
    """Everything of the status JSON but its recipients: the alert, its zones (figures and
    whom to call from `figures`), the summary, the replies to attach and the versions."""
    alert_id = alert.id
    zones = session.scalars(select(AlertZone).where(AlertZone.alert_id == alert_id)
                            .options(selectinload(AlertZone.zone))).all()
    due: dict[int, Any] = {}
    for zone_id, due_at in session.execute(
            select(Deadline.zone_id, Deadline.due_at).where(
                Deadline.alert_id == alert_id, Deadline.state == DeadlineState.PENDING,
                # A fill is rows still to write (`dispatch.fill`), not a deadline to show.
                Deadline.kind != DeadlineKind.FILL)):
        due[zone_id] = min(due_at, due.get(zone_id, due_at))
    helpers: dict[int, set[int]] = {}  # zone id -> recipients who asked for help
    helps: dict[int, int] = {}
    for help_zone, helper in session.execute(
            select(Response.zone_id, Response.recipient_id).where(
                Response.alert_id == alert_id, Response.kind == ResponseKind.HELP)):
        helps[help_zone or 0] = helps.get(help_zone or 0, 0) + 1
        if helper is not None:
            helpers.setdefault(help_zone or 0, set()).add(helper)
    cancelled = alert.state == AlertState.CANCELLED
    zone_rows = [zone_row(az, figures(az, helpers.get(az.zone_id, set()), cancelled),
                          helps.get(az.zone_id, 0), due.get(az.zone_id), cancelled)
                 for az in sorted(zones, key=lambda z: z.zone.name)]
    post = session.get(Post, alert.post_id)
    pending = [z["next_deadline_at"] for z in zone_rows if z["next_deadline_at"]]
    replies = unattached(session, alert_id)
    who = {rid: (name, zone) for rid, name, zone in session.execute(
        select(Recipient.id, Volunteer.name, Zone.name)
        .join(Volunteer, Volunteer.id == Recipient.volunteer_id)
        .join(Zone, Zone.id == Recipient.zone_id)
        .where(Recipient.alert_id == alert_id,
               Recipient.id.in_([r.recipient_id for r in replies if r.recipient_id])))
    } if replies else {}
    return {
        "id": alert.id, "title": alert.title, "kind": alert.kind, "msg_type": alert.msg_type,
        "exercise": alert.exercise, "state": alert.state, "reply_code": alert.reply_code,
        "ack_window_seconds": alert.ack_window_seconds, "sent_at": _iso(alert.sent_at),
        "references": alert.references_alert_id, "policy": alert.policy,
        "zones": zone_rows,
        "now": _iso(db_now(session)), "timezone": post.timezone if post else "UTC",
        "next_escalation_at": min(pending) if pending else None,
        "summary": {
            "zones": len(zone_rows), "help": sum(helps.values()),
            **{state.value: len([z for z in zone_rows if z["state"] == state])
               for state in ZoneState},
        },
        "unattached_replies": [
            {"id": r.id, "text": r.text, "received_at": _iso(r.created_at),
             "recipient_id": r.recipient_id,
             "name": who.get(r.recipient_id or 0, (None, None))[0],
             "zone": who.get(r.recipient_id or 0, (None, None))[1]}
            for r in replies],
        "versions": [{"number": v.number, "msg_type": v.msg_type, "body": v.body,
                      "sent_at": _iso(v.sent_at), "by": v.created_by, "messages": v.messages}
                     for v in alert.versions],
    }


@dataclass(frozen=True)
class ZoneFigures:
    """A zone's counts: its volunteers (not the duty officer), how many acknowledged, and
    whom to call (recipient ids, in the board's order)."""

    recipients: int
    acknowledged: int
    call_next: list[int]


#: `figures(zone, its HELP callers' ids, whether the alert is cancelled)`: the status JSON
#: counts the recipients it loaded; the live board asks the database.
Figures = Callable[[AlertZone, set[int], bool], ZoneFigures]


def zone_row(az: AlertZone, figures: ZoneFigures, help_count: int, due_at: Any,
             cancelled: bool) -> dict[str, Any]:
    """One zone as the status JSON and the board show it."""
    return {
        "zone": az.zone.name, "state": az.state,
        "tier": tier_name(az.current_tier) if az.current_tier >= 0 else None,
        "acknowledged_at": _iso(az.acknowledged_at), "unreached_at": _iso(az.unreached_at),
        "recipients": figures.recipients, "acknowledged": figures.acknowledged,
        # Display only: the stored state of a cancelled alert's zone does not change.
        "shown_state": "cancelled" if cancelled and az.state == ZoneState.WAITING
        else az.state,
        "help": help_count,
        "priority": ZONE_PRIORITY["help"] if help_count and az.state != ZoneState.UNREACHED
        else ZONE_PRIORITY[az.state],
        "next_deadline_at": None if cancelled else _iso(due_at),
        "call_next": figures.call_next,
    }


class Member(Protocol):
    """What a zone's figures need of a recipient."""

    @property
    def id(self) -> int: ...
    @property
    def zone_id(self) -> int: ...
    @property
    def tier(self) -> int: ...
    @property
    def state(self) -> Any: ...


#: A recipient's zone, and its (tier, state): what `figures_from` groups and counts by.
_zone_of, _tier_state = attrgetter("zone_id"), attrgetter("tier", "state")


def figures_from(members: Sequence[Member]) -> Figures:
    """Zone figures counted from the alert's recipients, in the board's order."""
    by_zone: dict[int, list[Member]] = {}
    # In the board's order a zone's recipients come together: one list extension each.
    for zone_id, group in groupby(members, _zone_of):
        by_zone.setdefault(zone_id, []).extend(group)

    def figures(az: AlertZone, helpers: set[int], cancelled: bool) -> ZoneFigures:
        mine = by_zone.get(az.zone_id, [])
        # Counted in C, (tier, state) -> how many: a zone is thousands of recipients.
        counts = Counter(map(_tier_state, mine))
        # A cancel ends the chain, not a volunteer's call for help.
        rule = None if cancelled else call_next_rule(
            az, {tier for tier, _ in counts if tier != DUTY_OFFICER_TIER})
        chosen = [] if rule is None else [
            r.id for r in mine
            if r.tier == rule[0] and (rule[1] is None or r.state in rule[1])]
        named = set(chosen)
        return ZoneFigures(
            sum(n for (tier, _), n in counts.items() if tier != DUTY_OFFICER_TIER),
            sum(n for (_, state), n in counts.items() if state == RecipientState.ACKNOWLEDGED),
            chosen + ([r.id for r in mine if r.id in helpers and r.id not in named]
                      if helpers else []))

    return figures


def call_next_rule(az: AlertZone, volunteer_tiers: Collection[int]
                   ) -> tuple[int, tuple[RecipientState, ...] | None] | None:
    """Whom an officer should phone in a zone, besides whoever asked for help: the
    volunteers of one tier in some states (None: any), or nobody. The current tier's silent
    volunteers while it waits; for an unreached zone (or one the duty officer was asked
    for), the last tier's."""
    if az.state == ZoneState.ACKNOWLEDGED or not volunteer_tiers:
        return None
    if az.state == ZoneState.WAITING and az.current_tier != DUTY_OFFICER_TIER:
        return az.current_tier, SILENT
    return max(volunteer_tiers), None


def clear_phones(session: Session, vault: Vault, alert_id: int,
                 recipient_ids: list[int]) -> dict[int, str]:
    """The phone numbers in clear of some of an alert's recipients, for an officer to call.
    The caller audits the read."""
    out: dict[int, str] = {}
    for r in session.scalars(select(Recipient).where(
            Recipient.alert_id == alert_id, Recipient.id.in_(recipient_ids))
            .options(selectinload(Recipient.volunteer).selectinload(Volunteer.contacts))):
        phone = _phone(r.volunteer.contacts)
        if phone is not None:
            try:
                out[r.id] = vault.decrypt(phone.value_enc)
            except Unreadable:
                out[r.id] = phone.masked
    return out


def _phone(contacts: Sequence[Any]) -> Any:
    """The contact (an object or a row with `channel`) whose number an officer calls."""
    by_channel = {c.channel: c for c in contacts}
    return next((by_channel[ch] for ch in PHONE_ORDER if ch in by_channel), None)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
