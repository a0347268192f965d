"""Firing due deadlines: remind the same tier, escalate to the next, or give up on a zone.

Each deadline is handled in its own transaction holding the zone row's lock, and
the zone's state is checked again inside it, so an acknowledgement that lands a
millisecond earlier always wins: no escalation after an acknowledgement.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from dispatcher import audit, lifecycle
from dispatcher.acks import complete_covered_alerts, lock_zone, maybe_complete
from dispatcher.claims import claim, release_dead_claims
from dispatcher.db import Database, db_now, db_today
from dispatcher.dispatch.outbox import duty_officer_recipients, enqueue_tier, message_to
from dispatcher.dispatch.targeting import next_tier, tier_targets, zone_members
from dispatcher.domain import (
    DUTY_OFFICER_TIER,
    OPEN_ALERT_STATES,
    DeadlineKind,
    DeadlineState,
    DeliveryPurpose,
    RecipientState,
    ZoneState,
    tier_name,
)
from dispatcher.escalation.policy import EscalationPolicy
from dispatcher.escalation.steps import fire_step
from dispatcher.models import Alert, AlertZone, Deadline, Post, Recipient
from dispatcher.settings import Settings

log = logging.getLogger(__name__)

#: Deadlines claimed per transaction.
CLAIM_BATCH = 200


def claim_due_deadlines(db: Database, worker: str, lease_seconds: float,
                        limit: int = CLAIM_BATCH) -> list[int]:
    """Claim due deadlines other than fills; their ids."""
    return claim_due(db, worker, lease_seconds, limit, fills=False)[0]


def claim_due(db: Database, worker: str, lease_seconds: float, limit: int = CLAIM_BATCH,
              *, fills: bool | None) -> tuple[list[int], list[int]]:
    """Claim due deadlines, new ones and those whose claimer died or whose lease ran
    out: fills only (`fills=True`), all but fills (False), or both in one transaction
    (None). Returns the ids of the deadlines to fire and those of the fills
    (`dispatch.fill`), apart."""
    with db.session() as session:
        now = db_now(session)
        release_dead_claims(session, Deadline, DeadlineState.CLAIMED, now)
        due = or_(
            and_(Deadline.state == DeadlineState.PENDING, Deadline.due_at <= now),
            and_(Deadline.state == DeadlineState.CLAIMED, Deadline.lease_until < now),
        )
        if fills is not None:
            due = and_(due, Deadline.kind == DeadlineKind.FILL if fills
                       else Deadline.kind != DeadlineKind.FILL)
        ids = claim(session, Deadline, due, worker=worker, now=now,
                    lease_seconds=lease_seconds, limit=limit,
                    claimed_state=DeadlineState.CLAIMED,
                    order_by=(Deadline.due_at, Deadline.id))
        if fills is not None or not ids:
            return ([], ids) if fills else (ids, [])
        filled = set(session.scalars(select(Deadline.id).where(
            Deadline.id.in_(ids), Deadline.kind == DeadlineKind.FILL)))
        return [i for i in ids if i not in filled], [i for i in ids if i in filled]


def fire_due(db: Database, settings: Settings, worker: str,
             fills: list[int] | None = None) -> int:
    """Claim and fire every deadline due now; returns how many fired. Given a `fills`
    list, the fills due (`dispatch.fill`) are claimed in the same transactions and added
    to it, for the caller to write beside its fan-out; without one they are left alone."""
    fired = 0
    while True:
        ids, filled = claim_due(db, worker, settings.lease_seconds,
                                fills=None if fills is not None else False)
        if not ids and not filled:
            try:
                complete_covered_alerts(db)
            except Exception:
                # The next pass tries again; the sending after this pass must not wait.
                log.exception("completing covered alerts failed; the next pass retries")
            return fired
        if fills is not None:
            fills.extend(filled)
        for deadline_id in ids:
            try:
                with db.session() as session:
                    if fire(session, settings, deadline_id, worker):
                        fired += 1
            except Exception:
                # The lease expires and the deadline is retried; never lose it silently.
                log.exception("deadline %s failed; it will be retried after its lease",
                              deadline_id, extra={"deadline_id": deadline_id})


def fire(session: Session, settings: Settings, deadline_id: int, worker: str) -> bool:
    d = session.get(Deadline, deadline_id)
    if d is None or d.state != DeadlineState.CLAIMED or d.claimed_by != worker:
        return False  # another worker took it over after our lease ran out
    alert = session.get(Alert, d.alert_id)
    assert alert is not None
    az = lock_zone(session, d.alert_id, d.zone_id)
    now = db_now(session)
    d.fired_at = now
    d.lateness_seconds = max(0.0, (now - d.due_at).total_seconds())
    if alert.state not in OPEN_ALERT_STATES or az.state != ZoneState.WAITING:
        lifecycle.move(d, DeadlineState.CANCELLED)
        return False
    lifecycle.move(d, DeadlineState.DONE)
    policy = EscalationPolicy.from_dict(alert.policy or {})
    if d.kind == DeadlineKind.STEP:
        if d.tier != az.current_tier:
            return False  # the zone already moved on to its next tier
        post = session.get(Post, alert.post_id)
        assert post is not None
        fire_step(session, settings, alert, az, d, policy, post)
        return True
    if d.kind == DeadlineKind.REMINDER:
        still_silent = session.scalars(select(Recipient.id).where(
            *_silent_where(alert.id, d.zone_id, d.tier))).all()
        message_to(session, settings, alert, still_silent, DeliveryPurpose.REMINDER,
                   "reminder")
        return True
    if d.tier != az.current_tier and d.recipient_id is None:
        return False  # a stale deadline of a tier the zone already left
    if d.recipient_id is not None:
        rec = session.get(Recipient, d.recipient_id)
        if rec is None or rec.state == RecipientState.ACKNOWLEDGED:
            return False
    post = session.get(Post, alert.post_id)
    assert post is not None
    today = db_today(session, post.timezone)
    members = zone_members(session, [d.zone_id]).get(d.zone_id, [])
    channels = alert.channels or None
    watched = session.get(Recipient, d.recipient_id) if d.recipient_id else None
    silent = ([watched] if watched is not None
              else _silent(session, alert.id, d.zone_id, d.tier))
    for rec in silent:
        if rec is not None and rec.state in (RecipientState.NOTIFIED, RecipientState.PENDING):
            lifecycle.move(rec, RecipientState.ESCALATED)
    # Tier -1 marks a zone sent with --force and nobody to ask: its chain starts anew.
    following = next_tier(members, d.tier, channels, today)
    if following is not None:
        targets = tier_targets(members, following, channels, today)
        if policy.mode == "each" and following == az.current_tier:
            return True  # this alternate tier is already asked; the duty passed to it
        enqueue_tier(session, alert, az, targets, policy, now, post)
        audit.record(session, "system", "zone.escalated", alert_id=alert.id,
                     zone=az.zone.name, from_tier=tier_name(d.tier) if d.tier >= 0 else None,
                     to_tier=tier_name(following), late_seconds=d.lateness_seconds)
        log.info("alert %s zone %s escalated to %s", alert.id, az.zone.name,
                 tier_name(following), extra={"alert_id": alert.id})
        return True
    if policy.mode == "each" and _others_waiting(session, alert.id, d.zone_id, d.id):
        return True
    give_up(session, settings, alert, az, post, now)
    return True


def give_up(session: Session, settings: Settings, alert: Alert, az: AlertZone, post: Post,
            now: datetime) -> None:
    """The chain is exhausted: the zone is unreached and the duty officers are told."""
    lifecycle.move(az, ZoneState.UNREACHED)
    az.unreached_at = now
    audit.record(session, "system", "zone.unreached", alert_id=alert.id, zone=az.zone.name)
    log.warning("alert %s: zone %s unreached", alert.id, az.zone.name,
                extra={"alert_id": alert.id})
    if (alert.policy or {}).get("notify_duty_officers", True):
        officers = duty_officer_recipients(session, alert, az, post)
        az.current_tier = DUTY_OFFICER_TIER
        message_to(session, settings, alert, [r.id for r in officers],
                   DeliveryPurpose.UNREACHED, "unreached")
    maybe_complete(session, alert, now)


def _silent(session: Session, alert_id: int, zone_id: int, tier: int) -> list[Recipient]:
    return list(session.scalars(select(Recipient).where(
        *_silent_where(alert_id, zone_id, tier))))


def _silent_where(alert_id: int, zone_id: int, tier: int) -> tuple[ColumnElement[bool], ...]:
    """A tier's recipients still silent: told, or about to be, and not answering."""
    return (Recipient.alert_id == alert_id, Recipient.zone_id == zone_id,
            Recipient.tier == tier,
            Recipient.state.in_([RecipientState.NOTIFIED, RecipientState.PENDING]))


def _others_waiting(session: Session, alert_id: int, zone_id: int, deadline_id: int) -> bool:
    return session.scalar(select(Deadline.id).where(
        Deadline.alert_id == alert_id, Deadline.zone_id == zone_id, Deadline.id != deadline_id,
        Deadline.kind == DeadlineKind.ESCALATE,
        Deadline.state.in_([DeadlineState.PENDING, DeadlineState.CLAIMED])).limit(1)) is not None


def escalate_now(session: Session, alert_id: int, zone_id: int) -> None:
    """A dead path on every channel of a tier: bring its deadline forward to now."""
    now = db_now(session)
    for d in session.scalars(select(Deadline).where(
            Deadline.alert_id == alert_id, Deadline.zone_id == zone_id,
            Deadline.kind == DeadlineKind.ESCALATE, Deadline.state == DeadlineState.PENDING)):
        if d.due_at > now:
            d.due_at = now


def next_due_at(db: Database) -> datetime | None:
    """When the scheduler should next wake a worker for deadlines."""
    from sqlalchemy import func

    with db.session() as session:
        return session.scalar(select(func.min(Deadline.due_at)).where(
            Deadline.state == DeadlineState.PENDING))

