"""Webhooks and the acknowledgement link: what volunteers and providers send us."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from channels.webhooks import sendgrid_sign, twilio_sign
from dispatcher.models import Alert, AuditEvent, Contact, Delivery, Response
from dispatcher.replies.parser import ReplyKind, parse_reply
from dispatcher.text import fold
from dispatcher.tokens import BadToken, make_ack_token, read_ack_token
from tests.engine import Engine, email_requests
from tests.helpers import wait_until

VICTOR = "+529515101001"  # Oaxaca primary (es;en)
NATHAN = "+524433100601"  # Michoacán primary (en;es)
_sid = iter(range(10**6))


def sms(engine: Engine, sender: str, body: str, sid: str | None = None) -> httpx.Response:
    url = f"{engine.url}/webhooks/twilio/sms"
    params = {"MessageSid": sid or f"SM{next(_sid):032x}", "AccountSid": engine.sim.account_sid,
              "From": sender, "To": "+15005550006", "Body": body, "NumMedia": "0"}
    return httpx.post(url, data=params,
                      headers={"X-Twilio-Signature": twilio_sign(engine.sim.auth_token, url,
                                                                 params)})


def status_callback(engine: Engine, delivery_id: int, status: str,
                    error: str | None = None) -> httpx.Response:
    url = f"{engine.url}/webhooks/twilio/status?ref={delivery_id}"
    params = {"MessageSid": f"SMcb{delivery_id:030x}", "MessageStatus": status,
              "AccountSid": engine.sim.account_sid, "To": VICTOR, "From": "+15005550006"}
    if error:
        params["ErrorCode"] = error
    return httpx.post(url, data=params,
                      headers={"X-Twilio-Signature": twilio_sign(engine.sim.auth_token, url,
                                                                 params)})


def deliveries(engine: Engine, alert_id: int) -> list[Delivery]:
    with engine.rt.db.session() as s:
        return list(s.scalars(select(Delivery).where(Delivery.alert_id == alert_id)
                              .order_by(Delivery.id)))


def test_help_is_urgent_not_an_acknowledgement(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    reply = sms(engine, VICTOR, "NECESITO AYUDA")
    assert "+52 55 5080 2000" in reply.text  # the embassy's line, from config/posts
    with engine.rt.db.session() as s:
        resp = s.scalars(select(Response)).one()
    assert resp.kind == "help" and resp.urgent and resp.alert_id == alert_id
    # The HELP may arrive before the alert's own SMS is recorded as sent: wait for that,
    # then the volunteer must still be waiting, never acknowledged.
    wait_until(lambda: engine.recipient(alert_id, "Victor Castillo")["state"] != "pending",
               timeout=30, what="Victor's alert recorded as sent")
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"


def test_headcount_acknowledges_and_is_kept(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    reply = sms(engine, VICTOR, "DONE 12 3")
    assert "12" in reply.text and "3" in reply.text
    with engine.rt.db.session() as s:
        resp = s.scalars(select(Response)).one()
    assert (resp.kind, resp.headcount_reached, resp.headcount_need_help) == ("headcount", 12, 3)
    assert engine.zone(alert_id, "Oaxaca")["state"] == "acknowledged"


def test_bare_yes_with_two_open_alerts_acknowledges_none_and_lists_codes(
        engine: Engine) -> None:
    first = engine.send(["Oaxaca"], ack_window_seconds=600)
    second = engine.send(["Oaxaca"], ack_window_seconds=600)
    reply = sms(engine, VICTOR, "YES")
    assert engine.code(first) in reply.text and engine.code(second) in reply.text
    assert engine.recipient(first, "Victor Castillo")["state"] == "notified"
    assert engine.recipient(second, "Victor Castillo")["state"] == "notified"
    sms(engine, VICTOR, f"{engine.code(first)} ok")
    assert engine.recipient(first, "Victor Castillo")["state"] == "acknowledged"
    assert engine.recipient(second, "Victor Castillo")["state"] == "notified"
    # Now only one alert waits for him: a bare YES is no longer ambiguous.
    sms(engine, VICTOR, "sí")
    assert engine.recipient(second, "Victor Castillo")["state"] == "acknowledged"


def test_answer_is_in_the_volunteers_language(engine: Engine) -> None:
    alert_id = engine.send(["Michoacán"], ack_window_seconds=600)
    reply = sms(engine, NATHAN, f"yes {engine.code(alert_id)}")
    assert "Thank you Nathan" in reply.text and "Michoacán" in reply.text


def test_start_opts_back_in(engine: Engine) -> None:
    sms(engine, VICTOR, "STOP")
    sms(engine, VICTOR, "START")
    with engine.rt.db.session() as s:
        opted = s.scalars(select(Contact.opted_out).where(Contact.channel == "sms",
                                                          Contact.masked.like("%1001"))).one()
    assert opted is False


def sms_contact(engine: Engine, last_digits: str) -> Contact:
    with engine.rt.db.session() as s:
        return s.scalars(select(Contact).where(Contact.channel == "sms",
                                               Contact.masked.like(f"%{last_digits}"))).one()


@pytest.mark.parametrize("word", ["REVOKE", "optout"])
def test_revoke_and_optout_opt_out_like_twilio(engine: Engine, word: str) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    reply = sms(engine, VICTOR, word)
    assert "START" in reply.text
    assert sms_contact(engine, "1001").opted_out
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"


def test_bare_yes_opts_back_in_and_acknowledges(engine: Engine) -> None:
    sms(engine, VICTOR, "STOP")
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)  # reaches him by email
    reply = sms(engine, VICTOR, "Yes")
    assert "Gracias Victor" in reply.text
    assert not sms_contact(engine, "1001").opted_out
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "acknowledged"
    with engine.rt.db.session() as s:
        kinds = list(s.scalars(select(Response.kind).order_by(Response.id)))
    assert kinds == ["opt_out", "ack"]


def _kill_sms_path(engine: Engine, alert_id: int, how: str) -> None:
    """Victor's SMS path dies with Twilio's 21610, on create or in a status callback."""
    if how == "callback":
        (d,) = deliveries(engine, alert_id)
        status_callback(engine, d.id, "failed", error="21610")
    wait_until(lambda: sms_contact(engine, "1001").dead_reason is not None,
               what="the SMS path marked dead")


@pytest.mark.parametrize("how", ["create", "callback"])
@pytest.mark.parametrize("word", ["START", "unstop", "YES"])
def test_opt_in_clears_a_path_dead_by_twilio_21610(engine: Engine, how: str, word: str
                                                    ) -> None:
    if how == "create":
        engine.sim.set_faults(opted_out_numbers=[VICTOR])
    else:
        engine.sim.set_faults(callbacks=False)
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, channels=["sms"])
    _kill_sms_path(engine, alert_id, how)
    assert "21610" in (sms_contact(engine, "1001").dead_reason or "")
    sms(engine, VICTOR, word)
    contact = sms_contact(engine, "1001")
    assert (contact.dead_reason, contact.dead_at, contact.opted_out) == (None, None, False)
    with engine.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "contact.opted_in")) == 1


def test_opt_in_leaves_other_dead_paths_dead(engine: Engine) -> None:
    engine.sim.set_faults(landline_numbers=[VICTOR])
    engine.send(["Oaxaca"], ack_window_seconds=600, channels=["sms"])
    wait_until(lambda: sms_contact(engine, "1001").dead_reason is not None,
               what="the SMS path marked dead")
    reason = sms_contact(engine, "1001").dead_reason
    sms(engine, VICTOR, "START")
    assert sms_contact(engine, "1001").dead_reason == reason


def test_info_answers_with_the_embassy_line_and_is_not_urgent(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    reply = sms(engine, VICTOR, "INFO")
    assert "+52 55 5080 2000" in reply.text and "urgent" not in fold(reply.text)
    assert "urgente" not in fold(reply.text)
    with engine.rt.db.session() as s:
        resp = s.scalars(select(Response)).one()
        helps = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "volunteer.needs_help"))
    assert (resp.kind, resp.urgent, helps) == ("info", False, 0)
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"


def test_status_callbacks_only_move_forward(engine: Engine) -> None:
    engine.sim.set_faults(callbacks=False)
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, channels=["sms"])
    (d,) = deliveries(engine, alert_id)
    for status in ("delivered", "sent", "queued", "sending"):
        assert status_callback(engine, d.id, status).status_code == 204
    assert deliveries(engine, alert_id)[0].state == "delivered"
    # The same callback again is deduplicated, and unknown statuses change nothing.
    assert status_callback(engine, d.id, "delivered").status_code == 204
    assert status_callback(engine, d.id, "no-such-status").status_code == 204
    assert deliveries(engine, alert_id)[0].state == "delivered"


def test_undelivered_callback_fails_over_to_email(engine: Engine) -> None:
    engine.sim.set_faults(callbacks=False)
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, channels=["sms"])
    (d,) = deliveries(engine, alert_id)
    status_callback(engine, d.id, "undelivered", error="30006")
    wait_until(lambda: any(e["to"] == "victor.castillo@example.org"
                           for e in email_requests(engine.sim)), what="failover email")
    rows = deliveries(engine, alert_id)
    assert [(r.channel, r.purpose) for r in rows] == [("sms", "alert"), ("email", "failover")]
    assert rows[0].state == "undelivered" and rows[0].error_code == "30006"


def test_bounce_on_every_path_escalates_without_waiting(engine: Engine) -> None:
    engine.sim.set_faults(invalid_numbers=[VICTOR],
                          bounce_emails=["victor.castillo@example.org"])
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    wait_until(lambda: engine.sms_to("+529515101002"), timeout=10,
               what="alternate1 asked at once")
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "failed"


def test_sendgrid_event_signature_and_age_are_checked(engine: Engine) -> None:
    url = f"{engine.url}/webhooks/sendgrid/events"
    raw = json.dumps([{"event": "delivered", "sg_event_id": "x1", "aln_delivery": "1"}]).encode()
    private = _private_key(engine)
    old = str(int(time.time()) - 3600)
    # Correctly signed, but an hour old: a replay.
    r = httpx.post(url, content=raw, headers={
        "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(private, raw, old),
        "X-Twilio-Email-Event-Webhook-Timestamp": old})
    assert r.status_code == 403
    now = str(int(time.time()))
    r = httpx.post(url, content=raw, headers={
        "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(private, raw, now),
        "X-Twilio-Email-Event-Webhook-Timestamp": now})
    assert r.status_code == 204


def test_ack_link_get_shows_a_button_and_only_post_acknowledges(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, exercise=True)
    wait_until(lambda: email_requests(engine.sim), what="the email")
    email = email_requests(engine.sim)[0]
    link = next(iter(email["substitutions"].values()))
    assert link.startswith(f"{engine.url}/ack/")
    page = httpx.get(link)
    assert page.status_code == 200 and "<form method=\"post\"" in page.text
    assert "EXERCISE" in page.text
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"
    confirmed = httpx.post(link)
    assert confirmed.status_code == 200 and "Confirmed" in confirmed.text
    victor = engine.recipient(alert_id, "Victor Castillo")
    assert victor["state"] == "acknowledged" and victor["acknowledged_via"] == "link"


def test_forged_or_expired_ack_link_changes_nothing(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    rec_id = engine.recipient(alert_id, "Victor Castillo")["id"]
    from dispatcher.crypto import Vault

    forged = make_ack_token(Vault.from_secret(b"someone else"), rec_id, alert_id)
    for token in (forged, "garbage", forged[:-3] + "abc"):
        for method in (httpx.get, httpx.post):
            page = method(f"{engine.url}/ack/{token}")
            assert page.status_code == 400 and "not valid" in page.text
    real = make_ack_token(engine.rt.vault, rec_id, alert_id)
    with pytest.raises(BadToken, match="expired"):
        read_ack_token(engine.rt.vault, real, max_age_seconds=-1)
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"


ACK_WORDS = re.compile(r"\b(yes|y|yep|yeah|ok|okay|si|ack|confirm|confirmed|received|got|"
                       r"roger|da|oui|sim|ja|vale|claro|confirmo|recibido|enterado|acuerdo|"
                       r"safe|salvo|seguro|bien|done|listo|1|ок|получил|принято|"
                       r"подтверждаю|иә|ия|безопасности)\b|[是好收确安]")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(max_size=200), extra=st.dictionaries(
    st.text(min_size=1, max_size=10), st.text(max_size=30), max_size=4))
def test_signed_arbitrary_bodies_never_5xx_and_never_ack_without_an_ack_word(
        engine: Engine, body: str, extra: dict[str, str]) -> None:
    with engine.rt.db.session() as s:
        s.execute(update(Alert).values(state="cancelled"))
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, fan_out=False)
    params = {**{k: v for k, v in extra.items() if k not in ("From", "Body", "MessageSid")},
              "MessageSid": f"SM{next(_sid):032x}", "From": VICTOR, "Body": body}
    url = f"{engine.url}/webhooks/twilio/sms"
    r = httpx.post(url, data=params,
                   headers={"X-Twilio-Signature": twilio_sign(engine.sim.auth_token, url,
                                                              params)})
    assert r.status_code < 500
    acked = engine.recipient(alert_id, "Victor Castillo")["state"] == "acknowledged"
    if acked:
        assert parse_reply(body).kind in (ReplyKind.ACK, ReplyKind.SAFE, ReplyKind.HEADCOUNT)
        words = re.sub(r"[\W_]+", " ", fold(body))  # the parser ignores punctuation
        assert ACK_WORDS.search(words), body


def test_unknown_sender_never_acknowledges_anything(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    sms(engine, "+525599990002", f"YES {engine.code(alert_id)}")
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"
    with engine.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Response).where(
            Response.kind == "field_report")) == 1


def test_sendgrid_signed_bounce_marks_the_path_dead(engine: Engine) -> None:
    engine.sim.set_faults(callbacks=False)
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, channels=["email"])
    (d,) = deliveries(engine, alert_id)
    private = _private_key(engine)
    raw = json.dumps([{"event": "bounce", "sg_event_id": "b1", "aln_delivery": str(d.id),
                       "email": "victor.castillo@example.org", "type": "bounce",
                       "reason": "550 no such user"}]).encode()
    now = str(int(time.time()))
    r = httpx.post(f"{engine.url}/webhooks/sendgrid/events", content=raw, headers={
        "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(private, raw, now),
        "X-Twilio-Email-Event-Webhook-Timestamp": now})
    assert r.status_code == 204
    assert deliveries(engine, alert_id)[0].state == "bounced"
    with engine.rt.db.session() as s:
        email = s.scalars(select(Contact).where(Contact.channel == "email",
                                                Contact.masked.like("v***@%"))).one()
    assert email.dead_reason and "bounce" in email.dead_reason


def _private_key(engine: Engine):  # type: ignore[no-untyped-def]
    """Sign as the simulator does: swap in a key pair whose public half the app trusts."""
    from channels.webhooks import generate_sendgrid_keypair

    private, public = generate_sendgrid_keypair()
    engine.rt.settings.sendgrid_webhook_public_key = public
    return private
