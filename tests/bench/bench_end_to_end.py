"""End to end: `aln alert send` to 20,000 volunteers against a bare aiohttp loop.

Both post the same 20,000 requests to the same simulator process (100 ms latency) at
the same concurrency (200), in the same run. The command is timed from its start
(after imports) to the last message handed off; the bare loop from its first request
to its last answer. Target: the command's rate >= 0.8 of the bare loop's. The send
phase alone (first request to last answer) is reported too, so a gain in sending shows
whatever the enqueue costs.

The bare loop replays exactly the form the Twilio SDK posted for each message (read
back from the simulator), with the same basic auth, on the same event loop (uvloop):
it is the best any sender could do on this machine, with no database at all.
Each side runs in its own process, one after the other, so neither competes for the
2 cores with the other; the figures are still noisy on a shared machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from channels.simulator.testing import spawn_simulator
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster, emit
from tests.conftest import CONFIG_DIR, make_settings

RECIPIENTS = 20_000
LATENCY_S = 0.1
CONCURRENCY = 200
#: The command's rate over the bare loop's, at least.
TARGET_RATIO = 0.8

#: The officer's command, in its own process: timed from after the imports.
COMMAND = textwrap.dedent('''
    import json, sys, time
    from dispatcher.cli.main import app
    t0 = time.time()
    try:
        app(["alert", "send", "--zone", "all", "--body", "End-to-end benchmark",
             "--channel", "sms", "--force", "--ack-window", "1h"], standalone_mode=False)
    except SystemExit as exc:
        if exc.code:
            raise
    print(json.dumps({"started": t0, "exited": time.time()}))
''')

#: The bare loop: the same requests through one aiohttp session, nothing else.
BARE = textwrap.dedent('''
    import asyncio, base64, json, sys, time
    import aiohttp
    from dispatcher import aio

    url, sid, token, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    forms = json.load(sys.stdin)

    async def main():
        auth = {"Authorization": "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()}
        target = f"{url}/2010-04-01/Accounts/{sid}/Messages.json"
        ok = 0
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=concurrency),
                timeout=aiohttp.ClientTimeout(total=60)) as http:
            queue = iter(forms)

            async def worker():
                nonlocal ok
                for form in queue:
                    async with http.post(target, data=form, headers=auth) as resp:
                        await resp.read()
                        ok += resp.status == 201

            t0 = time.time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return t0, time.time(), ok

    started, ended, ok = aio.run(main())
    print(json.dumps({"started": started, "ended": ended, "ok": ok}))
''')


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **extra}


def _messages(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r["path"].endswith("/Messages.json")]


def test_end_to_end_20000(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/e2e.db"
    rt = Runtime.open(make_settings(db))
    bulk_roster(rt, RECIPIENTS, zones=15)
    rt.close()
    with spawn_simulator(latency_ms=LATENCY_S * 1000, callbacks=False) as sim:
        env = _env({
            "ALN_DATABASE_URL": db, "ALN_SECRET_KEY": "test-secret-key-not-for-production",
            "ALN_CONFIG_DIR": str(CONFIG_DIR), "ALN_POST": "mexico-city",
            "TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token,
            "TWILIO_FROM_NUMBER": "+15005550006", "ALN_TWILIO_API_URL": sim.twilio_api_url,
            "ALN_SEND_CONCURRENCY": str(CONCURRENCY), "ALN_SMS_RATE_PER_SECOND": "0",
            "ALN_PROVIDER_TIMEOUT": "60"})
        out = subprocess.run([sys.executable, "-c", COMMAND], capture_output=True, text=True,
                             timeout=1200, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        command = json.loads(out.stdout.strip().splitlines()[-1])
        ours = _messages(sim.requests())
        sim.reset()  # also resets the faults: the same latency again, and no callbacks
        sim.set_faults(latency_ms=LATENCY_S * 1000, callbacks=False)
        # A moment for the simulator's last answers and our sockets to settle.
        time.sleep(1)
        forms = [r["form"] for r in ours]
        out = subprocess.run([sys.executable, "-c", BARE, sim.twilio_api_url, sim.account_sid,
                              sim.auth_token, str(CONCURRENCY)], input=json.dumps(forms),
                             capture_output=True, text=True, timeout=1200, env=_env({}))
        assert out.returncode == 0, out.stderr[-3000:]
        bare = json.loads(out.stdout.strip().splitlines()[-1])
        theirs = _messages(sim.requests())

    # The simulator stamps each request on arrival; its answer leaves `LATENCY_S` later.
    first, last = min(r["at"] for r in ours), max(r["at"] for r in ours) + LATENCY_S
    e2e_seconds = last - command["started"]
    send_seconds = last - first
    bare_seconds = bare["ended"] - bare["started"]
    rate, bare_rate = len(ours) / e2e_seconds, len(theirs) / bare_seconds
    send_rate = len(ours) / send_seconds
    ratio = rate / bare_rate
    emit({"bench": "end_to_end", "recipients": RECIPIENTS, "handed_off": len(ours),
          "latency_ms": LATENCY_S * 1000, "concurrency": CONCURRENCY,
          "seconds": round(e2e_seconds, 2), "messages_per_second": round(rate, 1),
          "first_request_seconds": round(first - command["started"], 2),
          "send_seconds": round(send_seconds, 2), "send_per_second": round(send_rate, 1),
          "command_exit_seconds": round(command["exited"] - command["started"], 2),
          "bare_seconds": round(bare_seconds, 2), "bare_per_second": round(bare_rate, 1),
          "bare_ok": bare["ok"], "ratio": round(ratio, 3),
          "send_ratio": round(send_rate / bare_rate, 3), "target_ratio": TARGET_RATIO})
    assert len(ours) == RECIPIENTS
    assert len({r["form"]["To"] for r in ours}) == RECIPIENTS
    assert bare["ok"] == RECIPIENTS
    assert ratio >= TARGET_RATIO
