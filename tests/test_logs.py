"""ALN_LOG_FORMAT=json: every line `aln serve` writes parses as JSON and holds no full
phone number or email address; the masking helper masks what reaches a message."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from channels.simulator.serving import free_port
from channels.simulator.testing import run_simulator
from channels.webhooks import twilio_sign
from dispatcher.logs import JsonFormatter, masked
from tests.engine import cli_env
from tests.helpers import wait_until
from tests.reliability.test_kill_fanout import ALN

STRANGER = "+525599998877"


def test_masked_masks_numbers_and_addresses_in_free_text() -> None:
    text = masked("from +52 55 9999 8877 and 5215512345678, mail ana.morales@example.org")
    assert "9999" not in text and "12345678" not in text and "ana.morales" not in text
    assert "8877" in text and "@example.org" in text


def test_a_json_record_carries_its_structured_fields_masked() -> None:
    record = logging.LogRecord("dispatcher.x", logging.WARNING, __file__, 1,
                               "delivery to %s failed", ("+529611230101",), None)
    record.alert_id, record.delivery_id = 12, 34
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["alert_id"] == 12 and line["delivery_id"] == 34
    assert "9611230101" not in line["message"] and line["message"].endswith("0101 failed")


def test_every_line_of_aln_serve_in_json_mode_is_json_without_a_full_number(
        tmp_path: Path) -> None:
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'aln.db'}"
    with run_simulator(public_url=f"http://127.0.0.1:{port}") as sim:
        env = cli_env(db_url, sim, "json-log-secret", ALN_LOG_FORMAT="json",
                      ALN_PUBLIC_URL=f"http://127.0.0.1:{port}")
        server = subprocess.Popen([ALN, "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: _up(port) or server.poll() is not None, timeout=30,
                       what="aln serve to answer")
            url = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
            params = {"MessageSid": "SM" + "4" * 32, "AccountSid": sim.account_sid,
                      "From": STRANGER, "To": "+15005550006", "Body": "road blocked"}
            signature = twilio_sign(sim.auth_token, url, params)
            assert httpx.post(url, data=params,
                              headers={"X-Twilio-Signature": signature}).status_code == 200
            assert httpx.post(url, data=params,
                              headers={"X-Twilio-Signature": "forged"}).status_code == 403
            # Garbage on the socket: uvicorn itself logs a warning, which must be JSON too.
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
                raw.recv(1024)
        finally:
            server.send_signal(signal.SIGTERM)
            out, err = server.communicate(timeout=30)
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert lines, "aln serve wrote nothing"
    records = [json.loads(line) for line in lines]  # every line, or this raises
    assert any("aln serve on" in r["message"] for r in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)
    assert any("unknown number" in r["message"] for r in records)
    assert "5599998877" not in out + err


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
