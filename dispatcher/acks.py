"""Acknowledgements: a volunteer confirms, the zone may be covered, escalation stops.

Every path that acknowledges (SMS reply, email link, officer on a volunteer's
behalf) comes through `acknowledge`, in the caller's transaction, so the zone's
pending deadlines are cancelled in the same commit that records the answer: an
acknowledgement can never leave a chain running.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, contains_eager, joinedload

from dispatcher import audit
from dispatcher.db import db_now
from dispatcher.domain import (
    DUTY_OFFICER_TIER,
    AlertState,
    DeadlineState,
    DeliveryPurpose,
    RecipientState,
    ZoneState,
)
from dispatcher.models import Alert, AlertZone, Deadline, Recipient
from dispatcher.settings import Settings

#: Alert states in which the chain may still move.
OPEN_ALERT_STATES = (AlertState.SENDING, AlertState.ACTIVE)
#: A completed alert (every zone covered or unreached) still takes late acknowledgements
#: for this long: they count in the report, and the volunteer deserves an answer.
LATE_REPLY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class AckOutcome:
    recipient_id: int
    already: bool
    zone_acknowledged: bool
    zone: str


# Statements on the acknowledgement path are built once: building them per request cost
# more Python time than running them.
_LOCK_ZONE = (
    select(AlertZone)
    .where(AlertZone.alert_id == bindparam("alert_id"), AlertZone.zone_id == bindparam("zone_id"))
    .options(joinedload(AlertZone.zone)).with_for_update(of=AlertZone)
)
_OPEN_RECIPIENTS = (
    select(Recipient).join(Alert, Alert.id == Recipient.alert_id)
    .where(Recipient.volunteer_id.in_(bindparam("volunteer_ids", expanding=True)),
           or_(Alert.state.in_([s.value for s in (AlertState.SENDING, AlertState.ACTIVE)]),
               and_(Alert.state == AlertState.COMPLETED.value,
                    Alert.closed_at >= bindparam("recent"))))
    .options(contains_eager(Recipient.alert))
    .order_by(Alert.id.desc(), Recipient.id)
)


def lock_zone(session: Session, alert_id: int, zone_id: int) -> AlertZone:
    """The alert zone row, locked on PostgreSQL so an ack and an escalation serialise."""
    return session.scalars(_LOCK_ZONE, {"alert_id": alert_id, "zone_id": zone_id}).one()


def acknowledge(session: Session, settings: Settings, rec: Recipient, *, at: datetime,
                via: str, actor: str = "volunteer") -> AckOutcome:
    """Record the acknowledgement; cover the zone when its quorum is met."""
    alert = session.get(Alert, rec.alert_id)
    assert alert is not None
    az = lock_zone(session, rec.alert_id, rec.zone_id)
    if rec.state == RecipientState.ACKNOWLEDGED:
        return AckOutcome(rec.id, True, az.state == ZoneState.ACKNOWLEDGED, az.zone.name)
    rec.state = RecipientState.ACKNOWLEDGED
    rec.acknowledged_at = at
    rec.acknowledged_via = via
    session.flush()
    audit.record(session, actor, "recipient.acknowledged", alert_id=alert.id,
                 recipient_id=rec.id, zone=az.zone.name, via=via)
    covered = False
    if az.state == ZoneState.WAITING and rec.tier != DUTY_OFFICER_TIER:
        if _quorum_met(session, alert, az):
            cover_zone(session, settings, alert, az, at)
            covered = True
    return AckOutcome(rec.id, False, covered or az.state == ZoneState.ACKNOWLEDGED,
                      az.zone.name)


def _quorum_met(session: Session, alert: Alert, az: AlertZone) -> bool:
    acked = session.scalar(select(func.count()).select_from(Recipient).where(
        Recipient.alert_id == alert.id, Recipient.zone_id == az.zone_id,
        Recipient.state == RecipientState.ACKNOWLEDGED,
        Recipient.tier != DUTY_OFFICER_TIER)) or 0
    policy = alert.policy or {}
    if policy.get("mode") == "each":
        # Every volunteer first asked holds a duty; the zone is covered when as many
        # volunteers (they or the alternates their duty passed to) have acknowledged.
        first_tier = session.scalar(select(func.min(Recipient.tier)).where(
            Recipient.alert_id == alert.id, Recipient.zone_id == az.zone_id))
        duties = session.scalar(select(func.count()).select_from(Recipient).where(
            Recipient.alert_id == alert.id, Recipient.zone_id == az.zone_id,
            Recipient.tier == first_tier, Recipient.state != RecipientState.FAILED)) or 1
        return acked >= duties
    return acked >= int(policy.get("quorum", 1))


def cover_zone(session: Session, settings: Settings, alert: Alert, az: AlertZone,
               at: datetime) -> None:
    """The zone is acknowledged: cancel its deadlines, optionally stand the others down."""
    az.state = ZoneState.ACKNOWLEDGED
    az.acknowledged_at = at
    session.execute(
        update(Deadline)
        .where(Deadline.alert_id == alert.id, Deadline.zone_id == az.zone_id,
               Deadline.state.in_([DeadlineState.PENDING, DeadlineState.CLAIMED]))
        .values(state=DeadlineState.CANCELLED)
    )
    audit.record(session, "system", "zone.acknowledged", alert_id=alert.id, zone=az.zone.name)
    if (alert.policy or {}).get("stand_down"):
        from dispatcher.dispatch.outbox import message_to

        others = session.scalars(select(Recipient).where(
            Recipient.alert_id == alert.id, Recipient.zone_id == az.zone_id,
            Recipient.state.in_([RecipientState.NOTIFIED, RecipientState.ESCALATED]),
            Recipient.tier != DUTY_OFFICER_TIER)).all()
        message_to(session, settings, alert, others, DeliveryPurpose.STAND_DOWN, "stand_down")
    maybe_complete(session, alert, at)


def maybe_complete(session: Session, alert: Alert, at: datetime) -> None:
    """An alert whose every zone is acknowledged or unreached is completed."""
    waiting = session.scalar(select(func.count()).select_from(AlertZone).where(
        AlertZone.alert_id == alert.id, AlertZone.state == ZoneState.WAITING)) or 0
    if waiting == 0 and alert.state in OPEN_ALERT_STATES:
        alert.state = AlertState.COMPLETED
        alert.closed_at = at
        audit.record(session, "system", "alert.completed", alert_id=alert.id)


def open_recipients(session: Session, volunteer_ids: list[int],
                    now: datetime | None = None) -> list[Recipient]:
    """This volunteer's recipients in alerts that still take replies, newest alert first."""
    if not volunteer_ids:
        return []
    recent = (now or db_now(session)) - LATE_REPLY_WINDOW
    return list(session.scalars(_OPEN_RECIPIENTS, {"volunteer_ids": volunteer_ids,
                                                   "recent": recent}).unique())
