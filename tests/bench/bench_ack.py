"""Acknowledgement throughput: signed inbound SMS webhooks through `aln serve` on SQLite.

An open alert to 5,000 volunteers; each sends one Twilio-signed "YES <code>" with
its own MessageSid, from a load generator in another process, 64 connections at a
time. Every request is verified, stored, parsed and acknowledged. Reports requests
per second and p50/p99 latency. Targets: >= 1,000/s, p99 <= 50 ms.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select

from dispatcher.dispatch.outbox import AlertRequest, create_alert, plan_alert
from dispatcher.models import Recipient
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from dispatcher.web.app import create_app
from dispatcher.web.server import ServerThread, free_port
from tests.bench.fixtures import bulk_roster, emit
from tests.conftest import make_settings

VOLUNTEERS = 5_000
CONCURRENCY = 64
TARGET_PER_SECOND = 1000
TARGET_P99_MS = 50

LOADGEN = textwrap.dedent('''
    import asyncio, json, sys, time
    import httpx
    from channels.webhooks import twilio_sign

    url, token, code, phones, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], \\
        json.loads(sys.argv[4]), int(sys.argv[5])
    reqs = []
    for i, phone in enumerate(phones):
        params = {"MessageSid": f"SM{i:032x}", "AccountSid": "AC" + "0" * 32, "From": phone,
                  "To": "+15005550006", "Body": f"YES {code}", "NumMedia": "0",
                  "NumSegments": "1"}
        reqs.append((params, twilio_sign(token, url, params)))

    async def main():
        lat, ok = [], 0
        queue = asyncio.Queue()
        for r in reqs:
            queue.put_nowait(r)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            async def one():
                nonlocal ok
                while not queue.empty():
                    params, sig = queue.get_nowait()
                    t = time.perf_counter()
                    r = await client.post(url, data=params, headers={"X-Twilio-Signature": sig})
                    lat.append(time.perf_counter() - t)
                    ok += r.status_code == 200
            start = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(concurrency)))
            wall = time.perf_counter() - start
        lat.sort()
        print(json.dumps({"n": len(lat), "ok": ok, "seconds": wall,
                          "p50_ms": lat[len(lat) // 2] * 1000,
                          "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000}))
    asyncio.run(main())
''')


def test_ack_webhook_throughput(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'bench.db'}", public_url=f"http://127.0.0.1:{port}",
        twilio_account_sid="AC" + "0" * 32, twilio_auth_token="bench-token",
        twilio_from_number="+15005550006", twilio_api_url="http://127.0.0.1:9")
    rt = Runtime.open(settings)
    phones = bulk_roster(rt, VOLUNTEERS, zones=1)
    req = AlertRequest(zones=["Chiapas"], body="Bench", ack_window_seconds=3600,
                       channels=["sms"])
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        alert = create_alert(session, rt.settings, plan_alert(session, rt.settings, post, req),
                             req)
        code = alert.reply_code
    url = f"http://127.0.0.1:{port}/webhooks/twilio/sms"
    # The worker is not needed to take replies; leaving it out measures the webhook path.
    with ServerThread(create_app(rt, run_worker=False), port=port):
        out = subprocess.run(
            [sys.executable, "-c", LOADGEN, url, "bench-token", code, json.dumps(phones),
             str(CONCURRENCY)], capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    with rt.db.session() as session:
        acked = session.scalar(select(func.count()).select_from(Recipient).where(
            Recipient.alert_id == alert.id, Recipient.state == "acknowledged"))
    rt.close()
    per_second = result["n"] / result["seconds"]
    emit({"bench": "ack_webhooks", "requests": result["n"], "acknowledged": acked,
          "per_second": round(per_second, 1), "p50_ms": round(result["p50_ms"], 2),
          "p99_ms": round(result["p99_ms"], 2), "concurrency": CONCURRENCY,
          "target_per_second": TARGET_PER_SECOND, "target_p99_ms": TARGET_P99_MS})
    assert result["ok"] == VOLUNTEERS and acked == VOLUNTEERS
