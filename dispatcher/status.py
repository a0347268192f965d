"""An alert's live state: zones and recipients, as `aln alert status` and the board show it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from dispatcher.domain import DUTY_OFFICER_TIER, RecipientState, tier_name
from dispatcher.errors import NotFound
from dispatcher.models import Alert, AlertZone, Delivery, Recipient, Response, Volunteer
from dispatcher.replies.attach import unattached


def alert_status(session: Session, alert_id: int) -> dict[str, Any]:
    """The JSON of DESIGN.md: `id`, `recipients` and `zones`, plus what an officer needs."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    recipients = session.scalars(
        select(Recipient).where(Recipient.alert_id == alert_id)
        .options(selectinload(Recipient.volunteer).selectinload(Volunteer.contacts),
                 selectinload(Recipient.zone), selectinload(Recipient.deliveries))
        .order_by(Recipient.zone_id, Recipient.tier, Recipient.id)
    ).all()
    replies: dict[int, Response] = {}
    for resp in session.scalars(select(Response).where(Response.alert_id == alert_id)
                                .order_by(Response.id)):
        if resp.recipient_id is not None:
            replies[resp.recipient_id] = resp
    zones = session.scalars(select(AlertZone).where(AlertZone.alert_id == alert_id)
                            .options(selectinload(AlertZone.zone))).all()
    rec_rows = [_recipient(r, replies.get(r.id)) for r in recipients]
    names = {r["id"]: r["name"] for r in rec_rows}
    zones_of = {r["id"]: r["zone"] for r in rec_rows}
    zone_rows = []
    for az in sorted(zones, key=lambda z: z.zone.name):
        mine = [r for r in rec_rows if r["zone"] == az.zone.name]
        zone_rows.append({
            "zone": az.zone.name, "state": az.state,
            "tier": tier_name(az.current_tier) if az.current_tier >= 0 else None,
            "acknowledged_at": _iso(az.acknowledged_at), "unreached_at": _iso(az.unreached_at),
            "recipients": len([r for r in mine if not r["duty_officer"]]),
            "acknowledged": len([r for r in mine if r["state"] == RecipientState.ACKNOWLEDGED]),
        })
    return {
        "id": alert.id, "title": alert.title, "kind": alert.kind, "msg_type": alert.msg_type,
        "exercise": alert.exercise, "state": alert.state, "reply_code": alert.reply_code,
        "ack_window_seconds": alert.ack_window_seconds, "sent_at": _iso(alert.sent_at),
        "references": alert.references_alert_id, "policy": alert.policy,
        "recipients": rec_rows, "zones": zone_rows,
        "unattached_replies": [
            {"id": r.id, "text": r.text, "received_at": _iso(r.created_at),
             "recipient_id": r.recipient_id,
             "name": names.get(r.recipient_id or 0), "zone": zones_of.get(r.recipient_id or 0)}
            for r in unattached(session, alert_id)],
        "versions": [{"number": v.number, "msg_type": v.msg_type, "body": v.body,
                      "sent_at": _iso(v.sent_at), "by": v.created_by, "messages": v.messages}
                     for v in alert.versions],
    }


def _recipient(r: Recipient, reply: Response | None) -> dict[str, Any]:
    contacts = {c.channel: c for c in r.volunteer.contacts}
    sms = contacts.get("sms")
    email = contacts.get("email")
    deliveries = sorted(r.deliveries, key=lambda d: d.id)
    return {
        "id": r.id, "name": r.volunteer.name, "zone": r.zone.name, "tier": tier_name(r.tier),
        "duty_officer": r.tier == DUTY_OFFICER_TIER,
        "phone": sms.masked if sms else None, "email": email.masked if email else None,
        "state": r.state, "notified_at": _iso(r.notified_at),
        "acknowledged_at": _iso(r.acknowledged_at), "acknowledged_via": r.acknowledged_via,
        "skipped": r.skipped,
        "deliveries": [_delivery(d) for d in deliveries],
        "reply": {"kind": reply.kind, "text": reply.text, "urgent": reply.urgent}
        if reply else None,
    }


def _delivery(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "channel": d.channel, "purpose": d.purpose, "state": d.state,
            "error_code": d.error_code, "possibly_duplicate": d.possibly_duplicate,
            "attempts": d.attempts}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
