"""Acknowledgement throughput: signed inbound SMS webhooks through `aln serve` on SQLite.

An alert has gone out to 15,000 volunteers (its deliveries sent). Each volunteer sends
one Twilio-signed "YES <code>" with its own MessageSid, from a load generator in its
own process (tests/bench/loadgen.py); `aln serve` runs in another, with its worker,
as an officer would start it. Every request is verified, stored, parsed and
acknowledged, and every volunteer must end acknowledged.

Three results, one JSON line each:
- ack_webhooks: the most it takes, 32 requests in flight at all times (5,000 replies);
- ack_webhooks_at_target: latency when replies arrive at 1,000 a second whatever the
  server does (10,000 replies over ten seconds), measured from when each was due.
  Targets: >= 1,000/s, p99 <= 50 ms.
- status_webhooks: the most Twilio "delivered" callbacks it takes (5,000), for scale:
  a real fan-out brings two or three per message, at the account's sending rate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psutil
from sqlalchemy import func, select, update

from channels.simulator.serving import free_port
from channels.webhooks import twilio_sign
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.models import Alert, Delivery, Recipient, utcnow
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster, emit
from tests.conftest import CONFIG_DIR, make_settings
from tests.helpers import wait_until

VOLUNTEERS = 15_000
CLOSED_LOOP = 5_000
CONNECTIONS = 32
RATE = 1_000
TARGET_PER_SECOND = 1_000
TARGET_P99_MS = 50
TOKEN = "bench-token"
ACCOUNT = "AC" + "0" * 32
LOADGEN = Path(__file__).with_name("loadgen.py")


def sent_alert(rt: Runtime, zones: tuple[str, ...] = ("Chiapas",)) -> tuple[int, str]:
    """An alert to every bench volunteer of `zones` whose fan-out has finished (every
    volunteer notified): its id and reply code."""
    req = AlertRequest(zones=list(zones), body="Bench", ack_window_seconds=3600,
                       channels=["sms"])
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        alert = session.get(Alert, send_alert(session, rt.settings, post, req).alert_id)
        assert alert is not None
        now = utcnow()
        session.execute(update(Delivery).where(Delivery.alert_id == alert.id)
                        .values(state="sent", sent_at=now, attempts=1))
        session.execute(update(Recipient).where(Recipient.alert_id == alert.id)
                        .values(state="notified", notified_at=now))
        session.execute(update(Alert).where(Alert.id == alert.id)
                        .values(state="active", sent_at=now))
        return alert.id, alert.reply_code


def requests_for(url: str, phones: list[str], code: str, first: int) -> list[list[object]]:
    out: list[list[object]] = []
    for i, phone in enumerate(phones, start=first):
        params = {"MessageSid": f"SM{i:032x}", "AccountSid": ACCOUNT, "From": phone,
                  "To": "+15005550006", "Body": f"YES {code}", "NumMedia": "0",
                  "NumSegments": "1"}
        out.append(["/webhooks/twilio/sms", urlencode(params),
                    {"X-Twilio-Signature": twilio_sign(TOKEN, url, params)}])
    return out


def status_requests_for(public: str, delivery_ids: list[int]) -> list[list[object]]:
    out: list[list[object]] = []
    for d in delivery_ids:
        path = f"/webhooks/twilio/status?ref={d}"
        params = {"MessageSid": f"SM{d:032x}", "AccountSid": ACCOUNT, "MessageStatus": "delivered",
                  "To": "+525560000000", "From": "+15005550006"}
        out.append([path, urlencode(params),
                    {"X-Twilio-Signature": twilio_sign(TOKEN, public + path, params)}])
    return out


def load(port: int, requests: list[list[object]], *args: str) -> dict[str, float]:
    spec = json.dumps({"host": "127.0.0.1", "port": port, "requests": requests})
    out = subprocess.run([sys.executable, str(LOADGEN), *args], input=spec, text=True,
                         capture_output=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_runtime(tmp_path: Path) -> tuple[Runtime, str, int, str]:
    """A SQLite runtime whose Twilio is never called (its webhooks are what is measured),
    and the port and public URL `aln serve` will take: (runtime, db url, port, url)."""
    db_url = f"sqlite:///{tmp_path / 'bench.db'}"
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    rt = Runtime.open(make_settings(
        db_url, public_url=public, twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN,
        twilio_from_number="+15005550006", twilio_api_url="http://127.0.0.1:9",
        stream_above=10**9))  # the alert's rows are all written before the replies come
    return rt, db_url, port, public


def test_ack_webhook_throughput(tmp_path: Path) -> None:
    rt, db_url, port, public = bench_runtime(tmp_path)
    phones = bulk_roster(rt, VOLUNTEERS, zones=1)
    alert_id, code = sent_alert(rt)
    url = f"{public}/webhooks/twilio/sms"
    closed = requests_for(url, phones[:CLOSED_LOOP], code, 0)
    opened = requests_for(url, phones[CLOSED_LOOP:], code, CLOSED_LOOP)
    with rt.db.session() as session:
        delivery_ids = list(session.scalars(select(Delivery.id).where(
            Delivery.alert_id == alert_id).order_by(Delivery.id).limit(CLOSED_LOOP)))
    receipts = status_requests_for(public, delivery_ids)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALN_", "TWILIO_"))}
    env.update({"ALN_DATABASE_URL": db_url, "ALN_SECRET_KEY": rt.settings.secret_key or "",
                "ALN_CONFIG_DIR": str(CONFIG_DIR), "ALN_POST": "mexico-city",
                "ALN_PUBLIC_URL": public, "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_FROM_NUMBER": "+15005550006",
                "ALN_TWILIO_API_URL": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,localhost"})
    server = subprocess.Popen([str(Path(sys.executable).with_name("aln")), "serve",
                               "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        with httpx.Client() as probe:
            wait_until(lambda: _healthy(probe, public) or server.poll() is not None,
                       timeout=60, what="aln serve to answer /healthz")
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        cpu_before = _cpu(server.pid)
        most = load(port, closed, "--connections", str(CONNECTIONS))
        cpu_mid = _cpu(server.pid)
        steady = load(port, opened, "--connections", "64", "--rate", str(RATE))
        statuses = load(port, receipts, "--connections", str(CONNECTIONS))
    finally:
        server.terminate()
        server.wait(timeout=30)
    with rt.db.session() as session:
        acked = session.scalar(select(func.count()).select_from(Recipient).where(
            Recipient.alert_id == alert_id, Recipient.state == "acknowledged"))
        delivered = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.alert_id == alert_id, Delivery.state == "delivered"))
    rt.close()
    emit({"bench": "ack_webhooks", "requests": most["n"], "connections": CONNECTIONS,
          "per_second": round(most["per_second"], 1), "p50_ms": round(most["p50_ms"], 2),
          "p99_ms": round(most["p99_ms"], 2),
          "server_cpu_ms_per_request": round((cpu_mid - cpu_before) * 1000 / most["n"], 3),
          "target_per_second": TARGET_PER_SECOND})
    emit({"bench": "ack_webhooks_at_target", "requests": steady["n"], "offered_per_second": RATE,
          "per_second": round(steady["per_second"], 1), "p50_ms": round(steady["p50_ms"], 2),
          "p99_ms": round(steady["p99_ms"], 2), "max_ms": round(steady["max_ms"], 2),
          "target_p99_ms": TARGET_P99_MS})
    emit({"bench": "status_webhooks", "requests": statuses["n"], "connections": CONNECTIONS,
          "per_second": round(statuses["per_second"], 1),
          "p50_ms": round(statuses["p50_ms"], 2), "p99_ms": round(statuses["p99_ms"], 2)})
    assert most["ok"] == CLOSED_LOOP and steady["ok"] == VOLUNTEERS - CLOSED_LOOP
    assert statuses["statuses"] == {"204": CLOSED_LOOP}
    assert acked == VOLUNTEERS and delivered == CLOSED_LOOP
    # The targets, after the correctness checks: a miss fails `make bench`.
    assert most["per_second"] >= TARGET_PER_SECOND, most
    assert steady["p99_ms"] <= TARGET_P99_MS, steady


def _healthy(client: httpx.Client, base: str) -> bool:
    try:
        return client.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)

