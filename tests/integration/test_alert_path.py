"""Roster -> send -> reply -> escalate, end to end over real HTTP with the real SDKs."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import func, select

from channels.webhooks import twilio_sign
from dispatcher.models import Contact, Delivery, InboundMessage, Response
from tests.engine import Engine, email_requests, sms_requests
from tests.helpers import wait_until

ANA = "+529611230101"  # Chiapas primary
BRIAN = "+529611230102"  # Chiapas alternate1
CARMEN = "+529611230103"  # Chiapas alternate2
VICTOR = "+529515101001"  # Oaxaca primary
WENDY = "+529515101002"  # Oaxaca alternate1


def signed_sms(engine: Engine, sender: str, body: str, sid: str) -> httpx.Response:
    url = f"{engine.url}/webhooks/twilio/sms"
    params = {"MessageSid": sid, "AccountSid": engine.sim.account_sid, "From": sender,
              "To": "+15005550006", "Body": body, "NumMedia": "0", "NumSegments": "1"}
    signature = twilio_sign(engine.sim.auth_token, url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature})


def test_send_reaches_exactly_the_primaries_once_per_channel(engine: Engine) -> None:
    alert_id = engine.send(["Chiapas", "oaxaca"], exercise=True, ack_window_seconds=600)
    wait_until(lambda: len(email_requests(engine.sim)) >= 2, what="both emails")
    sms = sms_requests(engine.sim)
    assert sorted(r["to"] for r in sms) == sorted([ANA, VICTOR])
    assert all(r["body"].startswith("EXERCISE") for r in sms)
    assert all(f"{engine.code(alert_id)}" in r["body"] for r in sms)
    emails = email_requests(engine.sim)
    assert sorted(e["to"] for e in emails) == ["ana.morales@example.org",
                                                "victor.castillo@example.org"]
    assert all(e["subject"].startswith("EXERCISE") for e in emails)
    status = engine.status(alert_id)
    assert {r["name"] for r in status["recipients"]} == {"Ana Morales", "Victor Castillo"}
    assert {z["zone"]: z["state"] for z in status["zones"]} == {"Chiapas": "waiting",
                                                                 "Oaxaca": "waiting"}
    assert all(r["state"] == "notified" for r in status["recipients"])


def test_si_acknowledges_and_repeats_count_once(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    for _ in range(3):
        reply = signed_sms(engine, VICTOR, "Sí", "SM" + "1" * 32)
        assert reply.status_code == 200
    engine.wait_zone(alert_id, "Oaxaca", "acknowledged")
    victor = engine.recipient(alert_id, "Victor Castillo")
    assert victor["state"] == "acknowledged" and victor["acknowledged_at"]
    with engine.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.source == "twilio_sms")) == 1
        assert s.scalar(select(func.count()).select_from(Response)) == 1


def test_answer_names_volunteer_zone_and_code(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], exercise=True, ack_window_seconds=600)
    reply = signed_sms(engine, VICTOR, f"ok {engine.code(alert_id)}", "SM" + "2" * 32)
    assert "Gracias Victor" in reply.text and "Oaxaca" in reply.text
    assert f"EXERCISE {engine.code(alert_id)}" in reply.text


def test_forged_signature_gets_403_and_changes_nothing(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    url = f"{engine.url}/webhooks/twilio/sms"
    params = {"MessageSid": "SM" + "3" * 32, "From": VICTOR, "To": "+15005550006",
              "Body": "YES"}
    forged = twilio_sign("not-the-token", url, params)
    for headers in ({"X-Twilio-Signature": forged}, {}):
        assert httpx.post(url, data=params, headers=headers).status_code == 403
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"
    with engine.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.source == "twilio_sms")) == 0
        assert s.scalar(select(func.count()).select_from(Response)) == 0


def test_stop_opts_out_and_is_no_acknowledgement(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    reply = signed_sms(engine, VICTOR, "STOP", "SM" + "4" * 32)
    assert reply.status_code == 200
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"
    assert engine.zone(alert_id, "Oaxaca")["state"] == "waiting"
    with engine.rt.db.session() as s:
        phone = s.scalars(select(Contact).where(Contact.channel == "sms",
                                                Contact.masked.like("+52%1001"))).one()
        assert phone.opted_out


def test_unknown_sender_is_kept_as_field_report(engine: Engine) -> None:
    reply = signed_sms(engine, "+525599990000", "road to airport blocked", "SM" + "5" * 32)
    assert reply.status_code == 200
    with engine.rt.db.session() as s:
        report = s.scalars(select(Response)).one()
    assert report.kind == "field_report" and report.text == "road to airport blocked"
    assert report.sender_masked and "99990000" not in report.sender_masked


def test_silent_primary_escalates_after_the_window(engine: Engine) -> None:
    engine.sim.script(BRIAN, reply="YES {code}", delay=0.2)
    start = time.monotonic()
    alert_id = engine.send(["Chiapas"], ack_window_seconds=4)
    wait_until(lambda: engine.sms_to(BRIAN), timeout=12, what="alternate1 contacted")
    elapsed = time.monotonic() - start
    assert 3.5 <= elapsed <= 8.0, elapsed
    engine.wait_zone(alert_id, "Chiapas", "acknowledged", timeout=10)
    assert engine.recipient(alert_id, "Ana Morales")["state"] == "escalated"
    assert engine.recipient(alert_id, "Brian Keller")["state"] == "acknowledged"
    # An acknowledgement from alternate1 means alternate2 is never contacted: the zone's
    # deadlines were cancelled in the acknowledgement's own transaction.
    with engine.rt.db.session() as s:
        from dispatcher.models import Deadline

        pending = s.scalar(select(func.count()).select_from(Deadline).where(
            Deadline.alert_id == alert_id, Deadline.state == "pending"))
    assert pending == 0
    assert engine.sms_to(CARMEN) == []


@pytest.mark.slow
def test_deadline_passing_while_serve_is_down_fires_after_restart(
    engine_factory,  # type: ignore[no-untyped-def]
) -> None:
    engine = engine_factory()
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=2)
    engine.stop()
    with engine.rt.db.session() as s:
        from dispatcher.models import Deadline

        due = s.scalars(select(Deadline).where(Deadline.alert_id == alert_id)).one().due_at
    wait_until(lambda: time.time() > due.timestamp() + 1.0, timeout=10, what="deadline to pass")
    assert engine.sms_to(WENDY) == []
    restarted = time.monotonic()
    engine.start()
    wait_until(lambda: engine.sms_to(WENDY), timeout=5, what="alternate1 after restart")
    assert time.monotonic() - restarted <= 2.0


def test_dead_number_fails_over_and_escalates_without_waiting(engine: Engine) -> None:
    engine.sim.set_faults(invalid_numbers=[VICTOR])
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, channels=["sms"])
    # The SMS path is dead: the alert goes by email at once (failover) ...
    wait_until(lambda: any(e["to"] == "victor.castillo@example.org"
                           for e in email_requests(engine.sim)), what="failover email")
    with engine.rt.db.session() as s:
        purposes = sorted(s.scalars(select(Delivery.purpose).where(
            Delivery.alert_id == alert_id)))
    assert "failover" in purposes


def test_cancel_stops_escalation_and_tells_recipients(engine: Engine) -> None:
    from dispatcher.dispatch.versions import cancel_alert

    alert_id = engine.send(["Chiapas"], ack_window_seconds=3)
    with engine.rt.db.session() as s:
        cancel_alert(s, engine.rt.settings, alert_id, actor="test")
    wait_until(lambda: any("CANCEL" in b for b in engine.sms_to(ANA)), what="cancel SMS")
    assert engine.status(alert_id)["state"] == "cancelled"
    with engine.rt.db.session() as s:
        from dispatcher.models import Deadline

        deadlines = s.scalars(select(Deadline).where(Deadline.alert_id == alert_id)).all()
    assert deadlines and all(d.state == "cancelled" for d in deadlines)
    due = max(d.due_at for d in deadlines).timestamp()
    worker = engine.server.server.config.app.state.worker  # type: ignore[union-attr]
    ticks = worker.ticks
    # Past the window and two more worker passes later, alternate1 was never contacted.
    wait_until(lambda: time.time() > due + 0.5 and worker.ticks >= ticks + 2, timeout=10,
               what="the window to pass")
    assert engine.sms_to(BRIAN) == []
