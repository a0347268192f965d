"""The report read with the deliveries folded by the database equals the reading it
replaced (the oracle below: every delivery and every contact back as a row, folded in
Python), on a bulk alert dressed with calls, failovers, codes, duplicates, skipped paths,
opt-outs, dead numbers, headcounts and ending terms, and on the known scenario."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from datetime import date, timedelta
from typing import Any

from sqlalchemy import String, cast, func, insert, select, update
from sqlalchemy.orm import Session

from dispatcher.db import db_now, db_today
from dispatcher.domain import (
    DEAD_DELIVERY_STATES,
    DUTY_OFFICER_TIER,
    DeadlineState,
    DeliveryState,
    RecipientState,
    ZoneState,
    tier_name,
)
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
from dispatcher.reports.figures import (
    ALERT_PURPOSES,
    HANDED_OFF,
    REPORT_ORDER,
    build_report,
    drill_findings,
    percentile,
)
from dispatcher.roster.gaps import TERM_ENDING_SOON_DAYS
from dispatcher.runtime import Runtime
from dispatcher.status import delivery_outcomes
from tests.bench.fixtures import bulk_alert, bulk_roster
from tests.reports.test_figures import TODAY, scenario


def _seconds(later: Any, earlier: Any) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


def _outcome(states: set[str]) -> str:
    return next((state for state in REPORT_ORDER if state in states), "not sent")


def _oracle(session: Session, alert_id: int, today: date | None = None) -> dict[str, Any]:
    """The report as the reading before the folded one built it. Where that reading left
    an order to the query planner (a volunteer's contacts: the unique index's channel order
    on SQLite, heap order on PostgreSQL; the members of the zones), it is pinned here to
    the order the new reading gives on purpose."""
    alert = session.get_one(Alert, alert_id)
    post = session.get_one(Post, alert.post_id)
    today = today or db_today(session, post.timezone)
    db = session.connection()
    recs = db.execute(
        select(Recipient.id, Recipient.volunteer_id, Recipient.zone_id, Recipient.tier,
               Recipient.state, Recipient.notified_at, Recipient.acknowledged_at,
               Recipient.acknowledged_via, Volunteer.name, Zone.name.label("zone"))
        .join(Volunteer, Volunteer.id == Recipient.volunteer_id)
        .join(Zone, Zone.id == Recipient.zone_id)
        .where(Recipient.alert_id == alert_id).order_by(Zone.name, Recipient.tier,
                                                         Volunteer.name)).all()
    skipped: dict[int, Any] = dict(db.execute(select(Recipient.id, Recipient.skipped).where(
        Recipient.alert_id == alert_id,
        func.length(cast(Recipient.skipped, String)) > 2)).all())
    deliveries = db.execute(
        select(Delivery.recipient_id, Delivery.channel, Delivery.purpose, Delivery.state,
               Delivery.error_code, Delivery.possibly_duplicate)
        .where(Delivery.alert_id == alert_id).order_by(Delivery.id)).all()
    responses = session.execute(
        select(Response.recipient_id, Response.zone_id, Response.kind, Response.text,
               Response.headcount_reached, Response.headcount_need_help, Response.urgent)
        .where(Response.alert_id == alert_id).order_by(Response.id)).all()
    zones = session.execute(
        select(AlertZone.zone_id, Zone.name, AlertZone.state, AlertZone.current_tier,
               AlertZone.acknowledged_at)
        .join(Zone, Zone.id == AlertZone.zone_id)
        .where(AlertZone.alert_id == alert_id).order_by(Zone.name)).all()
    escalations_by_zone = dict(session.execute(
        select(Deadline.zone_id, func.count()).where(
            Deadline.alert_id == alert_id, Deadline.kind == "escalate",
            Deadline.state == DeadlineState.DONE).group_by(Deadline.zone_id)).all())
    contacts: dict[int, list[Any]] = defaultdict(list)
    for c in db.execute(select(Contact.volunteer_id, Contact.channel, Contact.masked,
                               Contact.opted_out, Contact.dead_reason, Contact.dead_at)
                        .where(Contact.volunteer_id.in_(select(Recipient.volunteer_id).where(
                            Recipient.alert_id == alert_id)))
                        .order_by(Contact.volunteer_id, Contact.channel)).all():
        contacts[c[0]].append(c)
    masked_of = {vid: ", ".join(c[2] for c in rows) for vid, rows in contacts.items()}
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
        reported = z.zone_id in heads
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
        "opt_outs": sum(1 for rows in contacts.values() for c in rows if c.opted_out),
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
    return {
        "alert": {"id": alert.id, "title": alert.title, "kind": alert.kind,
                  "exercise": alert.exercise, "state": alert.state, "post": post.name,
                  "reply_code": alert.reply_code, "timezone": post.timezone,
                  "sent_at": alert.sent_at.isoformat() if alert.sent_at else None,
                  "ack_window_seconds": alert.ack_window_seconds},
        "versions": [{"number": v.number, "msg_type": v.msg_type, "body": v.body,
                      "sent_at": v.sent_at.isoformat(), "by": v.created_by,
                      "messages": v.messages} for v in alert.versions],
        "summary": summary, "zones": zone_rows, "volunteers": volunteers,
        "curve": [{"seconds": s, "acknowledged": i + 1} for i, s in enumerate(curve_points)],
        "findings": _oracle_findings(session, alert, zone_rows, volunteers, contacts, recs,
                                     today, responses),
    }


def _oracle_findings(session: Session, alert: Alert, zones: list[dict[str, Any]],
                     volunteers: list[dict[str, Any]], contacts: dict[int, list[Any]],
                     recs: Any, today: date, responses: Any) -> list[dict[str, str]]:
    flagged_of = {vid: [c for c in rows if c.opted_out or c.dead_reason]
                  for vid, rows in contacts.items()}
    flagged = [(r, c) for r in recs for c in flagged_of.pop(r.volunteer_id, [])]
    out = drill_findings(alert, zones, flagged, recs, responses)

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
    zone_ids = sorted(row[0] for row in session.execute(
        select(AlertZone.zone_id).where(AlertZone.alert_id == alert.id)))
    members = session.execute(
        select(Membership.zone_id, Membership.tier, Membership.term_start, Membership.term_end,
               Volunteer.name, Zone.name.label("zone"))
        .join(Volunteer, Volunteer.id == Membership.volunteer_id)
        .join(Zone, Zone.id == Membership.zone_id)
        .where(Membership.zone_id.in_(zone_ids))
        .order_by(Membership.zone_id, Membership.id)).all()
    for zone_id in zone_ids:
        mine = [m for m in members if m.zone_id == zone_id]
        name = session.get_one(Zone, zone_id).name
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


def _dress(session: Session, alert_id: int) -> None:
    """What the bulk alert lacks and a real drill has: calls, a failover with codes, a
    possible duplicate, a reminder, a skipped path, an opted-out and a dead contact (found
    during the drill), a headcount, a duty officer, a zone with no alternate left and terms
    ended or ending."""
    now = db_now(session)
    rows = session.execute(
        select(Delivery.recipient_id, Delivery.contact_id, Recipient.volunteer_id,
               Recipient.zone_id)
        .join(Recipient, Recipient.id == Delivery.recipient_id)
        .where(Delivery.alert_id == alert_id, Delivery.channel == "sms")
        .order_by(Delivery.id).limit(12)).all()
    base = {"alert_id": alert_id, "body": "x", "attempts": 1}
    session.execute(insert(Delivery), [
        {**base, "recipient_id": r.recipient_id, "contact_id": r.contact_id,
         "channel": "voice", "purpose": "alert", "state": ("no_answer", "machine", "busy")[i % 3]}
        for i, r in enumerate(rows[:6])] + [
        {**base, "recipient_id": rows[6].recipient_id, "contact_id": rows[6].contact_id,
         "channel": "whatsapp", "purpose": "failover", "state": "undelivered",
         "error_code": "63016"},
        {**base, "recipient_id": rows[6].recipient_id, "contact_id": rows[6].contact_id,
         "channel": "sms", "purpose": "alert", "state": "failed", "error_code": "30003"},
        {**base, "recipient_id": rows[7].recipient_id, "contact_id": rows[7].contact_id,
         "channel": "sms", "purpose": "alert", "state": "sent", "possibly_duplicate": True},
        {**base, "recipient_id": rows[8].recipient_id, "contact_id": rows[8].contact_id,
         "channel": "sms", "purpose": "reminder", "state": "bounced", "error_code": "X1"},
    ])
    session.execute(update(Recipient).where(Recipient.id == rows[9].recipient_id)
                    .values(skipped=[{"channel": "whatsapp", "reason": "no session"}]))
    session.execute(update(Contact).where(Contact.id == rows[10].contact_id)
                    .values(opted_out=True))
    session.execute(update(Contact).where(Contact.id == rows[11].contact_id)
                    .values(dead_reason="21614", dead_at=now))
    session.execute(insert(Response), [
        {"alert_id": alert_id, "recipient_id": rows[1].recipient_id,
         "zone_id": rows[1].zone_id, "channel": "sms", "kind": "headcount",
         "text": "DONE 9 2", "headcount_reached": 9, "headcount_need_help": 2}])
    last = session.scalar(select(func.max(Recipient.id)))  # the bulk ids bypass the sequence
    session.execute(insert(Recipient), [
        {"id": (last or 0) + 1, "alert_id": alert_id, "volunteer_id": rows[2].volunteer_id,
         "zone_id": rows[5].zone_id, "tier": DUTY_OFFICER_TIER, "skipped": [], "state": "notified",
         "notified_at": now}])
    today = db_today(session, "UTC")
    zone_id = rows[3].zone_id
    session.execute(update(Membership).where(Membership.zone_id == zone_id,
                                             Membership.tier > 0)
                    .values(term_end=today - timedelta(days=3)))
    elsewhere = next(r for r in rows if r.zone_id != zone_id)
    session.execute(update(Membership).where(Membership.volunteer_id == elsewhere.volunteer_id)
                    .values(term_end=today + timedelta(days=5)))


def test_folded_reading_equals_the_row_by_row_one(rt: Runtime) -> None:
    # The scenario first: the bulk fixtures write their own ids, which PostgreSQL's
    # sequences do not see.
    known_id = scenario(rt)
    bulk_roster(rt, 120, zones=6, email=True, tiers=3)
    bulk_id = bulk_alert(rt, seed=5)
    with rt.db.session() as s:
        _dress(s, bulk_id)
    with rt.db.session() as s:
        for alert_id, today in ((bulk_id, None), (known_id, TODAY)):
            got, expected = build_report(s, alert_id, today), _oracle(s, alert_id, today)
            assert got == expected
            # The same text too: dict keys in the same order (a JSON reader sees it).
            assert json.dumps(got, default=str) == json.dumps(expected, default=str)
        report = build_report(s, bulk_id)
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds >= {"dead_number", "opted_out", "skipped", "unreachable_volunteer",
                     "no_alternate", "term_ended", "term_ending", "citizens_need_help"}
    summary = report["summary"]
    assert summary["failovers"] and summary["possibly_duplicated"] and summary["opt_outs"]
    assert summary["duty_officer_notified"] and summary["outcomes_by_channel"]["voice"]
    assert {"voice", "sms", "email"} <= {c for v in report["volunteers"]
                                         for c in v["channels_tried"]}
