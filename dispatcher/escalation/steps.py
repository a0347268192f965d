"""A policy step coming due: the same tier, asked again on more channels.

Called by the engine with the zone locked and still waiting (an acknowledged zone
has its step deadlines cancelled, so nobody who answered gets a call). Each silent
volunteer of the tier gets the alert on the step's channels they have a live path
for; a volunteer with none is named in the audit trail, and nothing else happens.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher import audit
from dispatcher.compose.templates import pick_language
from dispatcher.dispatch.outbox import add_delivery
from dispatcher.domain import DeliveryPurpose, RecipientState
from dispatcher.escalation.policy import EscalationPolicy
from dispatcher.models import Alert, AlertZone, Deadline, Delivery, Post, Recipient
from dispatcher.settings import Settings

#: Recipients a step still asks: told (or about to be) and silent.
SILENT = (RecipientState.NOTIFIED, RecipientState.PENDING)


def fire_step(session: Session, settings: Settings, alert: Alert, az: AlertZone,
              d: Deadline, policy: EscalationPolicy, post: Post) -> int:
    """Deliveries for step `d.step` of the zone's tier; returns how many were queued."""
    wanted = policy.step_channels(d.step or 0)
    configured = set(settings.configured_channels)
    if alert.channels:
        wanted = wanted & set(alert.channels)
    silent = session.scalars(select(Recipient).where(
        Recipient.alert_id == alert.id, Recipient.zone_id == az.zone_id,
        Recipient.tier == d.tier, Recipient.state.in_(SILENT))).all()
    queued, skipped = 0, []
    for rec in silent:
        tried = set(session.scalars(select(Delivery.contact_id).where(
            Delivery.recipient_id == rec.id, Delivery.purpose.in_(
                (DeliveryPurpose.ALERT, DeliveryPurpose.FAILOVER)))))
        paths = [c for c in rec.volunteer.contacts
                 if c.channel in wanted and c.channel in configured and c.id not in tried
                 and not c.opted_out and not c.dead_reason]
        if not paths:
            skipped.append(rec.id)
            continue
        lang = pick_language(rec.volunteer.language_list, list(alert.bodies),
                             post.default_language)
        for contact in paths:
            add_delivery(session, alert, rec, contact, DeliveryPurpose.ALERT, lang)
            queued += 1
    audit.record(session, "system", "zone.step", alert_id=alert.id, zone=az.zone.name,
                 step=d.step, channels=sorted(wanted), deliveries=queued,
                 skipped_recipients=skipped)
    return queued
