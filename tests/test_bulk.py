"""Bulk enqueue (`dispatcher.bulk`, `outbox.enqueue_tier`): the rows are those the ORM
path wrote one object at a time, skipped reasons, updates and escalation included."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher import bulk, lifecycle
from dispatcher.compose.templates import pick_language
from dispatcher.db import db_now, db_today
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.dispatch.targeting import Target, tier_targets, zone_members
from dispatcher.dispatch.versions import update_alert
from dispatcher.dispatch.wording import new_delivery
from dispatcher.domain import (
    DUTY_OFFICER_TIER,
    DeadlineKind,
    DeliveryPurpose,
    MsgType,
    RecipientState,
)
from dispatcher.escalation.engine import fire_due
from dispatcher.escalation.policy import EscalationPolicy
from dispatcher.models import (
    Alert,
    AlertVersion,
    Contact,
    Deadline,
    Delivery,
    Membership,
    Recipient,
    Volunteer,
    Zone,
)
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster

#: Columns compared between the two paths (ids, clocks and the alert's id differ).
RECIPIENT_COLUMNS = ("volunteer_id", "zone_id", "tier", "skipped", "acknowledged_at",
                     "notified_at")
DELIVERY_COLUMNS = ("contact_id", "channel", "purpose", "language", "subject", "body", "html",
                    "segments", "state", "attempts", "possibly_duplicate", "provider_id",
                    "lease_until", "claimed_by")


@pytest.fixture
def rt(database_url: str) -> Runtime:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def orm_enqueue(session: Session, alert: Alert, targets: Sequence[Target],
                policy: EscalationPolicy, due: datetime, default_language: str,
                zone: str, updates: list[dict[str, str]]) -> None:
    """The path bulk enqueue replaced, one ORM object at a time (the oracle)."""
    at_once = policy.step_channels(0)
    for target in targets:
        rec = lifecycle.start(
            Recipient(alert_id=alert.id, volunteer_id=target.volunteer.id,
                      zone_id=target.zone_id, tier=target.tier, due_at=due,
                      skipped=[s.as_dict() for s in target.skipped]),
            RecipientState.PENDING if target.reachable else RecipientState.FAILED)
        lang = pick_language(target.volunteer.language_list, list(alert.bodies),
                             default_language)
        contacts = [c for c in target.contacts if c.channel in at_once]
        for contact in contacts:
            rec.deliveries.append(new_delivery(alert, contact, DeliveryPurpose.ALERT, lang,
                                               zone=zone))
        for texts in updates:
            for contact in contacts:
                rec.deliveries.append(new_delivery(
                    alert, contact, DeliveryPurpose.UPDATE, lang,
                    texts.get(lang) or next(iter(texts.values())), zone=zone))
        session.add(rec)
    session.flush()


def rows(session: Session, alert_id: int) -> list[tuple[Any, ...]]:
    """An alert's recipients, each with its deliveries, without ids or clocks (the duty
    officers told of an unreached zone are not enqueued, so not compared)."""
    out = []
    for rec in session.scalars(select(Recipient).where(Recipient.alert_id == alert_id,
                                                       Recipient.tier != DUTY_OFFICER_TIER)):
        deliveries = sorted(tuple(str(getattr(d, c)) for c in DELIVERY_COLUMNS)
                            for d in session.scalars(select(Delivery).where(
                                Delivery.recipient_id == rec.id).order_by(Delivery.id)))
        # Escalation has since moved the first wave on: compare the state it started in.
        first = "failed" if rec.state == RecipientState.FAILED else "pending"
        out.append((tuple(str(getattr(rec, c)) for c in RECIPIENT_COLUMNS) + (first,),
                    tuple(deliveries)))
    return sorted(out)


def roster_with_holes(rt: Runtime) -> None:
    """An opted-out path, a dead one and an ended term: each must be skipped with why."""
    with rt.db.session() as session:
        ana = session.scalar(select(Volunteer.id).where(Volunteer.name == "Ana Morales"))
        brian = session.scalar(select(Volunteer.id).where(Volunteer.name == "Brian Keller"))
        session.execute(update(Contact).where(Contact.volunteer_id == ana,
                                              Contact.channel == "sms")
                        .values(opted_out=True))
        session.execute(update(Contact).where(Contact.volunteer_id == brian,
                                              Contact.channel == "sms")
                        .values(dead_reason="21211 invalid number"))
        emily = session.scalar(select(Volunteer.id).where(Volunteer.name == "Emily Carter"))
        session.execute(update(Membership).where(Membership.volunteer_id == emily)
                        .values(term_end=date(2020, 1, 1), term_start=date(2019, 1, 1)))


@pytest.mark.parametrize("channels", [[], ["sms", "voice"]])
def test_bulk_rows_equal_the_orm_path(rt: Runtime, channels: list[str]) -> None:
    roster_with_holes(rt)
    req = AlertRequest(zones=["all"], body="Bulk and ORM", channels=channels, force=True,
                       ack_window_seconds=600)
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        alert_id = send_alert(session, rt.settings, post, req).alert_id
    # An update, then Chiapas escalates: its alternate gets the alert and the update.
    with rt.db.session() as session:
        update_alert(session, rt.settings, alert_id, "Roads closed", actor="test")
        chiapas = session.scalar(select(Zone.id).where(Zone.name == "Chiapas"))
        session.execute(update(Deadline).where(
            Deadline.alert_id == alert_id, Deadline.zone_id == chiapas,
            Deadline.kind == DeadlineKind.ESCALATE)
            .values(due_at=db_now(session) - timedelta(seconds=1)))
    assert fire_due(rt.db, rt.settings, "test") >= 1
    with rt.db.session() as session:
        # Only what enqueue wrote: the update's deliveries to the first wave are
        # `message_to`'s, so they are left out of both sides.
        session.execute(Delivery.__table__.delete().where(
            Delivery.alert_id == alert_id, Delivery.purpose == DeliveryPurpose.UPDATE,
            Delivery.recipient_id.in_(select(Recipient.id).where(Recipient.tier == 0))))
        bulk_rows = rows(session, alert_id)
        assert any(r[0][2] != "0" for r in bulk_rows), "Chiapas's alternate was asked"
        if not channels:  # on SMS alone, Ana and Brian are nobody Chiapas can ask
            assert any("opted out" in r[0][3] for r in bulk_rows)
            assert any("dead path" in r[0][3] for r in bulk_rows)
        assert any("term ended" in r[0][3] and r[0][-1] == "failed" for r in bulk_rows)

        alert = session.get(Alert, alert_id)
        assert alert is not None
        twin = Alert(**{c.key: getattr(alert, c.key) for c in Alert.__table__.columns
                        if c.key != "id"})
        session.add(twin)
        session.flush()
        for v in session.scalars(select(AlertVersion).where(AlertVersion.alert_id == alert_id)):
            session.add(AlertVersion(alert_id=twin.id, number=v.number, msg_type=v.msg_type,
                                     body=v.body, texts=v.texts, sent_at=v.sent_at,
                                     created_by=v.created_by))
        session.flush()
        updates = list(session.scalars(select(AlertVersion.texts).where(
            AlertVersion.alert_id == twin.id, AlertVersion.msg_type == MsgType.UPDATE.value)
            .order_by(AlertVersion.number)))
        policy = EscalationPolicy.from_dict(alert.policy)
        today = db_today(session, post.timezone)
        asked = session.execute(select(Recipient.zone_id, Recipient.tier).where(
            Recipient.alert_id == alert_id, Recipient.tier != DUTY_OFFICER_TIER)
            .distinct()).all()
        for zone_id, tier in asked:
            members = zone_members(session, [zone_id]).get(zone_id, [])
            zone = session.get(Zone, zone_id)
            assert zone is not None
            targets = tier_targets(members, tier, alert.channels or None, today)
            # The first wave was asked before the update; the escalated tier after it.
            orm_enqueue(session, twin, targets, policy, db_now(session),
                        post.default_language, zone.name, updates if tier else [])
        twin_rows = rows(session, twin.id)
        session.rollback()
    assert bulk_rows == twin_rows


def test_values_of_takes_the_column_defaults() -> None:
    d = Delivery(alert_id=1, contact_id=2, channel="email", body="b")
    row = bulk.values_of(d, ("channel", "segments", "purpose", "subject"))
    assert row == {"channel": "email", "segments": 1, "purpose": "alert", "subject": None}


def test_allocated_ids_are_fresh_and_rows_read_back_as_written(rt: Runtime) -> None:
    with rt.db.session() as session:
        first = bulk.allocate_ids(session, Zone, 3)
        assert len(set(first)) == 3
        post = ensure_post(session, rt.settings, rt.vault)
        bulk.insert(session, Zone, ("id", "post_id", "name", "key"),
                    [(i, post.id, f"Z{i}", f"z{i}") for i in first])
        again = bulk.allocate_ids(session, Zone, 2)
        assert not set(again) & set(first)
        zones = session.scalars(select(Zone).where(Zone.id.in_(first))).all()
        assert sorted(z.name for z in zones) == sorted(f"Z{i}" for i in first)
        assert all(z.created_at is not None for z in zones)


def test_rows_read_back_every_kind_of_value(rt: Runtime) -> None:
    """Values the chunk shares or not, text with quotes, tabs and accents, JSON, bytes,
    floats and times read back as given, however the writer sends the chunk (SQLite:
    as JSON when every value has an exact JSON form, else bound row by row)."""
    texts = ["plain", "it's \"quoted\"", "tab\there\nnew line \\ back", "Señal ☎ 🚨", ""]
    skips: list[list[dict[str, str]]] = [
        [], [{"channel": "sms", "reason": "opted out «x»"}], [], [], [{"channel": "all",
                                                                      "reason": "a\tb"}]]
    floats = [0.1 + 0.2, 1e-7, 123456.789012345, None, 2.0]
    with rt.db.session() as session:
        if session.get_bind().dialect.name == "sqlite":  # PostgreSQL's text holds no NUL
            texts[-1] = "nul\x00after"
        zone_id, volunteers, alert = _bare_alert(session, rt)
        now = db_now(session)
        ids = bulk.allocate_ids(session, Recipient, 5)
        bulk.insert(session, Recipient, ("id", "alert_id", "volunteer_id", "zone_id", "tier",
                                         "due_at", "state", "skipped", "acknowledged_via"),
                    [(ids[i], alert.id, volunteers[i], zone_id, 0, now, "pending", skips[i],
                      texts[i][:16]) for i in range(5)])
        bulk.insert(session, Deadline, ("alert_id", "zone_id", "tier", "due_at", "claimed_by",
                                        "lateness_seconds"),
                    [(alert.id, zone_id, i, now + timedelta(seconds=i), texts[i], floats[i])
                     for i in range(5)])
        blobs = [b"\x00\t\\N", b"", "Señal".encode()]
        bulk.insert(session, Contact, ("volunteer_id", "channel", "value_enc", "value_hash",
                                       "masked"),
                    [(volunteers[0], f"x{i}", blobs[i], f"h{i}", texts[i]) for i in range(3)])
        session.expire_all()
        recipients = session.execute(select(
            Recipient.volunteer_id, Recipient.due_at, Recipient.skipped,
            Recipient.acknowledged_via).where(Recipient.alert_id == alert.id)
            .order_by(Recipient.id)).all()
        assert [tuple(r) for r in recipients] == [
            (volunteers[i], now, skips[i], texts[i][:16]) for i in range(5)]
        deadlines = session.execute(select(
            Deadline.due_at, Deadline.claimed_by, Deadline.lateness_seconds)
            .where(Deadline.alert_id == alert.id).order_by(Deadline.tier)).all()
        assert [tuple(d) for d in deadlines] == [
            (now + timedelta(seconds=i), texts[i], floats[i]) for i in range(5)]
        contacts = session.execute(select(Contact.value_enc, Contact.masked).where(
            Contact.volunteer_id == volunteers[0], Contact.channel.like("x%"))
            .order_by(Contact.channel)).all()
        assert [tuple(c) for c in contacts] == [(blobs[i], texts[i]) for i in range(3)]
        session.rollback()


def _bare_alert(session: Session, rt: Runtime) -> tuple[int, list[int], Alert]:
    """A zone, five volunteers and an alert row (no recipients) to write rows against."""
    post = ensure_post(session, rt.settings, rt.vault)
    zone_id = session.scalar(select(Zone.id).where(Zone.post_id == post.id))
    assert zone_id is not None
    volunteers = list(session.scalars(select(Volunteer.id).order_by(Volunteer.id)))[:5]
    alert = Alert(post_id=post.id, kind="security", title="t", bodies={"en": {"sms": "x"}},
                  reply_code="1000", ack_window_seconds=60, policy={})
    session.add(alert)
    session.flush()
    return zone_id, volunteers, alert


@pytest.mark.parametrize("volunteer_picks", [[0, 1, 2, 3], [0, 1, 3, 4], [3, 2, 1, 0]])
def test_counting_ids_and_a_single_varying_column_read_back(
        rt: Runtime, volunteer_picks: list[int]) -> None:
    """SQLite's writer binds a column of consecutive ids as its first and reads a chunk
    with one varying column from a flat array: the rows read back as given, whether the
    other column counts up too, skips a number, or counts down."""
    texts = ["it's \"quoted\"", "Señal ☎ 🚨", "", "tab\there"]
    with rt.db.session() as session:
        zone_id, volunteers, alert = _bare_alert(session, rt)
        now = db_now(session)
        ids = bulk.allocate_ids(session, Recipient, 4)
        chosen = [volunteers[i] for i in volunteer_picks]
        bulk.insert(session, Recipient, ("id", "alert_id", "volunteer_id", "zone_id", "tier"),
                    [(ids[i], alert.id, chosen[i], zone_id, 0) for i in range(4)])
        bulk.insert(session, Deadline, ("alert_id", "zone_id", "tier", "due_at", "claimed_by"),
                    [(alert.id, zone_id, 0, now, texts[i]) for i in range(4)])
        session.expire_all()
        assert [tuple(r) for r in session.execute(
            select(Recipient.id, Recipient.volunteer_id).where(Recipient.alert_id == alert.id)
            .order_by(Recipient.id))] == list(zip(ids, chosen, strict=True))
        assert sorted(session.scalars(select(Deadline.claimed_by).where(
            Deadline.alert_id == alert.id))) == sorted(texts)
        session.rollback()
