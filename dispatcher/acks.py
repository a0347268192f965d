"""Acknowledgements: a volunteer confirms, the zone may be covered, escalation stops.

Every path that acknowledges (SMS reply, email link, officer on a volunteer's
behalf) comes through `acknowledge`, in the caller's transaction, so the zone's
pending deadlines are cancelled in the same commit that records the answer: an
acknowledgement can never leave a chain running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from dispatcher import audit, lifecycle
from dispatcher.db import Database, db_now
from dispatcher.domain import (
    DUTY_OFFICER_TIER,
    FINISHED_ALERT_STATES,
    OPEN_ALERT_STATES,
    AlertState,
    DeadlineKind,
    DeadlineState,
    DeliveryPurpose,
    RecipientState,
    ZoneState,
)
from dispatcher.lifecycle import ACKNOWLEDGE_RECIPIENT
from dispatcher.models import Alert, AlertZone, Deadline, Recipient, Zone, table
from dispatcher.settings import Settings

log = logging.getLogger(__name__)

#: A completed or cancelled alert still takes late acknowledgements for this long: they
#: count in the report, and the volunteer deserves an answer.
LATE_REPLY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class AckOutcome:
    recipient_id: int
    already: bool
    zone_acknowledged: bool
    zone: str
    #: The zone was covered by this acknowledgement: stand-down messages may be queued.
    covered: bool = False


@dataclass(frozen=True)
class Waiting:
    """A recipient row as the acknowledgement path needs it, read without the ORM.

    `zone_state` is the alert zone's state read in the same transaction, or None to
    have `acknowledge` read it.
    """

    recipient_id: int
    alert_id: int
    zone_id: int
    tier: int
    state: str
    zone_name: str | None = None
    zone_state: str | None = None

    @classmethod
    def of(cls, rec: Recipient) -> Waiting:
        return cls(rec.id, rec.alert_id, rec.zone_id, rec.tier, rec.state)


# Statements on the acknowledgement path are built once and run on the Core connection:
# building them per request, or going through the ORM's unit of work, cost more Python
# time than running them.
_LOCK_ZONE = (
    select(AlertZone)
    .where(AlertZone.alert_id == bindparam("alert_id"), AlertZone.zone_id == bindparam("zone_id"))
    .options(joinedload(AlertZone.zone)).with_for_update(of=AlertZone)
)
_az, _zones = table(AlertZone), table(Zone)
_ZONE_STATE = (
    select(_az.c.state, _zones.c.name)
    .join_from(_az, _zones, _zones.c.id == _az.c.zone_id)
    .where(_az.c.alert_id == bindparam("alert_id"), _az.c.zone_id == bindparam("zone_id"))
    .with_for_update(of=_az)
)


def lock_zone(session: Session, alert_id: int, zone_id: int) -> AlertZone:
    """The alert zone row, locked on PostgreSQL so an ack and an escalation serialise."""
    return session.scalars(_LOCK_ZONE, {"alert_id": alert_id, "zone_id": zone_id}).one()


def acknowledge(session: Session, settings: Settings, rec: Recipient | Waiting, *,
                at: datetime, via: str, actor: str = "volunteer") -> AckOutcome:
    """Record the acknowledgement; cover the zone when its quorum is met.

    The common case (a volunteer answers, the zone already covered or short of its
    quorum) is three statements on the Core connection; covering a zone goes through
    the ORM, once per zone.
    """
    w = Waiting.of(rec) if isinstance(rec, Recipient) else rec
    conn = session.connection()
    zone_state, zone_name = w.zone_state, w.zone_name
    if zone_state is None or zone_name is None or conn.dialect.name != "sqlite":
        # On PostgreSQL this row lock serialises an acknowledgement with an escalation
        # of the same zone; SQLite's write lock, held since BEGIN IMMEDIATE, already does.
        row = conn.execute(_ZONE_STATE, {"alert_id": w.alert_id, "zone_id": w.zone_id}).one()
        zone_state, zone_name = str(row.state), str(row.name)
    changed = conn.execute(ACKNOWLEDGE_RECIPIENT, {"r_id": w.recipient_id, "r_at": at,
                                            "r_via": via}).rowcount
    if isinstance(rec, Recipient) and changed:
        # Keep the caller's object in step without marking it dirty.
        for key, value in (("state", RecipientState.ACKNOWLEDGED),
                           ("acknowledged_at", at), ("acknowledged_via", via)):
            set_committed_value(rec, key, value)
    if not changed:
        return AckOutcome(w.recipient_id, True, zone_state == ZoneState.ACKNOWLEDGED,
                          zone_name)
    audit.record(session, actor, "recipient.acknowledged", alert_id=w.alert_id,
                 recipient_id=w.recipient_id, zone=zone_name, via=via)
    covered = False
    if zone_state == ZoneState.WAITING and w.tier != DUTY_OFFICER_TIER:
        alert = session.get(Alert, w.alert_id)
        assert alert is not None
        az = lock_zone(session, w.alert_id, w.zone_id)
        # A cancelled alert records the answer, but its zones no longer move.
        if alert.state in OPEN_ALERT_STATES and quorum_met(session, alert, az):
            cover_zone(session, settings, alert, az, at)
            covered = True
    return AckOutcome(w.recipient_id, False, covered or zone_state == ZoneState.ACKNOWLEDGED,
                      zone_name, covered)


def quorum_met(session: Session, alert: Alert, az: AlertZone) -> bool:
    """Enough volunteers of the zone have acknowledged to cover it (the alert's policy
    says how many)."""
    acked = session.scalar(select(func.count()).select_from(Recipient).where(
        Recipient.alert_id == alert.id, Recipient.zone_id == az.zone_id,
        Recipient.state == RecipientState.ACKNOWLEDGED,
        Recipient.tier != DUTY_OFFICER_TIER)) or 0
    policy = alert.policy or {}
    if policy.get("mode") == "each":
        # Every volunteer first asked holds a duty; the zone is covered when as many
        # volunteers (they or the alternates their duty passed to) have acknowledged.
        # While the first tier is still being written, the duties are not all known.
        if filling(session, alert.id, az.zone_id):
            return False
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
    lifecycle.move(az, ZoneState.ACKNOWLEDGED)
    az.acknowledged_at = at
    # The rest of the tier still gets the alert: a fill goes on (`dispatch.fill`).
    cancel_deadlines(session, Deadline.alert_id == alert.id, Deadline.zone_id == az.zone_id,
                     Deadline.kind != DeadlineKind.FILL)
    audit.record(session, "system", "zone.acknowledged", alert_id=alert.id, zone=az.zone.name)
    if (alert.policy or {}).get("stand_down"):
        from dispatcher.dispatch.outbox import message_to

        others = session.scalars(select(Recipient.id).where(
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
        lifecycle.move(alert, AlertState.COMPLETED)
        alert.closed_at = at
        audit.record(session, "system", "alert.completed", alert_id=alert.id)


def complete_covered_alerts(db: Database) -> int:
    """Complete the open alerts whose every zone is covered or unreached; returns how
    many. `maybe_complete` runs in the transaction that covers a zone, and on PostgreSQL
    two zones covered at once (two acknowledgements, two fills' last chunks) each saw the
    other still waiting: neither completed the alert, and it stayed "sending" for good.
    The worker runs this on every pass; it reads first, outside the writers' lock."""
    a, az = table(Alert), table(AlertZone)
    zones = select(az.c.alert_id).where(az.c.alert_id == a.c.id)
    with db.reading() as session:
        ids: list[int] = list(session.scalars(select(a.c.id).where(
            or_(*(a.c.state == s.value for s in OPEN_ALERT_STATES)), zones.exists(),
            ~zones.where(az.c.state == ZoneState.WAITING.value).exists())))
    completed = 0
    for alert_id in ids:
        with db.session() as session:
            alert = session.scalars(select(Alert).where(Alert.id == alert_id).with_for_update()
                                    .execution_options(populate_existing=True)).one()
            was_open = alert.state in OPEN_ALERT_STATES  # another worker may have been first
            maybe_complete(session, alert, db_now(session))
            if was_open and alert.state == AlertState.COMPLETED:
                completed += 1
                log.info("alert %s completed: its last zones were covered at once",
                         alert_id, extra={"alert_id": alert_id})
    return completed


def filling(session: Session, alert_id: int, zone_id: int | None = None) -> bool:
    """True while a first wave of the alert (of one zone) is still being written."""
    where = [Deadline.alert_id == alert_id, Deadline.kind == DeadlineKind.FILL,
             Deadline.state.in_([DeadlineState.PENDING, DeadlineState.CLAIMED])]
    if zone_id is not None:
        where.append(Deadline.zone_id == zone_id)
    return session.scalar(select(Deadline.id).where(*where).limit(1)) is not None


def cancel_deadlines(session: Session, *where: ColumnElement[bool]) -> int:
    """Cancel the pending and claimed deadlines matching `where` (a zone covered, an
    alert cancelled).

    On PostgreSQL those nobody holds go first (SKIP LOCKED), then the rest, waiting for
    their holders: a fill holds its deadline through each chunk, and one UPDATE waiting
    on a lane's fill let the lanes start the queued fills it had not reached yet (a
    cancel took up to 3 s, and every zone was written in the meantime)."""
    live = (DeadlineState.PENDING, DeadlineState.CLAIMED)
    moved = 0
    if session.get_bind().dialect.name == "postgresql":
        free = (select(Deadline.id).where(*where, Deadline.state.in_(live))
                .with_for_update(skip_locked=True))
        moved = lifecycle.move_rows(session, Deadline, DeadlineState.CANCELLED,
                                    Deadline.id.in_(free), only_from=live)
    return moved + lifecycle.move_rows(session, Deadline, DeadlineState.CANCELLED,
                                       *where, only_from=live)


def takes_replies(recent: BindParameter[datetime]) -> ColumnElement[bool]:
    """Alerts that still take replies: open ones, and completed or cancelled ones closed
    after `recent` (the caller binds it to now - LATE_REPLY_WINDOW)."""
    alerts = table(Alert)
    # Spelled out rather than IN (...): a literal list is an "expanding" parameter that
    # SQLAlchemy re-renders on every execution, on the hottest query of the reply path.
    return or_(*(alerts.c.state == s.value for s in OPEN_ALERT_STATES),
               and_(or_(*(alerts.c.state == s.value for s in FINISHED_ALERT_STATES)),
                    alerts.c.closed_at >= recent))
