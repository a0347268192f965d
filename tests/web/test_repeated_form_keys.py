"""A Twilio webhook whose form repeats a key is accepted when signed as Twilio signs it."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
from twilio.request_validator import RequestValidator

from tests.engine import Engine

VICTOR = "+529515101001"  # Oaxaca primary


class _Form(dict[str, list[str]]):
    def getall(self, key: str) -> list[str]:
        return self[key]


def test_an_inbound_sms_with_a_repeated_form_key_is_accepted(engine: Engine) -> None:
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    url = f"{engine.url}/webhooks/twilio/sms"
    pairs = [("MessageSid", "SM" + "7" * 32), ("AccountSid", engine.sim.account_sid),
             ("From", VICTOR), ("To", "+15005550006"), ("Body", f"SI {engine.code(alert_id)}"),
             ("NumMedia", "2"), ("MediaUrl", "https://media.example/b"),
             ("MediaUrl", "https://media.example/a")]
    form = _Form()
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    # The official SDK's validator, given every value, stands for Twilio's signer.
    signature = RequestValidator(engine.sim.auth_token).compute_signature(url, form)
    answer = httpx.post(url, content=urlencode(pairs),
                        headers={"X-Twilio-Signature": signature,
                                 "Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    engine.wait_zone(alert_id, "Oaxaca", "acknowledged")
