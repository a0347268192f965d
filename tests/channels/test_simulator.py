"""The provider simulator: real SDKs talk to it; its callbacks and replies are signed."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.base import ChannelKind, Message
from channels.config import ChannelsConfig
from channels.errors import PermanentError
from channels.factory import build_channels
from channels.simulator.serving import ServerThread
from channels.simulator.testing import run_simulator
from channels.webhooks import sendgrid_signature_valid, twilio_signature_valid
from tests.helpers import wait_until


class Receiver:
    """A stand-in for `aln serve` that records what the simulator posts to it."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.lock = threading.Lock()

        async def record(request: Request) -> Response:
            raw = await request.body()
            form = {k: v for k, v in (await request.form()).items()} \
                if "form" in request.headers.get("content-type", "") else None
            with self.lock:
                self.got.append({"path": request.url.path, "url": str(request.url),
                                 "headers": dict(request.headers), "raw": raw, "form": form})
            return Response("<Response/>", media_type="application/xml")

        self.app = Starlette(routes=[Route("/{p:path}", record, methods=["POST"])])


@pytest.fixture
def receiver() -> Any:
    r = Receiver()
    with ServerThread(r.app) as server:  # type: ignore[arg-type]
        yield r, server.url


def channels_for(sim: Any, public: str) -> Any:
    cfg = ChannelsConfig(twilio_account_sid=sim.account_sid, twilio_auth_token=sim.auth_token,
                         twilio_from_number="+15005550006", twilio_api_url=sim.twilio_api_url,
                         status_callback_url=public + "/webhooks/twilio/status",
                         sendgrid_api_key="SG.x", sendgrid_api_url=sim.sendgrid_api_url,
                         email_from="aln@example.org", sms_rate_per_second=0,
                         retry_max_attempts=1)
    return build_channels(cfg)


def test_status_callbacks_and_scripted_reply_arrive_signed(receiver: Any) -> None:
    rec, public = receiver
    with run_simulator(public_url=public) as sim:
        sim.script("+529611230101", reply="Sí {code}", delay=0.1)

        async def go() -> None:
            chans = channels_for(sim, public)
            await chans[ChannelKind.SMS].send(Message(
                channel=ChannelKind.SMS, to="+529611230101", reference="5",
                body="EXERCISE Alert. Reply YES 4821 to confirm."))
            await chans[ChannelKind.EMAIL].send(Message(
                channel=ChannelKind.EMAIL, to="ana@example.org", body="b", subject="s",
                reference="6", custom={"aln_delivery": "6"}))
            for ch in chans.values():
                await ch.aclose()

        asyncio.run(go())
        wait_until(lambda: len(rec.got) >= 4, what="2 callbacks, 1 reply, 1 event batch")
        token, key = sim.auth_token, sim.sendgrid_public_key
    statuses = [g for g in rec.got if g["path"] == "/webhooks/twilio/status"]
    assert [g["form"]["MessageStatus"] for g in statuses] == ["sent", "delivered"]
    for g in statuses:
        assert g["url"].endswith("?ref=5")
        assert twilio_signature_valid(token, g["url"], g["form"],
                                      g["headers"]["x-twilio-signature"])
    (reply,) = [g for g in rec.got if g["path"] == "/webhooks/twilio/sms"]
    assert reply["form"]["Body"] == "Sí 4821" and reply["form"]["From"] == "+529611230101"
    assert twilio_signature_valid(token, reply["url"], reply["form"],
                                  reply["headers"]["x-twilio-signature"])
    (events,) = [g for g in rec.got if g["path"] == "/webhooks/sendgrid/events"]
    h = events["headers"]
    assert sendgrid_signature_valid(key, events["raw"],
                                    h["x-twilio-email-event-webhook-signature"],
                                    h["x-twilio-email-event-webhook-timestamp"])
    assert [e["event"] for e in json.loads(events["raw"])] == ["processed", "delivered"]
    assert json.loads(events["raw"])[0]["aln_delivery"] == "6"


def test_faults_invalid_number_outage_and_recovery() -> None:
    with run_simulator() as sim:
        sim.set_faults(invalid_numbers=["+529611230101"])

        async def send(to: str) -> Any:
            chans = channels_for(sim, "http://127.0.0.1:9")
            try:
                return await chans[ChannelKind.SMS].send(Message(
                    channel=ChannelKind.SMS, to=to, body="x"))
            finally:
                for ch in chans.values():
                    await ch.aclose()

        with pytest.raises(PermanentError) as info:
            asyncio.run(send("+529611230101"))
        assert info.value.code == "21211"
        sim.set_faults(outage_seconds=0.5)
        r = httpx.post(f"{sim.url}/2010-04-01/Accounts/{sim.account_sid}/Messages.json",
                       data={"To": "+1", "Body": "x"}, auth=(sim.account_sid, sim.auth_token))
        assert r.status_code == 503
        wait_until(lambda: httpx.post(
            f"{sim.url}/2010-04-01/Accounts/{sim.account_sid}/Messages.json",
            data={"To": "+15550001", "Body": "x"},
            auth=(sim.account_sid, sim.auth_token)).status_code == 201, timeout=5,
            what="the outage to end")
        bad_auth = httpx.post(f"{sim.url}/2010-04-01/Accounts/{sim.account_sid}/Messages.json",
                              data={"To": "+1", "Body": "x"}, auth=(sim.account_sid, "wrong"))
        assert bad_auth.status_code == 401 and bad_auth.json()["code"] == 20003


def voice_channel(sim: Any, public: str) -> Any:
    cfg = ChannelsConfig(twilio_account_sid=sim.account_sid, twilio_auth_token=sim.auth_token,
                         twilio_from_number="+15005550006", twilio_api_url=sim.twilio_api_url,
                         voice_gather_url=public + "/webhooks/twilio/voice/gather",
                         voice_status_callback_url=public + "/webhooks/twilio/voice/status",
                         call_rate_per_second=0, retry_max_attempts=1)
    return build_channels(cfg)[ChannelKind.VOICE]


@pytest.mark.parametrize(("behaviour", "statuses", "answered_by", "digit"), [
    ("press1", ["initiated", "ringing", "in-progress", "completed"], "human", "1"),
    ("press9", ["initiated", "ringing", "in-progress", "completed"], "human", "9"),
    ("voicemail", ["initiated", "ringing", "in-progress", "completed"], "machine_end_beep",
     None),
    ("no-answer", ["initiated", "ringing", "no-answer"], None, None),
    ("busy", ["initiated", "ringing", "busy"], None, None),
])
def test_calls_report_signed_progress_and_post_the_key_signed(
        receiver: Any, behaviour: str, statuses: list[str], answered_by: str | None,
        digit: str | None) -> None:
    rec, public = receiver
    number = "+529515101001"
    with run_simulator(public_url=public) as sim:
        sim.call_behaviour(number, behaviour)

        async def go() -> Any:
            channel = voice_channel(sim, public)
            try:
                return await channel.send(Message(
                    channel=ChannelKind.VOICE, to=number, body="Alert", reference="8",
                    language="es", prompt="Oprima 1", voicemail="Responda SI 4821"))
            finally:
                await channel.aclose()

        receipt = asyncio.run(go())
        expected = len(statuses) + (digit is not None)
        wait_until(lambda: len(rec.got) >= expected, what=f"{expected} posts")
        token = sim.auth_token
        [call] = sim.calls()
    assert receipt.provider_id.startswith("CA") and receipt.status == "queued"
    progress = [g for g in rec.got if g["path"] == "/webhooks/twilio/voice/status"]
    assert [g["form"]["CallStatus"] for g in progress] == statuses
    for g in rec.got:
        assert g["url"].endswith("?ref=8") and g["form"]["CallSid"] == receipt.provider_id
        assert twilio_signature_valid(token, g["url"], g["form"],
                                      g["headers"]["x-twilio-signature"])
    assert progress[-1]["form"].get("AnsweredBy") == answered_by
    keys = [g["form"]["Digits"] for g in rec.got if g["path"] == "/webhooks/twilio/voice/gather"]
    assert keys == ([digit] if digit else [])
    assert call["twiml"].count("<Say") == 4  # alert twice, the question, the voicemail
