"""Enqueue: an alert to 100,000 volunteers in 15 zones written to the outbox.

Measures `send_alert` and, an alert this size being streamed, its fills (`dispatch.fill`;
plan, recipients, deliveries, deadlines, commits; every row the alert's first wave
needs) in recipients per second, and the process's peak RSS, on SQLite and on
PostgreSQL (skipped without ALN_TEST_POSTGRES_URL). Targets (issue 19): >= 50,000
recipients/s on each, <= 300 MB peak RSS. Each run is its own process, started after
the roster is written, so its RSS is the enqueue's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster, emit
from tests.conftest import make_settings

RECIPIENTS = 100_000
ZONES = 15
TARGET_PER_SECOND = 50_000
TARGET_RSS_MB = 300

RUN = textwrap.dedent('''
    import json, sys, time
    from sqlalchemy import func, select
    from dispatcher.dispatch.fill import run_fills
    from dispatcher.dispatch.outbox import send_alert
    from dispatcher.dispatch.plan import AlertRequest
    from dispatcher.domain import DeadlineKind
    from dispatcher.models import Deadline, Delivery, Recipient
    from dispatcher.roster.posts import ensure_post
    from dispatcher.runtime import Runtime
    from tests.bench.fixtures import peak_rss_mb
    from tests.conftest import UNREACHABLE_PROVIDERS, make_settings

    rt = Runtime.open(make_settings(sys.argv[1], **UNREACHABLE_PROVIDERS))
    req = AlertRequest(zones=["all"], body="Enqueue benchmark", channels=["sms"],
                       force=True, ack_window_seconds=3600)
    t0 = time.perf_counter()
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        sent = send_alert(session, rt.settings, post, req, filler="bench")
    # A streamed alert (as one this size is) has its rows written after the commit.
    run_fills(rt.db, rt.settings, sent.fills, "bench")
    alert_id = sent.alert_id
    seconds = time.perf_counter() - t0
    rss = peak_rss_mb()
    with rt.db.session() as session:
        counts = {name: session.scalar(select(func.count()).select_from(model)
                                       .where(model.alert_id == alert_id))
                  for name, model in (("recipients", Recipient), ("deliveries", Delivery),
                                      ("deadlines", Deadline))}
        # The zones' own deadlines: a streamed alert's fills are deadlines too (done now).
        counts["deadlines"] -= session.scalar(select(func.count()).select_from(Deadline)
                                              .where(Deadline.alert_id == alert_id,
                                                     Deadline.kind == DeadlineKind.FILL))
    rt.close()
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss, **counts}))
''')


def run(database_url: str) -> dict[str, float]:
    rt = Runtime.open(make_settings(database_url))
    bulk_roster(rt, RECIPIENTS, zones=ZONES)
    rt.close()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", RUN, database_url], capture_output=True,
                         text=True, timeout=1200, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def check(database: str, r: dict[str, float]) -> None:
    per_second = r["recipients"] / r["seconds"]
    emit({"bench": "enqueue", "database": database, "recipients": r["recipients"],
          "deliveries": r["deliveries"], "deadlines": r["deadlines"], "zones": ZONES,
          "seconds": round(r["seconds"], 2), "recipients_per_second": round(per_second),
          "target_per_second": TARGET_PER_SECOND,
          "peak_rss_mb": round(r["peak_rss_mb"], 1), "target_rss_mb": TARGET_RSS_MB})
    assert r["recipients"] == RECIPIENTS and r["deliveries"] == RECIPIENTS
    assert r["deadlines"] == ZONES
    assert per_second >= TARGET_PER_SECOND, f"{per_second:.0f} recipients/s on {database}"
    assert r["peak_rss_mb"] <= TARGET_RSS_MB, f"{r['peak_rss_mb']:.0f} MB on {database}"


def test_enqueue_sqlite(tmp_path: Path) -> None:
    check("sqlite", run(f"sqlite:///{tmp_path / 'enqueue.db'}"))


@pytest.mark.postgres
def test_enqueue_postgres(postgres_url: str) -> None:
    check("postgresql", run(postgres_url))
