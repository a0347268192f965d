"""Twilio and SendGrid channels against an independent fake: exact request counts."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from channels.base import ChannelKind, Message
from channels.config import ChannelsConfig
from channels.errors import PermanentError, TransientError
from channels.sendgrid_email import SendGridEmail
from channels.twilio_sms import TwilioSMS, encode_form
from tests.channels.fake_provider import Answer, FakeProvider, fake_provider

SID, TOKEN = "AC" + "1" * 32, "secret-token"


class Sleeps:
    """Records the waits the retry policy asks for, without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def config(fake: FakeProvider, **kw: Any) -> ChannelsConfig:
    values: dict[str, Any] = dict(
        twilio_account_sid=SID, twilio_auth_token=TOKEN, twilio_from_number="+15005550006",
        twilio_api_url=fake.url, status_callback_url="https://aln.example/webhooks/twilio/status",
        sms_validity_seconds=600, sendgrid_api_key="SG.key", sendgrid_api_url=fake.url,
        email_from="aln@example.org", timeout_seconds=5, retry_max_attempts=5,
        retry_max_seconds=60, retry_min_wait=0.5, retry_max_wait=8, concurrency=10,
        sms_rate_per_second=0, email_rate_per_second=0)
    values.update(kw)
    return ChannelsConfig(**values)


def sms(to: str = "+529611230101", ref: str = "42") -> Message:
    return Message(channel=ChannelKind.SMS, to=to, body="EXERCISE: test", reference=ref,
                   validity_seconds=600)


async def send_sms(cfg: ChannelsConfig, msg: Message, sleeps: Sleeps) -> Any:
    channel = TwilioSMS(cfg, sleep=sleeps)
    try:
        return await channel.send(msg)
    finally:
        await channel.aclose()


def test_two_503s_then_success_is_three_requests_and_one_receipt() -> None:
    with fake_provider() as fake:
        err = {"code": 20500, "message": "busy", "status": 503}
        fake.answers = [Answer(503, err), Answer(503, err), fake.twilio_ok("SM" + "b" * 32)]
        sleeps = Sleeps()
        receipt = asyncio.run(send_sms(config(fake), sms(), sleeps))
    assert len(fake.requests) == 3 and receipt.provider_id == "SM" + "b" * 32
    assert len(sleeps.waits) == 2


def test_wire_format_auth_to_callback_validity() -> None:
    with fake_provider() as fake:
        asyncio.run(send_sms(config(fake), sms(ref="77"), Sleeps()))
    (req,) = fake.requests
    assert req["path"] == f"/2010-04-01/Accounts/{SID}/Messages.json"
    auth = base64.b64decode(req["headers"]["authorization"].split()[1]).decode()
    assert auth == f"{SID}:{TOKEN}"
    form = req["form"]
    assert form["To"] == "+529611230101" and form["From"] == "+15005550006"
    assert form["StatusCallback"] == "https://aln.example/webhooks/twilio/status?ref=77"
    assert form["ValidityPeriod"] == "600" and form["Body"] == "EXERCISE: test"


@pytest.mark.parametrize("form", [
    {"To": "+529611230101", "Body": "Sí: 50% & más = +1/2?", "ValidityPeriod": 600},
    {"MediaUrl": ["https://a.example/x y.png", "https://b.example/?a=1&b=2"], "Body": ""},
    {"Raw": b"a b", "Flag": True, "Empty": [], "Nothing": None, "Plus": "+", "Digits": "+١٢",
     "Callback": "https://aln.example/webhooks/twilio/status?ref=77", "Number": "007"},
])
def test_form_bytes_are_what_urlencode_makes(form: dict[str, Any]) -> None:
    # Twice: the second time from the cache of quoted texts.
    for _ in range(2):
        assert encode_form(form) == urlencode(list(form.items()), doseq=True).encode()


def test_messaging_service_sid_replaces_from() -> None:
    with fake_provider() as fake:
        asyncio.run(send_sms(config(fake, twilio_from_number=None,
                                    twilio_messaging_service_sid="MG" + "2" * 32),
                             sms(), Sleeps()))
    form = fake.requests[0]["form"]
    assert form["MessagingServiceSid"] == "MG" + "2" * 32 and "From" not in form


@pytest.mark.parametrize(("status", "code", "specific"), [
    (400, 21211, True), (400, 21610, True), (400, 21614, True), (400, 21617, True),
    (401, 20003, False),
])
def test_permanent_errors_are_one_request(status: int, code: int, specific: bool) -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(status, {"code": code, "message": "no", "status": status})]
        with pytest.raises(PermanentError) as info:
            asyncio.run(send_sms(config(fake), sms(), Sleeps()))
    assert len(fake.requests) == 1
    assert info.value.code == str(code) and info.value.recipient_specific is specific
    assert "+529611230101" not in str(info.value)  # masked


def test_problem_details_body_is_classified_too() -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(400, {"type": "https://www.twilio.com/docs/errors/21211",
                                     "title": "Invalid To", "status": 400, "code": 21211})]
        with pytest.raises(PermanentError):
            asyncio.run(send_sms(config(fake), sms(), Sleeps()))
    assert len(fake.requests) == 1


def test_429_is_retried_after_the_requested_wait() -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(429, {"code": 20429, "message": "slow down", "status": 429},
                               {"Retry-After": "7"}), fake.twilio_ok()]
        sleeps = Sleeps()
        asyncio.run(send_sms(config(fake), sms(), sleeps))
    assert len(fake.requests) == 2 and sleeps.waits == [7.0]


def test_transient_errors_stop_after_the_attempt_budget() -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(500, {"code": 20500, "message": "x", "status": 500})] * 10
        with pytest.raises(TransientError):
            asyncio.run(send_sms(config(fake, retry_max_attempts=4), sms(), Sleeps()))
    assert len(fake.requests) == 4


def test_refused_connection_is_transient() -> None:
    from channels.simulator.serving import free_port

    cfg = ChannelsConfig(twilio_account_sid=SID, twilio_auth_token=TOKEN,
                         twilio_from_number="+15005550006",
                         twilio_api_url=f"http://127.0.0.1:{free_port()}",
                         retry_max_attempts=3, timeout_seconds=2)
    sleeps = Sleeps()
    with pytest.raises(TransientError):
        asyncio.run(send_sms(cfg, sms(), sleeps))
    assert len(sleeps.waits) == 2


def test_concurrency_cap_is_never_exceeded() -> None:
    with fake_provider() as fake:
        fake.latency = 0.05

        async def run() -> None:
            channel = TwilioSMS(config(fake, concurrency=5), sleep=Sleeps())
            try:
                await channel.send_many([sms(ref=str(i)) for i in range(40)])
            finally:
                await channel.aclose()

        asyncio.run(run())
    assert len(fake.requests) == 40 and fake.peak <= 5 and fake.peak >= 4


def test_sms_rate_limit_spaces_requests() -> None:
    with fake_provider() as fake:
        async def run() -> None:
            channel = TwilioSMS(config(fake, sms_rate_per_second=20), sleep=Sleeps())
            try:
                await channel.send_many([sms(ref=str(i)) for i in range(10)])
            finally:
                await channel.aclose()

        start = time.monotonic()
        asyncio.run(run())
        elapsed = time.monotonic() - start
    stamps = sorted(r["at"] for r in fake.requests)
    assert elapsed >= 0.4  # 10 messages at 20/s: 9 intervals of 50 ms
    assert stamps[-1] - stamps[0] >= 0.4


# --- SendGrid -------------------------------------------------------------------------------


def email(i: int, body: str = "Alert body") -> Message:
    return Message(channel=ChannelKind.EMAIL, to=f"v{i}@example.org", body=body,
                   subject="EXERCISE: alert", html=f"<p>{body} -ack_url-</p>",
                   reference=str(i), custom={"aln_alert": "9"},
                   substitutions={"-ack_url-": f"https://aln.example/ack/{i}"})


async def send_emails(cfg: ChannelsConfig, msgs: list[Message], sleeps: Sleeps) -> Any:
    return await SendGridEmail(cfg, sleep=sleeps).send_many(msgs)


def test_2500_emails_are_three_requests_with_per_recipient_args() -> None:
    with fake_provider() as fake:
        results = asyncio.run(send_emails(config(fake), [email(i) for i in range(2500)],
                                          Sleeps()))
    assert len(fake.requests) == 3
    sizes = sorted(len(r["json"]["personalizations"]) for r in fake.requests)
    assert sizes == [500, 1000, 1000]
    assert all(r["headers"]["authorization"] == "Bearer SG.key" for r in fake.requests)
    people = [p for r in fake.requests for p in r["json"]["personalizations"]]
    p7 = next(p for p in people if p["to"][0]["email"] == "v7@example.org")
    assert p7["custom_args"] == {"aln_alert": "9", "aln_ref": "7"}
    assert p7["substitutions"] == {"-ack_url-": "https://aln.example/ack/7"}
    assert len(results) == 2500 and len({r.provider_id for r in results}) == 2500


def test_different_contents_are_separate_requests() -> None:
    with fake_provider() as fake:
        asyncio.run(send_emails(config(fake), [email(1, "a"), email(2, "b"), email(3, "a")],
                                Sleeps()))
    assert sorted(len(r["json"]["personalizations"]) for r in fake.requests) == [1, 2]


def test_sendgrid_429_honours_ratelimit_reset_and_400_is_final() -> None:
    with fake_provider() as fake:
        reset = str(int(time.time()) + 30)
        fake.answers = [Answer(429, {"errors": []}, {"X-RateLimit-Reset": reset}), Answer(202)]
        sleeps = Sleeps()
        asyncio.run(send_emails(config(fake), [email(1)], sleeps))
        assert len(fake.requests) == 2 and 25 <= sleeps.waits[0] <= 31
        fake.requests.clear()
        fake.answers = [Answer(400, {"errors": [{"message": "bad"}]})]
        (result,) = asyncio.run(send_emails(config(fake), [email(2)], Sleeps()))
    assert isinstance(result, PermanentError) and len(fake.requests) == 1


def test_sendgrid_5xx_is_retried() -> None:
    with fake_provider() as fake:
        fake.answers = [Answer(502, {"errors": []}), Answer(202)]
        (result,) = asyncio.run(send_emails(config(fake), [email(1)], Sleeps()))
    assert not isinstance(result, Exception) and len(fake.requests) == 2
