"""Alert calls end to end: the real Twilio SDK against the simulator's Calls API, its
signed status callbacks and key presses, over real HTTP to `aln serve`'s webhooks."""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from channels.webhooks import twilio_sign
from dispatcher.audit import AuditEvent
from dispatcher.cli.main import app
from dispatcher.models import Delivery, InboundMessage, Response, Volunteer
from dispatcher.reports.figures import build_report
from dispatcher.reports.html import render_report_html
from dispatcher.roster.contacts import normalise_sms_phone, normalise_voice_phone, set_contact
from tests.dispatch.test_cli_alert import env_for
from tests.engine import Engine, sms_requests
from tests.helpers import wait_until

VICTOR = "+529515101001"  # Oaxaca primary, Spanish
ANA = "+529611230101"  # Chiapas primary
DANIEL = "+525551000201"  # Mexico City primary
EMILY = "+525551000202"  # Mexico City primary, English
LANDLINE = "+77172571234"  # a fixed line (Astana): no SMS, but it takes a call


@pytest.fixture
def engine(engine_factory: Any) -> Engine:
    return engine_factory(call_rate_per_second=0)  # type: ignore[no-any-return]


@pytest.fixture
def db_engine(database_url: str, engine_factory: Any) -> Engine:
    """On SQLite, and again on PostgreSQL."""
    return engine_factory(database_url, call_rate_per_second=0)  # type: ignore[no-any-return]


def give_voice(engine: Engine, name: str, number: str) -> None:
    """The volunteer's voice path (the roster's `channels` column makes these)."""
    with engine.rt.db.session() as s:
        vol = s.scalars(select(Volunteer).where(Volunteer.name == name)).one()
        set_contact(s, engine.rt.vault, vol, "voice", number)


def call_to(engine: Engine, number: str) -> dict[str, Any]:
    calls = [c for c in engine.sim.calls() if c["to"] == number]
    assert len(calls) == 1, calls
    return calls[0]


def finished(engine: Engine, number: str) -> bool:
    calls = [c for c in engine.sim.calls() if c["to"] == number]
    return bool(calls) and calls[0]["statuses"][-1:] in (["completed"], ["busy"],
                                                          ["no-answer"], ["failed"])


def voice_states(engine: Engine, alert_id: int) -> dict[str, int]:
    return dict(engine.status(alert_id)["outcomes"].get("voice", {}))


def gather(engine: Engine, call: dict[str, Any], digit: str, ref: str,
           token: str | None = None) -> httpx.Response:
    url = f"{engine.url}/webhooks/twilio/voice/gather?ref={ref}"
    params = {"CallSid": call["sid"], "AccountSid": engine.sim.account_sid,
              "From": call["from"], "To": call["to"], "Digits": digit,
              "CallStatus": "in-progress", "Direction": "outbound-api"}
    signature = twilio_sign(token or engine.sim.auth_token, url, params)
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": signature})


def delivery_id(engine: Engine, alert_id: int) -> str:
    with engine.rt.db.session() as s:
        return str(s.scalars(select(Delivery.id).where(Delivery.alert_id == alert_id,
                                                       Delivery.channel == "voice")).one())


def test_pressing_1_acknowledges_once_over_replays(db_engine: Engine) -> None:
    engine = db_engine
    give_voice(engine, "Victor Castillo", VICTOR)
    engine.sim.call_behaviour(VICTOR, "press1")
    alert_id = engine.send(["Oaxaca"], channels=["voice"], ack_window_seconds=600)
    engine.wait_zone(alert_id, "Oaxaca", "acknowledged")
    wait_until(lambda: finished(engine, VICTOR), what="the call to end")
    call = call_to(engine, VICTOR)
    assert call["gather"]["status"] == 200
    answer = ElementTree.fromstring(call["gather"]["twiml"])
    assert [s.text for s in answer.iter("Say")] == ["Gracias, confirmado. Hasta luego."]
    # Twilio repeating the same key press changes nothing more.
    for _ in range(3):
        again = gather(engine, call, "1", delivery_id(engine, alert_id))
        assert again.status_code == 200 and "Gracias" in again.text
    victor = engine.recipient(alert_id, "Victor Castillo")
    assert victor["state"] == "acknowledged"
    with engine.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.source == "twilio_gather")) == 1
        [resp] = s.scalars(select(Response)).all()
        assert (resp.kind, resp.channel, resp.alert_id) == ("ack", "voice", alert_id)
        acks = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "recipient.acknowledged")).all()
        assert [a.details["via"] for a in acks] == ["voice"]
    assert sms_requests(engine.sim) == []  # only the call was asked for
    wait_until(lambda: voice_states(engine, alert_id) == {"delivered": 1},
               what="the call's completion")


def test_pressing_9_is_a_help_request_for_the_officers(engine: Engine) -> None:
    give_voice(engine, "Victor Castillo", VICTOR)
    engine.sim.call_behaviour(VICTOR, "press9")
    alert_id = engine.send(["Oaxaca"], channels=["voice"], ack_window_seconds=600)
    wait_until(lambda: finished(engine, VICTOR), what="the call to end")
    assert "urgente" in call_to(engine, VICTOR)["gather"]["twiml"]
    with engine.rt.db.session() as s:
        [resp] = s.scalars(select(Response)).all()
    assert (resp.kind, resp.urgent, resp.channel) == ("help", True, "voice")
    status = engine.status(alert_id)
    assert status["summary"]["help"] == 1
    assert engine.zone(alert_id, "Oaxaca")["state"] == "waiting"
    assert engine.recipient(alert_id, "Victor Castillo")["state"] != "acknowledged"


def test_call_outcomes_are_counted_and_never_acknowledge(db_engine: Engine) -> None:
    engine = db_engine
    give_voice(engine, "Victor Castillo", VICTOR)
    give_voice(engine, "Ana Morales", ANA)
    give_voice(engine, "Daniel Ortega", DANIEL)
    give_voice(engine, "Emily Carter", EMILY)
    engine.sim.call_behaviour(VICTOR, "voicemail")
    engine.sim.call_behaviour(ANA, "no-answer")
    engine.sim.call_behaviour(DANIEL, "busy")
    engine.sim.call_behaviour(EMILY, "silent")
    alert_id = engine.send(["Oaxaca", "Chiapas", "Mexico City"], channels=["voice"],
                           ack_window_seconds=600)
    expected = {"machine": 1, "no_answer": 1, "busy": 1, "delivered": 1}
    wait_until(lambda: voice_states(engine, alert_id) == expected, timeout=15,
               what="every call's outcome")
    status = engine.status(alert_id)
    assert all(z["state"] == "waiting" for z in status["zones"])
    assert not any(r["state"] == "acknowledged" for r in status["recipients"])
    # The voicemail got the reply code after the unanswered question.
    twiml = ElementTree.fromstring(call_to(engine, VICTOR)["twiml"])
    assert status["reply_code"] in (twiml.findall("Say")[-1].text or "")
    # An unanswered call is no dead path: no failover, the number is not marked dead.
    with engine.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.purpose == "failover")) == 0
    cli = CliRunner().invoke(app, ["alert", "status", str(alert_id), "--json"],
                             env=env_for(engine))
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.stdout)["outcomes"]["voice"] == expected
    with engine.rt.db.session() as s:
        report = build_report(s, alert_id)
    assert report["summary"]["outcomes_by_channel"]["voice"] == expected
    assert report["summary"]["handed_off"] == 4 and report["summary"]["acknowledged"] == 0
    html = render_report_html(report)
    assert "1 no answer" in html and "1 voicemail" in html and "1 busy" in html


def test_forged_key_press_gets_403_and_changes_nothing(engine: Engine) -> None:
    give_voice(engine, "Victor Castillo", VICTOR)
    engine.sim.call_behaviour(VICTOR, "silent")
    alert_id = engine.send(["Oaxaca"], channels=["voice"], ack_window_seconds=600)
    wait_until(lambda: finished(engine, VICTOR), what="the call to end")
    call = call_to(engine, VICTOR)
    ref = delivery_id(engine, alert_id)
    assert gather(engine, call, "1", ref, token="not-the-token").status_code == 403
    url = f"{engine.url}/webhooks/twilio/voice/gather?ref={ref}"
    assert httpx.post(url, data={"CallSid": call["sid"], "Digits": "1"}).status_code == 403
    # A signature for another delivery does not carry over to this one.
    other = f"{engine.url}/webhooks/twilio/voice/gather?ref=999"
    params = {"CallSid": call["sid"], "Digits": "1"}
    moved = httpx.post(url, data=params, headers={
        "X-Twilio-Signature": twilio_sign(engine.sim.auth_token, other, params)})
    assert moved.status_code == 403
    assert engine.recipient(alert_id, "Victor Castillo")["state"] == "notified"
    with engine.rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(InboundMessage).where(
            InboundMessage.source == "twilio_gather")) == 0
        assert s.scalar(select(func.count()).select_from(Response)) == 0


def test_a_landline_is_a_voice_path(engine: Engine) -> None:
    with pytest.raises(ValueError, match="landline"):
        normalise_sms_phone(LANDLINE, "KZ")
    number = normalise_voice_phone("8 7172 57 12 34", "KZ")
    assert number == LANDLINE
    give_voice(engine, "Victor Castillo", number)
    engine.sim.call_behaviour(number, "press1")
    alert_id = engine.send(["Oaxaca"], channels=["voice"], ack_window_seconds=600)
    engine.wait_zone(alert_id, "Oaxaca", "acknowledged")
    assert call_to(engine, LANDLINE)["from"] == "+15005550006"
    with pytest.raises(ValueError, match="toll-free"):
        normalise_voice_phone("+18005550100", "US")


def test_dry_run_shows_calls_with_language_and_minutes(engine: Engine) -> None:
    give_voice(engine, "Victor Castillo", VICTOR)
    result = CliRunner().invoke(app, ["alert", "send", "--zone", "Oaxaca", "--body", "Test",
                                      "--channel", "voice", "--channel", "sms", "--dry-run",
                                      "--json"], env=env_for(engine))
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    [victor] = preview["zones"][0]["recipients"]
    assert victor["channels"] == ["sms", "voice"]
    assert victor["call"] == {"language": "es", "say_language": "es-MX", "fallback": None,
                              "estimated_minutes": 1}
    assert preview["calls"] == 1 and preview["call_minutes"] == 1
    assert engine.sim.calls() == []
    # Without --channel voice the default policy calls only after 5 minutes of silence.
    plain = CliRunner().invoke(app, ["alert", "send", "--zone", "Oaxaca", "--body", "Test",
                                     "--dry-run", "--json"], env=env_for(engine))
    [victor] = json.loads(plain.stdout)["zones"][0]["recipients"]
    assert "voice" not in victor["channels"]
    assert victor["steps"][1]["after_seconds"] == 300
    assert victor["steps"][1]["channels"] == ["voice"]
    # A policy without a call step calls nobody.
    drill = CliRunner().invoke(app, ["alert", "send", "--zone", "Oaxaca", "--body", "Test",
                                     "--policy", "drill", "--dry-run", "--json"],
                               env=env_for(engine))
    assert json.loads(drill.stdout)["calls"] == 0


def test_channels_test_places_one_call(engine: Engine) -> None:
    result = CliRunner().invoke(app, ["channels", "test", "--voice", VICTOR],
                                env=env_for(engine))
    assert result.exit_code == 0, result.output
    assert "voice to +52******1001 accepted: CA" in result.stdout
    [call] = engine.sim.calls()
    twiml = ElementTree.fromstring(call["twiml"])
    assert twiml.find("Gather") is None  # nothing to confirm
    assert [s.text for s in twiml.iter("Say")] == ["ALN test message: no action needed."] * 2
