"""A provider outage of several seconds in the middle of a fan-out: everybody reached after."""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import func, select

from dispatcher.db import db_now
from dispatcher.models import Delivery
from tests.bench.fixtures import bulk_roster
from tests.engine import sms_requests
from tests.helpers import wait_until

RECIPIENTS = 300


def test_outage_mid_fanout_then_everybody_is_reached(engine_factory) -> None:  # type: ignore[no-untyped-def]
    # Short retry budget so the outage outlasts it: deliveries go back to the outbox and
    # the running worker (aln serve) sends them when the provider is back.
    engine = engine_factory(retry_max_seconds=1.0, retry_max_attempts=3, send_concurrency=5)
    phones = bulk_roster(engine.rt, RECIPIENTS, zones=1)
    engine.sim.set_faults(latency_ms=50)  # 100 messages a second: an outage lands mid-way
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=3600,
                           fan_out=False)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (asyncio.run(engine.fan_out(alert_id)),
                                              done.set()), daemon=True)
    thread.start()
    wait_until(lambda: len(sms_requests(engine.sim)) >= 60, timeout=20,
               what="the fan-out under way")
    engine.sim.set_faults(outage_seconds=3)
    during = len({r["to"] for r in sms_requests(engine.sim)})
    thread.join(timeout=60)
    assert done.is_set()

    def everyone_accepted() -> bool:
        with engine.rt.db.session() as s:
            left = s.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.alert_id == alert_id, Delivery.state.in_(["pending", "sending"])))
        return left == 0

    wait_until(everyone_accepted, timeout=40, interval=0.25, what="every delivery accepted")
    reached = {r["to"] for r in sms_requests(engine.sim)}
    assert during < RECIPIENTS
    assert set(phones) <= reached
    with engine.rt.db.session() as s:
        failed = s.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.alert_id == alert_id, Delivery.state == "failed"))
    assert failed == 0


def test_a_delivery_put_back_after_a_429_waits_what_the_provider_asked(  # type: ignore[no-untyped-def]
        engine_factory) -> None:
    engine = engine_factory(start=False, retry_max_attempts=1)
    engine.sim.set_faults(burst_429=1, retry_after=30)
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=3600)
    with engine.rt.db.session() as s:
        now = db_now(s)
        delivery = s.scalars(select(Delivery).where(Delivery.alert_id == alert_id)).one()
        assert delivery.state == "pending" and delivery.attempts == 1
        assert delivery.lease_until is not None
        assert 29 <= (delivery.lease_until - now).total_seconds() <= 31


def test_an_error_recorded_after_a_receipt_keeps_the_receipts_news(  # type: ignore[no-untyped-def]
        engine_factory) -> None:
    """A request that timed out on our side may still have reached the provider, whose
    callback lands first: the delivery stays as the callback said, and is not re-sent."""
    from channels.errors import TransientError
    from dispatcher.dispatch.sender import Outcome, Sender
    from dispatcher.receipts import apply_twilio_status

    engine = engine_factory(start=False)
    alert_id = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=3600,
                           fan_out=False)
    sender = Sender(engine.rt.db, engine.rt.settings, engine.rt.vault, {}, "test")
    (delivery, _), = sender._claim(alert_id)
    with engine.rt.db.session() as s:
        apply_twilio_status(s, {"MessageSid": "SM" + "9" * 32, "MessageStatus": "sent"},
                            str(delivery.id))
    timeout = TransientError(provider="twilio", status=None, code=None, message="timed out")
    sender._record([Outcome(delivery.id, delivery.recipient_id, delivery.alert_id, error=timeout)])
    with engine.rt.db.session() as s:
        stored = s.get(Delivery, delivery.id)
        assert stored is not None and stored.state == "sent"


def test_an_acceptance_recorded_after_a_bounce_does_not_revive_the_recipient(  # type: ignore[no-untyped-def]
        engine_factory) -> None:
    """Victor's SMS number is invalid and his email bounces; the bounce's callback lands
    before the sender records SendGrid's acceptance. He stays failed (his zone escalates at
    once), rather than come back as notified and wait out the window."""
    from channels.base import Receipt
    from channels.errors import PermanentError
    from dispatcher.dispatch.sender import Outcome, Sender
    from dispatcher.domain import DeliveryState
    from dispatcher.models import Recipient
    from dispatcher.receipts import apply_state

    engine = engine_factory(start=False)
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=3600, fan_out=False)
    sender = Sender(engine.rt.db, engine.rt.settings, engine.rt.vault, {}, "test")
    claimed = {d.channel: d for d, _ in sender._claim(alert_id)}
    sms, email = claimed["sms"], claimed["email"]
    with engine.rt.db.session() as s:
        bounced = s.get(Delivery, email.id)
        assert bounced is not None
        apply_state(s, bounced, DeliveryState.BOUNCED, error_code=None,
                    reason="sendgrid bounce", recipient_specific=True)
    invalid = PermanentError(provider="twilio", status=400, code=21211, message="invalid To")
    sender._record([Outcome(sms.id, sms.recipient_id, sms.alert_id, error=invalid)])
    with engine.rt.db.session() as s:
        assert s.get(Recipient, sms.recipient_id).state == "failed"  # type: ignore[union-attr]
    sender._record([Outcome(email.id, email.recipient_id, email.alert_id,
                            receipt=Receipt("sg-1", "accepted"))])
    with engine.rt.db.session() as s:
        victor = s.get(Recipient, sms.recipient_id)
        assert victor is not None and victor.state == "failed"
        assert s.get(Delivery, email.id).state == "bounced"  # type: ignore[union-attr]


def test_a_sender_keeps_the_rows_it_works_on_past_their_lease(  # type: ignore[no-untyped-def]
        engine_factory) -> None:
    """A slow machine (a long batch, a busy database) must not let another worker take a
    message that is still this sender's and send it twice: the sender renews its leases,
    without stamping the rows as changed for the board."""
    from datetime import timedelta

    from sqlalchemy import update

    from dispatcher.dispatch.sender import Sender

    engine = engine_factory(start=False)
    alert_id = engine.send(["Chiapas", "Oaxaca"], ack_window_seconds=3600, fan_out=False)
    mine = Sender(engine.rt.db, engine.rt.settings, engine.rt.vault, {}, "host:1:mine")
    other = Sender(engine.rt.db, engine.rt.settings, engine.rt.vault, {}, "host:2:other")
    held = {d.id for d, _ in mine._claim(alert_id)}
    assert held
    with engine.rt.db.session() as s:  # the lease ran out while the sender still works
        s.execute(update(Delivery).where(Delivery.id.in_(held))
                  .values(lease_until=db_now(s) - timedelta(seconds=1)))
        stamps = dict(s.execute(select(Delivery.id, Delivery.updated_at)
                                .where(Delivery.id.in_(held))).all())
    assert mine._renew_leases() == len(held)
    assert other._claim(alert_id) == []
    with engine.rt.db.session() as s:
        rows = s.execute(select(Delivery.id, Delivery.updated_at, Delivery.lease_until,
                                Delivery.claimed_by).where(Delivery.id.in_(held))).all()
        now = db_now(s)
    assert all(r.claimed_by == "host:1:mine" and r.lease_until > now for r in rows)
    assert {r.id: r.updated_at for r in rows} == stamps
