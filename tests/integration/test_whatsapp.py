"""WhatsApp end to end: the engine, the real Twilio SDK, the simulator and its signed replies."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import select
from typer.testing import CliRunner

from dispatcher.cli.main import app
from dispatcher.db import db_now
from dispatcher.models import Contact, Delivery, Response, Volunteer
from dispatcher.receipts import apply_twilio_status
from tests.conftest import CONFIG_DIR
from tests.dispatch.test_cli_alert import env_for
from tests.engine import Engine, sms_requests
from tests.helpers import wait_until

ANA = "+529611230101"  # Chiapas primary: sms;whatsapp;email, languages es;en
WHATSAPP_FROM = "+14155238886"
ES_TEMPLATE = "HX00000000000000000000000000000e02"


def whatsapp_requests(engine: Engine) -> list[dict[str, str]]:
    return [r["form"] for r in engine.sim.requests()
            if (r.get("form") or {}).get("To", "").startswith("whatsapp:")]


def test_an_alert_goes_as_the_template_and_a_whatsapp_si_acknowledges(
        engine_factory: Any) -> None:
    engine: Engine = engine_factory(twilio_whatsapp_from=WHATSAPP_FROM)
    alert_id = engine.send(["Chiapas"], ack_window_seconds=600)
    (form,) = wait_until(lambda: whatsapp_requests(engine), what="the WhatsApp message")
    assert form["To"] == "whatsapp:" + ANA and form["From"] == "whatsapp:" + WHATSAPP_FROM
    assert form["ContentSid"] == ES_TEMPLATE and "Body" not in form
    variables = json.loads(form["ContentVariables"])
    assert set(variables) == {"1", "2"} and engine.code(alert_id) in variables["2"]
    assert [r["to"] for r in sms_requests(engine.sim)].count(ANA) == 1  # SMS too, at once
    engine.sim.inbound("whatsapp:" + ANA, "Sí")
    engine.wait_zone(alert_id, "Chiapas", "acknowledged")
    assert engine.recipient(alert_id, "Ana Morales")["state"] == "acknowledged"


def test_inside_the_session_the_alert_goes_as_free_text(engine_factory: Any) -> None:
    engine: Engine = engine_factory(twilio_whatsapp_from=WHATSAPP_FROM)
    engine.sim.inbound("whatsapp:" + ANA, "hola")  # opens the session, on both sides
    with engine.rt.db.session() as session:
        assert session.scalar(select(Response.channel)) == "whatsapp"
    engine.send(["Chiapas"], ack_window_seconds=600)
    (form,) = wait_until(lambda: whatsapp_requests(engine), what="the WhatsApp message")
    assert "ContentSid" not in form and "Chiapas" in form["Body"]


def test_free_text_refused_63016_is_not_retried_and_falls_back_to_sms(
        engine_factory: Any, tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / "templates" / "whatsapp.toml").unlink()  # no template to fall back to
    (config / "policies" / "whatsapp-first.toml").write_text(
        'ack_window = "15m"\n[[steps]]\nchannels = ["whatsapp", "email"]\n', encoding="utf-8")
    engine: Engine = engine_factory(twilio_whatsapp_from=WHATSAPP_FROM, config_dir=config)
    with engine.rt.db.session() as session:
        # We believe a session is open; the provider does not (it restarted, say).
        ana = session.scalars(select(Volunteer.id).where(Volunteer.name == "Ana Morales")).one()
        session.add(Response(volunteer_id=ana, channel="whatsapp", kind="field_report",
                             text="hola", created_at=db_now(session)))
    alert_id = engine.send(["Chiapas"], ack_window_seconds=600, policy="whatsapp-first")
    wait_until(lambda: [r for r in sms_requests(engine.sim) if r["to"] == ANA],
               what="the SMS failover")
    forms = whatsapp_requests(engine)
    assert len(forms) == 1 and "Body" in forms[0]  # tried once as free text, never again
    with engine.rt.db.session() as session:
        path = session.scalars(select(Contact).where(Contact.volunteer_id == ana,
                                                     Contact.channel == "whatsapp")).one()
        assert path.dead_reason is None and not path.opted_out  # the path is not dead
    assert engine.recipient(alert_id, "Ana Morales")["state"] in ("pending", "notified")


def test_dry_run_shows_whatsapp_language_form_cost_and_steps(engine_factory: Any) -> None:
    engine: Engine = engine_factory(twilio_whatsapp_from=WHATSAPP_FROM, start=False)
    env = {**env_for(engine), "TWILIO_WHATSAPP_FROM": WHATSAPP_FROM}
    result = CliRunner().invoke(app, ["alert", "send", "--zone", "Chiapas", "--body", "Test",
                                      "--dry-run", "--json"], env=env)
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    (ana,) = preview["zones"][0]["recipients"]
    assert ana["whatsapp"] == {"language": "es", "form": "template",
                               "content_sid": ES_TEMPLATE, "cost_units": 1}
    assert ana["channels"] == ["email", "sms", "whatsapp"]
    # The default policy calls after 5 minutes: Ana has no voice path, so it is named.
    assert ana["steps"][1] == {"after_seconds": 300, "channels": [], "skipped": [
        {"channel": "voice", "reason": "no live contact"}]}
    assert preview["whatsapp"] == 1 and preview["whatsapp_cost_units"] == 1
    assert [s["channels"] for s in preview["steps"]] == [["sms", "whatsapp", "email"],
                                                          ["voice"]]
    text = CliRunner().invoke(app, ["alert", "send", "--zone", "Chiapas", "--body", "Test",
                                    "--dry-run"], env=env)
    assert text.exit_code == 0, text.output
    shown = " ".join(text.stdout.split())  # the console wraps long lines
    assert f"WhatsApp to Ana Morales [es]: template {ES_TEMPLATE}, 1 cost unit(s)" in shown
    assert "Ana Morales skipped on voice (no live contact)" in shown
    assert "Each tier: sms, whatsapp, email at once; then voice after 5 min" in shown


def test_a_63016_callback_sends_the_template_on_the_same_path_once(
        engine_factory: Any) -> None:
    """Twilio took the free text (we and it believed a session open), then refused it in a
    status callback: the template goes to the same WhatsApp path, once; the path stays
    live and no other channel is asked again."""
    engine: Engine = engine_factory(twilio_whatsapp_from=WHATSAPP_FROM)
    engine.sim.set_faults(callbacks=False)  # the refusal below is the only callback
    engine.sim.inbound("whatsapp:" + ANA, "hola")
    alert_id = engine.send(["Chiapas"], ack_window_seconds=600)
    (free,) = wait_until(lambda: whatsapp_requests(engine), what="the free-text message")
    assert "Body" in free and "ContentSid" not in free
    with engine.rt.db.session() as session:
        d = session.scalars(select(Delivery).where(Delivery.alert_id == alert_id,
                                                   Delivery.channel == "whatsapp")).one()
        assert apply_twilio_status(session, {"MessageSid": d.provider_id,
                                             "MessageStatus": "undelivered",
                                             "ErrorCode": "63016"}, str(d.id))
    asyncio.run(engine.fan_out(alert_id))
    forms = whatsapp_requests(engine)
    assert len(forms) == 2 and forms[1]["ContentSid"] == ES_TEMPLATE
    assert [r["to"] for r in sms_requests(engine.sim)].count(ANA) == 1
    with engine.rt.db.session() as session:
        again = session.scalars(select(Delivery).where(
            Delivery.alert_id == alert_id, Delivery.channel == "whatsapp")
            .order_by(Delivery.id)).all()
        assert [x.purpose for x in again] == ["alert", "failover"]
        # A second refusal does not loop: the path is not tried a third time.
        assert apply_twilio_status(session, {"MessageSid": again[1].provider_id,
                                             "MessageStatus": "undelivered",
                                             "ErrorCode": "63016"}, str(again[1].id))
    asyncio.run(engine.fan_out(alert_id))
    assert len(whatsapp_requests(engine)) == 2
