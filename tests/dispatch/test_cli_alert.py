"""`aln alert ...` through the CLI, against the simulator."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from dispatcher.cli.main import app
from tests.conftest import CONFIG_DIR
from tests.engine import Engine, sms_requests


def env_for(engine: Engine) -> dict[str, str]:
    s = engine.rt.settings
    return {
        "ALN_DATABASE_URL": s.database_url, "ALN_SECRET_KEY": s.secret_key or "",
        "ALN_CONFIG_DIR": str(CONFIG_DIR), "ALN_POST": "mexico-city",
        "ALN_PUBLIC_URL": s.public_url, "TWILIO_ACCOUNT_SID": s.twilio_account_sid or "",
        "TWILIO_AUTH_TOKEN": s.twilio_auth_token or "",
        "TWILIO_FROM_NUMBER": s.twilio_from_number or "",
        "ALN_TWILIO_API_URL": s.twilio_api_url, "SENDGRID_API_KEY": "SG.test",
        "ALN_EMAIL_FROM": "aln@example.org", "ALN_SENDGRID_API_URL": s.sendgrid_api_url,
        "ALN_SMS_RATE_PER_SECOND": "0",
    }


def aln(engine: Engine, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=env_for(engine))


def test_dry_run_lists_recipients_and_sends_nothing(engine: Engine) -> None:
    result = aln(engine, "alert", "send", "--zone", "chiapas", "--zone", "Queretaro",
                 "--body", "Test", "--exercise", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    zones = {z["zone"]: z for z in preview["zones"]}
    assert [r["name"] for r in zones["Chiapas"]["recipients"]] == ["Ana Morales"]
    assert zones["Chiapas"]["chain"] == ["primary", "alternate1", "alternate2"]
    assert zones["Querétaro"]["recipients"][0]["language"] == "es"
    assert preview["sms"] == 2 and preview["emails"] == 2
    assert preview["sms_encoding"]["en"]["encoding"] in ("GSM-7", "UCS-2")
    assert sms_requests(engine.sim) == []
    listed = aln(engine, "alert", "list", "--json")
    assert json.loads(listed.stdout) == []


def test_send_status_cancel_and_update(engine: Engine) -> None:
    sent = aln(engine, "alert", "send", "--zone", "Oaxaca", "--body", "Test",
               "--template", "health", "--ack-window", "10m", "--json")
    assert sent.exit_code == 0, sent.output
    alert_id = json.loads(sent.stdout)["id"]
    status = json.loads(aln(engine, "alert", "status", str(alert_id), "--json").stdout)
    assert status["id"] == alert_id and status["ack_window_seconds"] == 600
    victor = status["recipients"][0]
    assert victor["name"] == "Victor Castillo" and victor["zone"] == "Oaxaca"
    assert victor["tier"] == "primary" and victor["state"] == "notified"
    assert "*" in victor["phone"] and victor["acknowledged_at"] is None
    assert status["zones"] == [{**status["zones"][0], "zone": "Oaxaca", "state": "waiting"}]
    updated = aln(engine, "alert", "update", str(alert_id), "--body", "Roads reopened.")
    assert updated.exit_code == 0, updated.output
    assert any("Roads reopened." in r["body"] for r in sms_requests(engine.sim))
    cancelled = aln(engine, "alert", "cancel", str(alert_id))
    assert cancelled.exit_code == 0, cancelled.output
    assert any("CANCEL" in r["body"] for r in sms_requests(engine.sim))
    again = aln(engine, "alert", "cancel", str(alert_id))
    assert again.exit_code == 2 and "already cancelled" in again.output


def test_errors_are_messages_not_tracebacks(engine: Engine) -> None:
    bad_zone = aln(engine, "alert", "send", "--zone", "Oaxca", "--body", "x")
    assert bad_zone.exit_code == 2 and "did you mean 'Oaxaca'" in bad_zone.output
    nobody = aln(engine, "alert", "send", "--zone", "Tabasco", "--body", "x")
    assert nobody.exit_code == 2 and "--force" in nobody.output
    bad_window = aln(engine, "alert", "send", "--zone", "Oaxaca", "--body", "x",
                     "--ack-window", "soon")
    assert bad_window.exit_code == 2 and "duration" in bad_window.output
    missing = aln(engine, "alert", "status", "999")
    assert missing.exit_code == 2 and "not found" in missing.output


def test_channels_test_command(engine: Engine) -> None:
    ok = aln(engine, "channels", "test", "--sms", "+529611230101", "--email", "a@example.org")
    assert ok.exit_code == 0, ok.output
    assert "accepted" in ok.output and "+529611230101" not in ok.output
    engine.sim.set_faults(invalid_numbers=["+529611230101"])
    bad = aln(engine, "channels", "test", "--sms", "+529611230101")
    text = " ".join(bad.output.split())  # the console wraps long lines
    assert bad.exit_code == 1 and "21211" in text and "invalid 'To' phone number" in text


def test_channels_test_sends_the_whatsapp_template(engine: Engine) -> None:
    """A first WhatsApp to someone must be the approved template (free text outside a
    session is refused by WhatsApp), so the test sends what an alert would."""
    env = {**env_for(engine), "TWILIO_WHATSAPP_FROM": "+15005550007"}
    ok = CliRunner().invoke(app, ["channels", "test", "--whatsapp", "+529611230101"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "whatsapp to +52******0101 accepted" in ok.output
    [sent] = [r["form"] for r in engine.sim.requests() if r["path"].endswith("/Messages.json")]
    assert sent["To"] == "whatsapp:+529611230101" and sent["ContentSid"].startswith("HX")
    assert "no action needed" in sent["ContentVariables"]
    missing = aln(engine, "channels", "test", "--whatsapp", "+529611230101")
    assert missing.exit_code == 1 and "TWILIO_WHATSAPP_FROM" in " ".join(missing.output.split())


def test_a_dry_run_to_every_zone_previews_the_ones_sending_would_refuse(engine: Engine) -> None:
    result = aln(engine, "alert", "send", "--zone", "all", "--body", "Test", "--dry-run",
                 "--json")
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    unreachable = sorted(z["zone"] for z in preview["zones"] if not z["reachable"])
    assert unreachable == ["Tabasco", "Tlaxcala"]
    assert "refused without --force" in preview["refused"]
    assert sms_requests(engine.sim) == []
    refused = aln(engine, "alert", "send", "--zone", "all", "--body", "Test")
    assert refused.exit_code == 2 and "nobody reachable" in refused.output
