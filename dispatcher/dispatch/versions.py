"""Versions of one alert: the alert itself, its updates and its cancel.

An update or a cancel is not a new alert: it keeps the alert's reply code, zones and
escalation, goes to everyone the alert reached so far, and is recorded as the next
`AlertVersion`, which `aln cap export` turns into a CAP Update or Cancel with
`<references>` to every earlier version.
"""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from dispatcher import audit, lifecycle
from dispatcher.acks import cancel_deadlines
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import message_to
from dispatcher.dispatch.wording import fixed_text
from dispatcher.domain import (
    AlertState,
    DeadlineKind,
    DeliveryPurpose,
    DeliveryState,
    MsgType,
    RecipientState,
)
from dispatcher.errors import NotFound, Refused
from dispatcher.models import Alert, AlertVersion, Deadline, Delivery, Recipient
from dispatcher.settings import Settings

#: Recipients who got (or may have got) the alert, and so must hear of its end.
RECEIVED = (RecipientState.NOTIFIED, RecipientState.ACKNOWLEDGED, RecipientState.ESCALATED)
#: Delivery states in which a message is at the provider, or may be (a call picked up, or
#: left on a voicemail, was heard).
HANDED_STATES = (DeliveryState.SENDING, DeliveryState.ACCEPTED, DeliveryState.SENT,
                 DeliveryState.DELIVERED, DeliveryState.ANSWERED, DeliveryState.MACHINE)
#: Recipients an update goes to: those reached, and those whose alert is still queued or in
#: flight (their update is queued after it).
UPDATED = (RecipientState.PENDING, *RECEIVED)
#: Longest update text an officer may send (it travels by SMS after a short prefix).
UPDATE_MAX_CHARS = 1000


def get_alert(session: Session, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id} not found")
    return alert


def add_version(session: Session, alert: Alert, msg_type: MsgType, body: str, actor: str,
                *, texts: dict[str, str] | None = None, messages: int = 0) -> AlertVersion:
    """Record the alert's next version (1 for the alert itself)."""
    last = session.scalar(select(func.max(AlertVersion.number))
                          .where(AlertVersion.alert_id == alert.id)) or 0
    version = AlertVersion(alert_id=alert.id, number=last + 1, msg_type=msg_type.value,
                           body=body, texts=texts or {}, sent_at=db_now(session),
                           created_by=actor, messages=messages)
    session.add(version)
    session.flush()
    return version


def cancel_alert(session: Session, settings: Settings, alert_id: int, actor: str) -> int:
    """Stop escalation and unsent messages; tell everyone who received it. Returns messages."""
    alert = get_alert(session, alert_id)
    if alert.state == AlertState.CANCELLED:
        raise Refused(f"alert {alert_id} is already cancelled")
    now = db_now(session)
    was_draft = alert.state == AlertState.DRAFT
    lifecycle.move(alert, AlertState.CANCELLED)
    alert.closed_at = now
    cancel_deadlines(session, Deadline.alert_id == alert_id)
    lifecycle.move_rows(session, Delivery, DeliveryState.CANCELLED, Delivery.alert_id == alert_id,
                        only_from=(DeliveryState.PENDING,))
    # A recipient still `pending` whose message is at the provider already (in flight, or
    # taken but not yet recorded) may have the alert: they are told, not cancelled.
    handed = select(Delivery.recipient_id).where(Delivery.alert_id == alert_id,
                                                 Delivery.state.in_(HANDED_STATES))
    lifecycle.move_rows(session, Recipient, RecipientState.CANCELLED,
                        Recipient.alert_id == alert_id, Recipient.id.not_in(handed),
                        only_from=(RecipientState.PENDING,))
    told = session.scalars(select(Recipient.id).where(
        Recipient.alert_id == alert_id,
        or_(Recipient.state.in_(RECEIVED),
            and_(Recipient.state == RecipientState.PENDING, Recipient.id.in_(handed))))).all()
    count = message_to(session, settings, alert, told, DeliveryPurpose.CANCEL, "cancelled")
    if not was_draft:
        add_version(session, alert, MsgType.CANCEL, "cancelled", actor, messages=count)
    audit.record(session, actor, "alert.cancelled", alert_id=alert_id, messages=count)
    return count


def update_alert(session: Session, settings: Settings, alert_id: int, body: str,
                 actor: str) -> AlertVersion:
    """The alert's next version, to everyone it reached so far; tiers asked later get the
    alert and then this update. Reply code, zones and escalation do not change."""
    alert = get_alert(session, alert_id)
    if alert.state == AlertState.CANCELLED:
        raise Refused(f"alert {alert_id} is cancelled; send a new alert instead")
    if alert.state == AlertState.DRAFT:
        raise Refused(f"alert {alert_id} is a draft: send it first "
                      f"(aln alert send --draft {alert_id})")
    text = body.strip()
    if not text:
        raise Refused("the update has no text")
    if len(text) > UPDATE_MAX_CHARS:
        raise Refused(f"the update has {len(text)} characters; at most {UPDATE_MAX_CHARS}")
    # A fill's chunk being written commits first and is updated with the rest; later
    # chunks read this version with the alert's (`dispatch.fill` locks the same rows).
    session.execute(select(Deadline.id).where(Deadline.alert_id == alert_id,
                                              Deadline.kind == DeadlineKind.FILL)
                    .order_by(Deadline.id).with_for_update())
    received = session.scalars(select(Recipient.id).where(Recipient.alert_id == alert_id,
                                                          Recipient.state.in_(UPDATED))).all()
    count = message_to(session, settings, alert, received, DeliveryPurpose.UPDATE, "update",
                       body=text)
    texts = {lang: update_text(settings, alert, lang, text) for lang in alert.bodies or {"en": {}}}
    version = add_version(session, alert, MsgType.UPDATE, text, actor, texts=texts,
                          messages=count)
    audit.record(session, actor, "alert.updated", alert_id=alert.id, version=version.number,
                 messages=count)
    return version


def update_text(settings: Settings, alert: Alert, lang: str, body: str) -> str:
    """An update's message in one language, as `message_to` words it."""
    return fixed_text(settings, alert, lang, "update", zone="", body=body)
