"""WhatsApp through the real Twilio SDK: against an independent fake and the simulator."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from channels.base import ChannelKind, Message
from channels.errors import PermanentError
from channels.simulator.testing import run_simulator
from channels.twilio_whatsapp import TwilioWhatsApp
from tests.channels.fake_provider import Answer, fake_provider
from tests.channels.test_providers import Sleeps, config

HX = "HX" + "0123456789abcdef" * 2
OUTSIDE = {"code": 63016, "status": 400,
           "message": "Failed to send freeform message because you are outside the window"}


def wa(free_text: bool, template: str | None = HX, to: str = "+5215512345678") -> Message:
    return Message(channel=ChannelKind.WHATSAPP, to=to, body="ALERT: stay home. Reply 4821",
                   reference="9", free_text=free_text, template_sid=template,
                   template_variables={"1": "stay home", "2": "4821"})


async def send(cfg: Any, msg: Message, sleeps: Sleeps | None = None) -> Any:
    channel = TwilioWhatsApp(cfg, sleep=sleeps or Sleeps())
    try:
        return await channel.send(msg)
    finally:
        await channel.aclose()


def test_template_outside_the_session_has_whatsapp_addresses_and_content_fields() -> None:
    with fake_provider() as fake:
        asyncio.run(send(config(fake, twilio_whatsapp_from="+14155238886"), wa(False)))
    (req,) = fake.requests
    form = req["form"]
    assert form["To"] == "whatsapp:+5215512345678"
    assert form["From"] == "whatsapp:+14155238886"
    assert form["ContentSid"] == HX and "Body" not in form
    assert json.loads(form["ContentVariables"]) == {"1": "stay home", "2": "4821"}
    assert form["StatusCallback"] == "https://aln.example/webhooks/twilio/status?ref=9"


def test_free_text_inside_the_session_goes_as_body() -> None:
    with fake_provider() as fake:
        asyncio.run(send(config(fake, twilio_whatsapp_from="whatsapp:+14155238886"), wa(True)))
    (req,) = fake.requests
    assert req["form"]["Body"] == "ALERT: stay home. Reply 4821"
    assert "ContentSid" not in req["form"] and req["form"]["From"] == "whatsapp:+14155238886"


def test_63016_is_never_retried_as_is_and_falls_back_to_the_template() -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(400, OUTSIDE), fake.twilio_ok()]
        sleeps = Sleeps()
        receipt = asyncio.run(send(config(fake, twilio_whatsapp_from="+14155238886"),
                                   wa(True), sleeps))
    first, second = fake.requests
    assert "Body" in first["form"] and "ContentSid" not in first["form"]
    assert second["form"]["ContentSid"] == HX and "Body" not in second["form"]
    assert receipt.provider_id.startswith("SM") and sleeps.waits == []


def test_63016_without_a_template_is_permanent_for_the_message_not_the_path() -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(400, OUTSIDE)]
        with pytest.raises(PermanentError) as caught:
            asyncio.run(send(config(fake, twilio_whatsapp_from="+14155238886"),
                             wa(True, template=None)))
    assert len(fake.requests) == 1
    assert caught.value.code == "63016" and caught.value.recipient_specific is False


def test_simulator_refuses_free_text_outside_the_session_and_takes_the_template() -> None:
    with run_simulator() as sim:
        cfg = config(sim, twilio_account_sid=sim.account_sid, twilio_auth_token=sim.auth_token,
                     twilio_api_url=sim.twilio_api_url, twilio_whatsapp_from="+14155238886",
                     status_callback_url=None)
        receipt = asyncio.run(send(cfg, wa(True)))
        forms = [r["form"] for r in sim.requests()]
    assert receipt.segments == 1
    assert [("Body" in f, f.get("ContentSid")) for f in forms] == [(True, None), (False, HX)]


def test_simulator_takes_free_text_once_the_volunteer_wrote_on_whatsapp() -> None:
    with run_simulator() as sim:
        sim.inbound("whatsapp:+5215512345678", "hola")
        cfg = config(sim, twilio_account_sid=sim.account_sid, twilio_auth_token=sim.auth_token,
                     twilio_api_url=sim.twilio_api_url, twilio_whatsapp_from="+14155238886",
                     status_callback_url=None)
        asyncio.run(send(cfg, wa(True)))
        forms = [r["form"] for r in sim.requests()]
    assert len(forms) == 1 and forms[0]["Body"].startswith("ALERT")
