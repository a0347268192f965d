"""After sending: cancel an alert (everything stops, everyone told) or send an update."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit, lifecycle
from dispatcher.acks import cancel_deadlines
from dispatcher.compose.templates import pick_language, wording
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import add_delivery, message_to
from dispatcher.domain import (
    AlertState,
    DeliveryPurpose,
    DeliveryState,
    MsgType,
    RecipientState,
)
from dispatcher.errors import NotFound, Refused
from dispatcher.models import Alert, Deadline, Delivery, Recipient
from dispatcher.settings import Settings

#: Recipients who got (or may have got) the alert, and so must hear of its end.
RECEIVED = (RecipientState.NOTIFIED, RecipientState.ACKNOWLEDGED, RecipientState.ESCALATED)


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def cancel_alert(session: Session, settings: Settings, alert_id: int, actor: str) -> int:
    """Stop escalation and unsent messages; tell everyone who received it. Returns messages."""
    alert = get_alert(session, alert_id)
    if alert.state == AlertState.CANCELLED:
        raise Refused(f"alert {alert_id} is already cancelled")
    now = db_now(session)
    lifecycle.move(alert, AlertState.CANCELLED)
    alert.closed_at = now
    cancel_deadlines(session, Deadline.alert_id == alert_id)
    lifecycle.move_rows(session, Delivery, DeliveryState.CANCELLED, Delivery.alert_id == alert_id,
                        only_from=(DeliveryState.PENDING,))
    lifecycle.move_rows(session, Recipient, RecipientState.CANCELLED,
                        Recipient.alert_id == alert_id, only_from=(RecipientState.PENDING,))
    told = session.scalars(select(Recipient).where(Recipient.alert_id == alert_id,
                                                   Recipient.state.in_(RECEIVED))).all()
    count = message_to(session, settings, alert, told, DeliveryPurpose.CANCEL, "cancelled")
    audit.record(session, actor, "alert.cancelled", alert_id=alert_id, messages=count)
    return count


def update_alert(session: Session, settings: Settings, alert_id: int, body: str,
                 actor: str) -> Alert:
    """A new alert of type Update referencing the original, to everyone who received it."""
    original = get_alert(session, alert_id)
    if original.state == AlertState.CANCELLED:
        raise Refused(f"alert {alert_id} is cancelled; send a new alert instead")
    if not body.strip():
        raise Refused("the update has no text")
    now = db_now(session)
    upd = Alert(post_id=original.post_id, kind=original.kind, msg_type=MsgType.UPDATE,
                exercise=original.exercise, title=original.title, template=original.template,
                bodies={}, channels=original.channels, reply_code=original.reply_code,
                ack_window_seconds=original.ack_window_seconds, policy=original.policy,
                references_alert_id=original.id,
                created_by=actor, sent_at=now, closed_at=now)
    lifecycle.move(lifecycle.start(upd, AlertState.SENDING), AlertState.COMPLETED)
    session.add(upd)
    session.flush()
    received = session.scalars(select(Recipient).where(Recipient.alert_id == alert_id,
                                                       Recipient.state.in_(RECEIVED))).all()
    bodies: dict[str, dict[str, str]] = {}
    for old in received:
        vol = old.volunteer
        lang = pick_language(vol.language_list, list(original.bodies) or ["en"], "en")
        text = wording(settings.config_dir, lang, "update", code=original.reply_code,
                       body=body.strip())
        if original.exercise:
            text = f"{wording(settings.config_dir, lang, 'exercise')}: {text}"
        bodies.setdefault(lang, {"sms": text, "subject": text[:120], "email_text": text,
                                     "email_html": ""})
        rec = Recipient(alert_id=upd.id, volunteer_id=vol.id, zone_id=old.zone_id,
                        tier=old.tier)
        session.add(rec)
        session.flush()
        for contact in vol.contacts:
            if contact.opted_out or contact.dead_reason:
                continue
            add_delivery(session, upd, rec, contact, DeliveryPurpose.UPDATE, lang, text)
    upd.bodies = bodies
    audit.record(session, actor, "alert.updated", alert_id=original.id, update_id=upd.id)
    return upd
