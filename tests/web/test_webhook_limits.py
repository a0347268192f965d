"""Hostile webhook bodies: capped before they are read, and never a 5xx."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx

from channels.webhooks import generate_sendgrid_keypair, sendgrid_sign
from dispatcher.web.limits import MAX_REQUEST_BYTES
from tests.engine import Engine

#: How long a refusal may take; reading 150 MB would take far longer than nothing.
ANSWER_DEADLINE_SECONDS = 5.0


def _raw_post(url: str, headers: dict[str, str], body: bytes) -> bytes:
    """Send a request whose headers may lie, and read what comes back within the deadline."""
    parts = urlsplit(url)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((parts.hostname, parts.port),
                                  timeout=ANSWER_DEADLINE_SECONDS) as sock:
        sock.sendall(f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{head}\r\n"
                     .encode() + body)
        answer = b""
        deadline = time.monotonic() + ANSWER_DEADLINE_SECONDS
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_declared_150_mb_webhook_is_refused_before_it_is_read(engine: Engine) -> None:
    answer = _raw_post(f"{engine.url}/webhooks/twilio/sms",
                       {"Content-Type": "application/x-www-form-urlencoded",
                        "Content-Length": str(150_000_000)}, b"Body=YES&" * 100)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_streamed_body_over_the_cap_is_refused(engine: Engine) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5 * MAX_REQUEST_BYTES // 65536):
            yield b"x" * 65536

    r = httpx.post(f"{engine.url}/webhooks/sendgrid/events", content=chunks(), timeout=30)
    assert r.status_code == 413


def _sendgrid_post(engine: Engine, raw: bytes, timestamp: str) -> httpx.Response:
    private, public = generate_sendgrid_keypair()
    engine.rt.settings.sendgrid_webhook_public_key = public
    return httpx.post(f"{engine.url}/webhooks/sendgrid/events", content=raw, headers={
        "X-Twilio-Email-Event-Webhook-Signature": sendgrid_sign(private, raw, timestamp),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp})


def test_sendgrid_timestamp_of_400_digits_is_refused_not_a_500(engine: Engine) -> None:
    r = httpx.post(f"{engine.url}/webhooks/sendgrid/events", content=b"[]", headers={
        "X-Twilio-Email-Event-Webhook-Signature": "c2ln",
        "X-Twilio-Email-Event-Webhook-Timestamp": "9" * 400})
    assert r.status_code == 403
    assert _sendgrid_post(engine, b"[]", "9" * 400).status_code == 403


def test_signed_json_nested_100k_deep_is_a_400(engine: Engine) -> None:
    r = _sendgrid_post(engine, b"[" * 100_000, str(int(time.time())))
    assert r.status_code == 400
    assert "nested" in r.json()["detail"]
