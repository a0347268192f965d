"""The figures of a post-exercise report, read straight from the database.

Definitions (also in the README):
- recipients: volunteers asked (duty officers are counted apart);
- handed off: at least one message accepted by a provider; reached: at least one
  delivery confirmed by a receipt;
- a volunteer's time to acknowledge = acknowledged_at - notified_at (first message
  accepted); the summary's median and 90th percentile are over those;
- a zone's time to acknowledge = the zone's acknowledged_at - the alert's sent_at,
  escalation delays included;
- escalations: escalate deadlines that fired and moved a zone on (or gave it up).
Every query is a bulk select of plain columns: 100,000 deliveries take well under 2 s.
"""

from __future__ import annotations

import gc
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from dispatcher.db import db_today
from dispatcher.domain import (
    DEAD_DELIVERY_STATES,
    DUTY_OFFICER_TIER,
    DeadlineState,
    DeliveryState,
    RecipientState,
    ZoneState,
    tier_name,
)
from dispatcher.errors import NotFound
from dispatcher.models import (
    Alert,
    AlertZone,
    Contact,
    Deadline,
    Delivery,
    Membership,
    Post,
    Recipient,
    Response,
    Volunteer,
    Zone,
)
from dispatcher.roster.gaps import TERM_ENDING_SOON_DAYS
from dispatcher.status import delivery_outcomes

#: Delivery states that mean a provider took the message (a call that rang counts).
HANDED_OFF = {DeliveryState.ACCEPTED, DeliveryState.SENT, DeliveryState.DELIVERED,
              DeliveryState.ANSWERED, DeliveryState.MACHINE, DeliveryState.NO_ANSWER,
              DeliveryState.BUSY}
#: Delivery states in the order the report lists them, best news first.
REPORT_ORDER = (DeliveryState.DELIVERED, DeliveryState.ANSWERED, DeliveryState.MACHINE,
                DeliveryState.SENT, DeliveryState.ACCEPTED, DeliveryState.SENDING,
                DeliveryState.PENDING, DeliveryState.NO_ANSWER, DeliveryState.BUSY,
                DeliveryState.UNDELIVERED, DeliveryState.BOUNCED, DeliveryState.FAILED,
                DeliveryState.CANCELLED)
#: Alert-path purposes (the alert itself, or it again after a failover).
ALERT_PURPOSES = ("alert", "failover")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of a list; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _seconds(later: Any, earlier: Any) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


def build_report(session: Session, alert_id: int, today: date | None = None) -> dict[str, Any]:
    """Every figure of one alert's report (see the module docstring for definitions)."""
    # Hundreds of thousands of short-lived rows and dicts, none in a cycle: the cyclic
    # collector would rescan them over and over (a third of the time at 100,000 rows).
    paused = gc.isenabled()
    gc.disable()
    try:
        return _build_report(session, alert_id, today)
    finally:
        if paused:
            gc.enable()


def _build_report(session: Session, alert_id: int, today: date | None) -> dict[str, Any]:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    post = session.get(Post, alert.post_id)
    assert post is not None
    today = today or db_today(session, post.timezone)
    # Plain column selects on the connection: no ORM object per row, which is what keeps
    # 100,000 deliveries well inside the 2-second budget.
    db = session.connection()
    recs = db.execute(
        select(Recipient.id, Recipient.volunteer_id, Recipient.zone_id, Recipient.tier,
               Recipient.state, Recipient.notified_at, Recipient.acknowledged_at,
               Recipient.acknowledged_via, Volunteer.name, Zone.name.label("zone"))
        .join(Volunteer, Volunteer.id == Recipient.volunteer_id)
        .join(Zone, Zone.id == Recipient.zone_id)
        .where(Recipient.alert_id == alert_id).order_by(Zone.name, Recipient.tier,
                                                         Volunteer.name)).all()
    skipped: dict[int, list[Any]] = dict(db.execute(
        select(Recipient.id, Recipient.skipped).where(
            Recipient.alert_id == alert_id,
            func.length(cast(Recipient.skipped, String)) > 2)).all())
    deliveries = db.execute(
        select(Delivery.recipient_id, Delivery.channel, Delivery.purpose, Delivery.state,
               Delivery.error_code, Delivery.possibly_duplicate)
        .where(Delivery.alert_id == alert_id)).all()
    responses = session.execute(
        select(Response.recipient_id, Response.zone_id, Response.kind, Response.text,
               Response.headcount_reached, Response.headcount_need_help, Response.urgent)
        .where(Response.alert_id == alert_id).order_by(Response.id)).all()
    zones = session.execute(
        select(AlertZone.zone_id, Zone.name, AlertZone.state, AlertZone.current_tier,
               AlertZone.acknowledged_at, AlertZone.unreached_at)
        .join(Zone, Zone.id == AlertZone.zone_id)
        .where(AlertZone.alert_id == alert_id).order_by(Zone.name)).all()
    escalations_by_zone = dict(session.execute(
        select(Deadline.zone_id, func.count()).where(
            Deadline.alert_id == alert_id, Deadline.kind == "escalate",
            Deadline.state == DeadlineState.DONE).group_by(Deadline.zone_id)).all())
    volunteer_ids = {r.volunteer_id for r in recs}
    contacts: dict[int, list[Any]] = defaultdict(list)
    for c in db.execute(select(Contact.volunteer_id, Contact.channel, Contact.masked,
                               Contact.opted_out, Contact.dead_reason, Contact.dead_at)
                        .where(Contact.volunteer_id.in_(select(Recipient.volunteer_id).where(
                            Recipient.alert_id == alert_id)))).all():
        contacts[c[0]].append(c)

    masked_of = {vid: ", ".join(c[2] for c in rows) for vid, rows in contacts.items()}
    # One pass over the deliveries: per-recipient paths, outcomes and codes, and totals.
    channels_of: dict[int, set[str]] = defaultdict(set)
    states_of: dict[int, set[str]] = defaultdict(set)
    codes_of: dict[int, set[str]] = defaultdict(set)
    by_status: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    failovers = duplicated = 0
    for rec_id, channel, purpose, state, code, dup in deliveries:
        by_status[state] += 1
        if code:
            by_code[code] += 1
        failovers += purpose == "failover"
        duplicated += bool(dup)
        if purpose in ALERT_PURPOSES:
            channels_of[rec_id].add(channel)
            states_of[rec_id].add(state)
            if code:
                codes_of[rec_id].add(code)
    last_reply: dict[int, Any] = {}
    heads: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for resp in responses:
        if resp.recipient_id is not None:
            last_reply[resp.recipient_id] = resp
        if resp.kind == "headcount" and resp.zone_id is not None:
            heads[resp.zone_id][0] += resp.headcount_reached or 0
            heads[resp.zone_id][1] += resp.headcount_need_help or 0

    volunteers = []
    ack_times: list[float] = []
    for r in recs:
        if r.tier == DUTY_OFFICER_TIER:
            continue
        acked = r.state == RecipientState.ACKNOWLEDGED
        tta = _seconds(r.acknowledged_at, r.notified_at) if acked else None
        if tta is not None:
            ack_times.append(tta)
        reply = last_reply.get(r.id)
        volunteers.append({
            "name": r.name, "zone": r.zone, "tier": tier_name(r.tier), "state": r.state,
            "channels_tried": sorted(channels_of[r.id]),
            "delivery_outcome": _outcome(states_of[r.id]),
            "error_codes": sorted(codes_of[r.id]),
            "time_to_ack_seconds": tta, "acknowledged_via": r.acknowledged_via,
            "reply": {"kind": reply.kind, "text": reply.text} if reply else None,
            "contact": masked_of.get(r.volunteer_id, ""),
            "skipped": skipped.get(r.id) or [],
        })

    by_zone: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in volunteers:
        by_zone[v["zone"]].append(v)
    zone_rows = []
    for z in zones:
        people = by_zone[z.name]
        reported = z.zone_id in heads  # before `heads[...]` below adds it
        zone_rows.append({
            "zone": z.name, "state": z.state, "targeted": len(people),
            "reached": sum(1 for v in people if v["delivery_outcome"] == DeliveryState.DELIVERED),
            "handed_off": sum(1 for v in people if v["delivery_outcome"] in HANDED_OFF),
            "acknowledged": z.state == ZoneState.ACKNOWLEDGED,
            "acknowledged_volunteers": sum(1 for v in people
                                           if v["state"] == RecipientState.ACKNOWLEDGED),
            "time_to_ack_seconds": _seconds(z.acknowledged_at, alert.sent_at),
            "deepest_tier": tier_name(z.current_tier) if z.current_tier >= 0 else None,
            "escalations": escalations_by_zone.get(z.zone_id, 0),
            "headcount_reported": reported,
            "headcount_reached": heads[z.zone_id][0],
            "headcount_need_help": heads[z.zone_id][1],
        })

    acknowledged = sum(1 for v in volunteers if v["state"] == RecipientState.ACKNOWLEDGED)
    summary = {
        "recipients": len(volunteers),
        "handed_off": sum(1 for v in volunteers if v["delivery_outcome"] in HANDED_OFF),
        "reached": sum(1 for v in volunteers if v["delivery_outcome"] == DeliveryState.DELIVERED),
        "acknowledged": acknowledged,
        "acknowledgement_rate": round(acknowledged / len(volunteers), 4) if volunteers else 0.0,
        "median_time_to_ack_seconds": statistics.median(ack_times) if ack_times else None,
        "p90_time_to_ack_seconds": percentile(ack_times, 0.9),
        "deliveries": len(deliveries),
        "deliveries_by_status": dict(by_status),
        "deliveries_by_error_code": dict(by_code),
        "outcomes_by_channel": delivery_outcomes(session, alert_id),
        "failovers": failovers,
        "possibly_duplicated": duplicated,
        "opt_outs": sum(1 for vid in volunteer_ids for c in contacts[vid] if c.opted_out),
        "escalations": sum(escalations_by_zone.values()),
        "zones": len(zone_rows),
        "zones_acknowledged": sum(1 for z in zone_rows if z["acknowledged"]),
        "zones_unreached": sum(1 for z in zone_rows if z["state"] == ZoneState.UNREACHED),
        "help_requests": sum(1 for r in responses if r.kind == "help"),
        "headcount_reached": sum(z["headcount_reached"] for z in zone_rows),
        "headcount_need_help": sum(z["headcount_need_help"] for z in zone_rows),
        "headcounts_reported": sum(1 for z in zone_rows if z["headcount_reported"]),
        "duty_officer_notified": any(r.tier == DUTY_OFFICER_TIER for r in recs),
    }
    curve_points = sorted(s for s in (_seconds(r.acknowledged_at, alert.sent_at) for r in recs
                                      if r.state == RecipientState.ACKNOWLEDGED and
                                      r.tier != DUTY_OFFICER_TIER) if s is not None)
    curve = [{"seconds": s, "acknowledged": i + 1} for i, s in enumerate(curve_points)]
    return {
        "alert": {"id": alert.id, "title": alert.title, "kind": alert.kind,
                  "exercise": alert.exercise, "state": alert.state, "post": post.name,
                  "reply_code": alert.reply_code, "timezone": post.timezone,
                  "sent_at": alert.sent_at.isoformat() if alert.sent_at else None,
                  "ack_window_seconds": alert.ack_window_seconds},
        "versions": [{"number": v.number, "msg_type": v.msg_type, "body": v.body,
                      "sent_at": v.sent_at.isoformat(), "by": v.created_by,
                      "messages": v.messages} for v in alert.versions],
        "summary": summary, "zones": zone_rows, "volunteers": volunteers, "curve": curve,
        "findings": findings(session, alert, zone_rows, volunteers, contacts, recs, today,
                             responses),
    }


def _outcome(states: set[str]) -> str:
    """The best thing that happened to any of a volunteer's messages."""
    for state in REPORT_ORDER:
        if state in states:
            return state
    return "not sent"


def findings(session: Session, alert: Alert, zones: list[dict[str, Any]],
             volunteers: list[dict[str, Any]], contacts: dict[int, list[Any]],
             recs: Sequence[Any], today: date,
             responses: Sequence[Any] = ()) -> list[dict[str, str]]:
    """What the section should fix before a real crisis, and what the drill left to follow
    up (`drill_findings`), most severe first."""
    flagged = list(flagged_contacts(recs, contacts))
    out: list[dict[str, str]] = drill_findings(alert, zones, flagged, recs, responses)

    def add(severity: str, kind: str, message: str) -> None:
        out.append({"severity": severity, "kind": kind, "message": message})

    for z in zones:
        if z["state"] == ZoneState.UNREACHED:
            add("critical", "zone_unreached",
                f"{z['zone']}: nobody acknowledged; the chain ended at {z['deepest_tier']}")
        elif z["time_to_ack_seconds"] and z["time_to_ack_seconds"] > alert.ack_window_seconds:
            add("warning", "slow_zone", f"{z['zone']}: acknowledged after "
                f"{z['time_to_ack_seconds']:.0f} s, beyond the {alert.ack_window_seconds} s "
                "window (an escalation was needed)")
    for v in volunteers:
        if v["delivery_outcome"] in DEAD_DELIVERY_STATES:
            add("critical", "unreachable_volunteer", f"{v['name']} ({v['zone']}): no "
                f"message got through on {', '.join(v['channels_tried']) or 'any path'} "
                f"({', '.join(v['error_codes']) or 'no code'}); fix the contact details")
        for skip in v["skipped"] or []:
            add("warning", "skipped", f"{v['name']} ({v['zone']}) skipped on "
                f"{skip['channel']}: {skip['reason']}")
    for r, c in flagged:
        if c.opted_out:
            add("warning", "opted_out", f"{r.name}: {c.channel} {c.masked} is opted out "
                "(replied STOP)")
    zone_ids = [row[0] for row in session.execute(
        select(AlertZone.zone_id).where(AlertZone.alert_id == alert.id))]
    members = session.execute(
        select(Membership.zone_id, Membership.tier, Membership.term_start, Membership.term_end,
               Volunteer.name, Zone.name.label("zone"))
        .join(Volunteer, Volunteer.id == Membership.volunteer_id)
        .join(Zone, Zone.id == Membership.zone_id)
        .where(Membership.zone_id.in_(zone_ids))).all()
    members_by_zone: dict[int, list[Any]] = defaultdict(list)
    for m in members:
        members_by_zone[m.zone_id].append(m)
    for zone_id in zone_ids:
        mine = members_by_zone[zone_id]
        name = next((m.zone for m in mine), None) or _zone_name(session, zone_id)
        if not any(m.tier > 0 and m.term_start <= today <= m.term_end for m in mine):
            add("warning", "no_alternate", f"{name}: no active alternate")
    soon = today + timedelta(days=TERM_ENDING_SOON_DAYS)
    for m in members:
        if m.term_end < today:
            add("warning", "term_ended", f"{m.name} ({m.zone}): term ended {m.term_end}")
        elif m.term_end <= soon:
            add("info", "term_ending", f"{m.name} ({m.zone}): term ends {m.term_end}")
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda f: order[f["severity"]])


def flagged_contacts(recs: Sequence[Any],
                     contacts: dict[int, list[Any]]) -> Iterator[tuple[Any, Any]]:
    """(recipient row, contact row) once per opted-out or dead contact of each volunteer
    asked (a volunteer asked in two tiers or zones counts once): the findings read only
    those, and looking for them first spares a walk over every contact of a large alert."""
    flagged: dict[int, list[Any]] = {}
    for vid, rows in contacts.items():
        bad = [c for c in rows if c.opted_out or c.dead_reason]
        if bad:
            flagged[vid] = bad
    for r in recs:
        for c in flagged.pop(r.volunteer_id, ()):
            yield r, c


def drill_findings(alert: Alert, zones: list[dict[str, Any]],
                   flagged: Sequence[tuple[Any, Any]], recs: Sequence[Any],
                   responses: Sequence[Any]) -> list[dict[str, str]]:
    """What happened during the drill that someone must follow up: numbers found dead,
    HELP and citizens needing help, and how the alert changed (updates, a cancel)."""
    out: list[dict[str, str]] = []
    who = {r.id: (r.name, r.zone) for r in recs}
    for r, c in flagged:
        if c.dead_reason and c.dead_at is not None and alert.sent_at is not None \
                and c.dead_at >= alert.sent_at and c.dead_reason != "erased":
            out.append({"severity": "critical", "kind": "dead_number",
                        "message": f"{r.name} ({r.zone}): {c.channel} {c.masked} found "
                        f"dead in this drill ({c.dead_reason}); replace it"})
    for resp in responses:
        if resp.kind == "help":
            name, zone = who.get(resp.recipient_id, ("an unknown sender", None))
            where = f" ({zone})" if zone else ""
            out.append({"severity": "critical", "kind": "help",
                        "message": f"{name}{where} asked for HELP: {resp.text}"})
    for z in zones:
        if z["headcount_need_help"]:
            out.append({"severity": "critical", "kind": "citizens_need_help",
                        "message": f"{z['zone']}: {z['headcount_need_help']} citizen(s) need "
                        f"help (of {z['headcount_reached']} reached)"})
    versions = list(alert.versions)
    updates = sum(1 for v in versions if v.msg_type == "update")
    if updates:
        out.append({"severity": "info", "kind": "updated",
                    "message": f"{updates} update(s) sent after the alert (see Versions)"})
    cancel = next((v for v in versions if v.msg_type == "cancel"), None)
    if cancel is not None:
        out.append({"severity": "info", "kind": "cancelled",
                    "message": f"The alert was cancelled by {cancel.created_by}; "
                    f"{cancel.messages} stand-down message(s) went out"})
    return out


def _zone_name(session: Session, zone_id: int) -> str:
    zone = session.get(Zone, zone_id)
    return zone.name if zone else str(zone_id)
