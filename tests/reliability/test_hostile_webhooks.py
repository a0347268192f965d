"""1,000+ forged, replayed and malformed webhook requests: none accepted, never a 5xx."""

from __future__ import annotations

import json
import random
import string
import time
from collections import Counter

import httpx
from sqlalchemy import func, select

from channels.webhooks import generate_sendgrid_keypair, sendgrid_sign, twilio_sign
from dispatcher.models import Delivery, InboundMessage, Response
from tests.engine import Engine

VICTOR = "+529515101001"


def _params(i: int, body: str = "YES") -> dict[str, str]:
    return {"MessageSid": f"SM{i:032x}", "AccountSid": "AC" + "5" * 32, "From": VICTOR,
            "To": "+15005550006", "Body": body, "NumMedia": "0"}


def test_forged_replayed_and_malformed_requests_are_all_refused(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600, channels=["sms"])
    rng = random.Random(4821)
    sms_url = f"{engine.url}/webhooks/twilio/sms"
    status_url = f"{engine.url}/webhooks/twilio/status"
    events_url = f"{engine.url}/webhooks/sendgrid/events"
    token = engine.sim.auth_token
    statuses: Counter[int] = Counter()
    wrong_key, _ = generate_sendgrid_keypair()
    with httpx.Client(timeout=30) as client:
        def post(url: str, expect: set[int], **kwargs: object) -> None:
            r = client.post(url, **kwargs)  # type: ignore[arg-type]
            statuses[r.status_code] += 1
            assert r.status_code in expect, (url, r.status_code, r.text[:200])

        for i in range(300):  # random signatures
            sig = "".join(rng.choices(string.ascii_letters + string.digits + "+/=", k=28))
            post(sms_url, {403}, data=_params(i), headers={"X-Twilio-Signature": sig})
        for i in range(150):  # no signature at all
            post(sms_url, {403}, data=_params(1000 + i))
        for i in range(150):  # signed by someone else, or for another URL
            params = _params(2000 + i)
            key, url = ("not-our-token", sms_url) if i % 2 else (token, status_url)
            post(sms_url, {403}, data=params,
                 headers={"X-Twilio-Signature": twilio_sign(key, url, params)})
        for i in range(150):  # a valid signature replayed with a tampered body
            params = _params(3000 + i)
            sig = twilio_sign(token, sms_url, params)
            post(sms_url, {403}, data={**params, "Body": "YES 0000"},
                 headers={"X-Twilio-Signature": sig})
        for i in range(100):  # signed but malformed: missing fields, garbage, not a form
            params = {"Body": "YES"} if i % 3 == 0 else {"x" * (i + 1): "\x00\xff" * i}
            sig = twilio_sign(token, sms_url, params)
            post(sms_url, {400, 403}, data=params, headers={"X-Twilio-Signature": sig})
        for _ in range(50):
            post(sms_url, {400, 403}, content=bytes(rng.getrandbits(8) for _ in range(64)),
                 headers={"Content-Type": "application/json", "X-Twilio-Signature": "x"})
        for i in range(100):  # status callbacks forged
            params = {"MessageSid": f"SM{i:032x}", "MessageStatus": "delivered"}
            post(status_url, {403}, data=params, headers={"X-Twilio-Signature": "bogus"})
        now = str(int(time.time()))
        for i in range(100):  # SendGrid: wrong key, stale timestamp, no signature, garbage
            raw = json.dumps([{"event": "bounce", "sg_event_id": f"e{i}", "aln_delivery": "1",
                               "email": "x@example.org"}]).encode()
            kind = i % 4
            if kind == 0:
                headers = {"X-Twilio-Email-Event-Webhook-Signature":
                           sendgrid_sign(wrong_key, raw, now),
                           "X-Twilio-Email-Event-Webhook-Timestamp": now}
            elif kind == 1:
                old = str(int(time.time()) - 86_400)
                headers = {"X-Twilio-Email-Event-Webhook-Signature": "MEUCIQ" + "A" * 60,
                           "X-Twilio-Email-Event-Webhook-Timestamp": old}
            elif kind == 2:
                headers = {}
            else:
                headers = {"X-Twilio-Email-Event-Webhook-Signature": "%%%",
                           "X-Twilio-Email-Event-Webhook-Timestamp": "yesterday"}
            post(events_url, {403}, content=raw, headers=headers)
        # A genuine request sent three times is accepted once.
        genuine = _params(9999, "YES")
        sig = twilio_sign(token, sms_url, genuine)
        for _ in range(3):
            post(sms_url, {200}, data=genuine, headers={"X-Twilio-Signature": sig})
    assert sum(statuses.values()) >= 1000
    assert not any(code >= 500 for code in statuses)
    with engine.rt.db.session() as s:
        sms_rows = s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.source == "twilio_sms"))
        responses = s.scalar(select(func.count()).select_from(Response))
        bounced = s.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.state == "bounced"))
    assert sms_rows == 1 and responses == 1 and bounced == 0
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "acknowledged"
