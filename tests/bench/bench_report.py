"""Report speed: an alert with 100,000 deliveries (50,000 volunteers, SMS and email).

Target: `build_report` in <= 2 s on SQLite.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select

from dispatcher.db import db_now
from dispatcher.models import Alert, AlertZone, Contact, Delivery, Membership, Recipient
from dispatcher.reports.figures import build_report
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster, emit
from tests.conftest import make_settings

VOLUNTEERS = 50_000
TARGET_SECONDS = 2.0


def test_report_speed(tmp_path: Path) -> None:
    rt = Runtime.open(make_settings(f"sqlite:///{tmp_path / 'bench.db'}"))
    bulk_roster(rt, VOLUNTEERS, zones=15, email=True)
    rng = random.Random(7)
    with rt.db.session() as s:
        post = ensure_post(s, rt.settings, rt.vault)
        now = db_now(s)
        alert = Alert(post_id=post.id, kind="security", exercise=True, title="Bench",
                      bodies={"en": {"sms": "x"}}, reply_code="1000", ack_window_seconds=900,
                      policy={}, state="completed", sent_at=now)
        s.add(alert)
        s.flush()
        members = s.execute(select(Membership.volunteer_id, Membership.zone_id)).all()
        s.execute(insert(AlertZone), [{"alert_id": alert.id, "zone_id": z, "state":
                                       "acknowledged", "current_tier": 0,
                                       "acknowledged_at": now + timedelta(seconds=30)}
                                      for z in sorted({m.zone_id for m in members})])
        recs = []
        for i, (vid, zid) in enumerate(members):
            acked = rng.random() < 0.7
            recs.append({"id": i + 1, "alert_id": alert.id, "volunteer_id": vid,
                         "zone_id": zid, "tier": 0, "skipped": [],
                         "state": "acknowledged" if acked else "notified",
                         "notified_at": now + timedelta(seconds=1),
                         "acknowledged_at": now + timedelta(seconds=rng.uniform(5, 900))
                         if acked else None})
        s.execute(insert(Recipient), recs)
        contacts = s.execute(select(Contact.id, Contact.volunteer_id, Contact.channel)).all()
        rec_of = {r["volunteer_id"]: r["id"] for r in recs}
        s.execute(insert(Delivery), [{"alert_id": alert.id, "recipient_id": rec_of[c.volunteer_id],
                                      "contact_id": c.id, "channel": c.channel,
                                      "purpose": "alert", "body": "x",
                                      "state": rng.choice(["delivered", "delivered", "sent",
                                                           "failed"])}
                                     for c in contacts if c.volunteer_id in rec_of])
        alert_id = alert.id
    with rt.db.session() as s:
        start = time.perf_counter()
        report = build_report(s, alert_id)
        seconds = time.perf_counter() - start
    rt.close()
    emit({"bench": "report", "deliveries": report["summary"]["deliveries"],
          "volunteers": report["summary"]["recipients"], "seconds": round(seconds, 3),
          "target_seconds": TARGET_SECONDS})
    assert report["summary"]["deliveries"] == 2 * VOLUNTEERS
    assert seconds <= TARGET_SECONDS
