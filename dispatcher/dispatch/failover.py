"""A dead path (invalid number, landline, bounce, opted out): fail over, or escalate at once.

Called by the sender on a permanent error and by the receipt webhooks on
undelivered/failed/bounced. The volunteer's other channel gets the alert at once;
when every path of every volunteer of the zone's current tier is dead, the zone's
deadline is brought forward, because waiting out the window would help nobody.
"""

from __future__ import annotations

import logging

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from channels.twilio_whatsapp import OUTSIDE_SESSION
from dispatcher import audit, lifecycle
from dispatcher.acks import filling
from dispatcher.db import db_now
from dispatcher.dispatch.outbox import add_delivery
from dispatcher.domain import (
    DEAD_DELIVERY_STATES,
    Channel,
    DeliveryPurpose,
    RecipientState,
)
from dispatcher.models import Alert, AlertZone, Contact, Delivery, Recipient

log = logging.getLogger(__name__)

#: A dead path of a recipient who acknowledged, or whose alert was cancelled, changes
#: nothing but the contact.
DONE_RECIPIENT = (RecipientState.ACKNOWLEDGED, RecipientState.CANCELLED)
#: Purposes whose failure means the volunteer never got the alert itself.
ALERT_PURPOSES = (DeliveryPurpose.ALERT, DeliveryPurpose.FAILOVER)


def failover_channels(alert: Alert) -> set[str]:
    """Where a failover may go: SMS and email always (the officer's --channel does not
    bind), WhatsApp only where the alert could use it (its provider configured when it
    was sent), never a call (calls come only from a policy step)."""
    return {Channel.SMS.value, Channel.EMAIL.value} | (
        {Channel.WHATSAPP.value} & set(alert.channels or ()))


def _refused_outside_session(delivery: Delivery) -> bool:
    """A WhatsApp message the provider accepted (it has an id) and then refused as free
    text outside the 24-hour session. A refusal at the request itself already had its
    template tried by the channel (channels.twilio_whatsapp)."""
    return (delivery.channel == Channel.WHATSAPP and delivery.error_code == OUTSIDE_SESSION
            and delivery.provider_id is not None)


def on_dead_path(session: Session, delivery: Delivery, reason: str, *,
                 recipient_specific: bool = True) -> None:
    """Record the dead path and react: failover first, escalation when nothing is left."""
    now = db_now(session)
    contact = session.get(Contact, delivery.contact_id)
    if contact is not None and recipient_specific and not contact.dead_reason:
        contact.dead_reason = reason[:200]
        contact.dead_at = now
    if delivery.purpose not in ALERT_PURPOSES:
        return
    rec = session.get(Recipient, delivery.recipient_id)
    alert = session.get(Alert, delivery.alert_id)
    if rec is None or alert is None or rec.state in DONE_RECIPIENT:
        return
    sent = session.scalars(select(Delivery).where(
        Delivery.recipient_id == rec.id, Delivery.purpose.in_(ALERT_PURPOSES))).all()
    if _refused_outside_session(delivery) and \
            sum(d.contact_id == delivery.contact_id for d in sent) == 1:
        # WhatsApp took the free text, then refused it (63016, in a status callback): the
        # session had closed. The same path again, once: it goes as the template now
        # (whatsapp.open_sessions counts the refusal).
        contact = session.get(Contact, delivery.contact_id)
        if contact is not None and not (contact.opted_out or contact.dead_reason):
            add_delivery(session, alert, rec, contact, DeliveryPurpose.FAILOVER,
                         delivery.language)
            audit.record(session, "system", "delivery.whatsapp_template", alert_id=alert.id,
                         recipient_id=rec.id, reason=reason)
            return
    tried = {d.contact_id: d for d in sent}
    for other in rec.volunteer.contacts:
        # The officer's --channel choice does not bind here: a dead path would otherwise
        # leave the volunteer with nothing at all.
        if other.id in tried or other.opted_out or other.dead_reason \
                or other.channel not in failover_channels(alert):
            continue
        add_delivery(session, alert, rec, other, DeliveryPurpose.FAILOVER, delivery.language)
        audit.record(session, "system", "delivery.failover", alert_id=alert.id,
                     recipient_id=rec.id, from_channel=delivery.channel, to_channel=other.channel,
                     reason=reason)
        return
    alive = [d for d in tried.values()
             if d.id != delivery.id and d.state not in DEAD_DELIVERY_STATES]
    if alive:
        return
    if rec.state == RecipientState.ESCALATED:
        return  # their duty already passed on: only the contact is marked dead
    lifecycle.move(rec, RecipientState.FAILED)
    audit.record(session, "system", "recipient.unreachable", alert_id=alert.id,
                 recipient_id=rec.id, reason=reason)
    escalate_if_tier_dead(session, alert, rec.zone_id, rec.tier)


def escalate_if_tier_dead(session: Session, alert: Alert, zone_id: int, tier: int) -> None:
    """Every recipient of the zone's current tier failed: escalate now, not after the
    window. A tier still being written (`dispatch.fill`) is judged when its last chunk
    is."""
    from dispatcher.escalation.engine import escalate_now

    az = session.scalar(select(AlertZone).where(AlertZone.alert_id == alert.id,
                                                AlertZone.zone_id == zone_id))
    if az is None or az.current_tier != tier or filling(session, alert.id, zone_id):
        return
    # Two looks at the index, not every peer's state (a 100,000-volunteer tier read back
    # row by row cost a large alert more than writing it): one live peer settles it.
    peers = select(Recipient.id).where(Recipient.alert_id == alert.id,
                                       Recipient.zone_id == zone_id, Recipient.tier == tier)
    if (session.scalar(select(exists(peers)))
            and not session.scalar(select(exists(
                peers.where(Recipient.state != RecipientState.FAILED))))):
        log.info("alert %s zone %s: every path of tier %s is dead, escalating now",
                 alert.id, az.zone.name, tier, extra={"alert_id": alert.id})
        escalate_now(session, alert.id, zone_id)
