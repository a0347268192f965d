"""The voice channel through the real Twilio SDK, against an independent fake provider:
the Calls request's fields and the TwiML it carries."""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from xml.etree import ElementTree

import pytest

from channels.base import ChannelKind, Message, Receipt
from channels.config import ChannelsConfig
from channels.errors import PermanentError
from channels.twilio_voice import TwilioVoice, estimated_minutes, say_language, spoken_language
from tests.channels.fake_provider import Answer, FakeProvider, fake_provider

SID, TOKEN = "AC" + "1" * 32, "secret-token"
PUBLIC = "https://aln.example"


def config(fake: FakeProvider, **kw: Any) -> ChannelsConfig:
    values: dict[str, Any] = dict(
        twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_from_number="+15005550006",
        twilio_api_url=fake.url,
        voice_gather_url=f"{PUBLIC}/webhooks/twilio/voice/gather",
        voice_status_callback_url=f"{PUBLIC}/webhooks/twilio/voice/status",
        call_timeout_seconds=25, timeout_seconds=5, retry_max_attempts=2, retry_min_wait=0.01,
        retry_max_wait=0.02, concurrency=5, call_rate_per_second=0)
    values.update(kw)
    return ChannelsConfig(**values)


def call(body: str = "EXERCISE: Security alert: Oaxaca. Stay home.", language: str = "es",
         prompt: str | None = "Oprima 1 para confirmar. Oprima 9 si necesita ayuda.",
         voicemail: str | None = "Responda SI 4821.") -> Message:
    return Message(channel=ChannelKind.VOICE, to="+529515101001", body=body, reference="7",
                   language=language, prompt=prompt, voicemail=voicemail)


async def place(cfg: ChannelsConfig, msg: Message) -> Receipt:
    channel = TwilioVoice(cfg)
    try:
        return await channel.send(msg)
    finally:
        await channel.aclose()


def twiml_of(fake: FakeProvider) -> ElementTree.Element:
    return ElementTree.fromstring(fake.requests[-1]["form"]["Twiml"])


def test_calls_request_carries_every_field_twilio_needs() -> None:
    with fake_provider() as fake:
        receipt = asyncio.run(place(config(fake), call()))
    assert receipt.provider_id == "CA" + "c" * 32
    [req] = fake.requests
    assert req["path"] == f"/2010-04-01/Accounts/{SID}/Calls.json"
    auth = base64.b64decode(req["headers"]["authorization"].split()[1]).decode()
    assert auth == f"{SID}:{TOKEN}"
    form, every = req["form"], req["form_all"]
    assert form["To"] == "+529515101001" and form["From"] == "+15005550006"
    assert form["Timeout"] == "25"
    assert form["StatusCallback"] == f"{PUBLIC}/webhooks/twilio/voice/status?ref=7"
    assert form["StatusCallbackMethod"] == "POST"
    assert every["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert form["MachineDetection"] == "DetectMessageEnd"
    assert "Twiml" in form and "Url" not in form


def test_twiml_reads_twice_in_the_language_then_asks_inside_a_signed_gather() -> None:
    with fake_provider() as fake:
        asyncio.run(place(config(fake), call()))
        root = twiml_of(fake)
    assert root.tag == "Response"
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("numDigits") == "1" and gather.get("method") == "POST"
    assert gather.get("action") == f"{PUBLIC}/webhooks/twilio/voice/gather?ref=7"
    said = [(s.text, s.get("language")) for s in gather.findall("Say")]
    alert = "EXERCISE: Security alert: Oaxaca. Stay home."
    assert said == [(alert, "es-MX"), (alert, "es-MX"),
                    ("Oprima 1 para confirmar. Oprima 9 si necesita ayuda.", "es-MX")]
    # No key pressed (a person hanging up, a voicemail): the reply code is left.
    after = [child.tag for child in root]
    assert after == ["Gather", "Say", "Hangup"]
    assert root.findall("Say")[0].text == "Responda SI 4821."


def test_untrusted_text_stays_text_in_the_twiml() -> None:
    hostile = 'Alert</Say><Play>http://evil.example/x.mp3</Play><Say>"&'
    with fake_provider() as fake:
        asyncio.run(place(config(fake), call(body=hostile)))
        root = twiml_of(fake)
    assert root.find(".//Play") is None
    gather = root.find("Gather")
    assert gather is not None
    assert gather.findall("Say")[0].text == hostile


def test_a_language_twilio_cannot_speak_is_read_in_english() -> None:
    with fake_provider() as fake:
        asyncio.run(place(config(fake), call(language="kk")))
        root = twiml_of(fake)
    assert {s.get("language") for s in root.iter("Say")} == {"en-US"}
    assert say_language("kk") is None and spoken_language("kk") == "en"
    assert say_language("es-MX") == "es-MX" and spoken_language("ru") == "ru"


def test_a_call_without_a_question_has_no_gather() -> None:
    with fake_provider() as fake:
        asyncio.run(place(config(fake), call(body="CANCELLED: alert 4821", prompt=None,
                                             voicemail=None)))
        root = twiml_of(fake)
    assert root.find("Gather") is None
    assert [s.text for s in root.findall("Say")] == ["CANCELLED: alert 4821"] * 2


def test_invalid_number_is_a_permanent_error_for_that_recipient() -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(400, {"code": 21211, "message": "invalid To", "status": 400})]
        with pytest.raises(PermanentError) as err:
            asyncio.run(place(config(fake), call()))
        assert len(fake.requests) == 1
    assert err.value.recipient_specific and err.value.code == "21211"


def test_estimated_minutes_round_up_each_call() -> None:
    assert estimated_minutes("word " * 10) == 1
    assert estimated_minutes("word " * 100) == 2  # read twice: 200 words


def test_a_long_alert_is_read_once_rather_than_cut() -> None:
    long_body = "Stay indoors near the main square. " * 55  # about 1,900 characters
    cfg = ChannelsConfig(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                         twilio_from_number="+15005550006",
                         voice_gather_url=f"{PUBLIC}/webhooks/twilio/voice/gather")
    twiml = TwilioVoice(cfg).request(call(body=long_body))["twiml"]
    assert len(twiml) <= TwilioVoice.twiml_maxlen
    said = [s.text for s in ElementTree.fromstring(twiml).iter("Say")]
    assert said.count(long_body) == 1
    short = TwilioVoice(cfg).request(call())["twiml"]
    assert [s.text for s in ElementTree.fromstring(short).iter("Say")].count(
        "EXERCISE: Security alert: Oaxaca. Stay home.") == 2
