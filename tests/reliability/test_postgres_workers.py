"""Two `aln worker` processes on PostgreSQL share 1,000 due deadlines, each fired once.

A third "worker" on another host claimed 100 of them and died: its rows wait for
their lease to run out, then the live workers finish them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from channels.simulator.testing import run_simulator
from dispatcher.db import db_now
from dispatcher.escalation.engine import claim_due_deadlines
from dispatcher.models import Alert, AlertZone, Deadline, Membership, Recipient, Volunteer, Zone
from dispatcher.roster.posts import ensure_post
from dispatcher.roster.sample import import_sample_roster
from dispatcher.runtime import Runtime
from tests.conftest import SAMPLE_ROSTER, make_settings
from tests.engine import cli_env, sms_requests
from tests.helpers import wait_until

DEADLINES = 1000
LEASE_SECONDS = 3
ALN = str(Path(sys.executable).parent / "aln")
BRIAN = "+529611230102"  # Chiapas alternate1


def _due_alerts(rt: Runtime) -> None:
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        zone = session.scalars(select(Zone).where(Zone.post_id == post.id,
                                                  Zone.key == "chiapas")).one()
        ana = session.scalars(select(Membership.volunteer_id).where(
            Membership.zone_id == zone.id, Membership.tier == 0)).one()
        now = db_now(session)
        policy = {"ack_window_seconds": 600, "quorum": 1, "mode": "any",
                  "notify_duty_officers": True, "stand_down": False, "reminders": 0}
        bodies = {"en": {"sms": "PG test. Reply YES 1000 to confirm.", "subject": "PG",
                         "email_text": "PG", "email_html": ""}}
        alerts = [{"id": i + 1, "post_id": post.id, "kind": "security", "title": "PG",
                   "bodies": bodies, "channels": ["sms"], "reply_code": "1000",
                   "ack_window_seconds": 600, "policy": policy, "state": "active",
                   "sent_at": now} for i in range(DEADLINES)]
        session.execute(insert(Alert), alerts)
        session.execute(insert(AlertZone), [{"alert_id": a["id"], "zone_id": zone.id,
                                             "state": "waiting", "current_tier": 0}
                                            for a in alerts])
        session.execute(insert(Recipient), [{"alert_id": a["id"], "volunteer_id": ana,
                                             "zone_id": zone.id, "tier": 0,
                                             "state": "notified", "skipped": []}
                                            for a in alerts])
        session.execute(insert(Deadline), [{"alert_id": a["id"], "zone_id": zone.id,
                                            "tier": 0, "kind": "escalate", "state": "pending",
                                            "due_at": now - timedelta(seconds=1)}
                                           for a in alerts])
    # PostgreSQL's sequence must move past the ids given explicitly.
    with rt.db.session() as session:
        session.execute(text("SELECT setval(pg_get_serial_sequence('alerts', 'id'), :n)"),
                        {"n": DEADLINES})


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_fire_each_escalation_exactly_once(postgres_url: str) -> None:
    secret = "pg-workers-secret"
    with run_simulator(callbacks=False) as sim:
        rt = Runtime.open(make_settings(postgres_url, secret_key=secret))
        with rt.db.session() as session:
            post = ensure_post(session, rt.settings, rt.vault)
            import_sample_roster(session, rt.vault, post, SAMPLE_ROSTER)
        _due_alerts(rt)
        # A worker on another host claims 100 deadlines and dies without firing them.
        dead = claim_due_deadlines(rt.db, "otherhost:4242:dead", LEASE_SECONDS, limit=100)
        assert len(dead) == 100
        env = cli_env(postgres_url, sim, secret, ALN_LEASE_SECONDS=str(LEASE_SECONDS),
                      ALN_SWEEP_SECONDS="0.3")
        workers = [subprocess.Popen([ALN, "worker"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE) for _ in range(2)]
        try:
            def done() -> int:
                with rt.db.session() as session:
                    return session.scalar(select(func.count()).select_from(Deadline).where(
                        Deadline.state == "done")) or 0

            wait_until(lambda: done() >= DEADLINES, timeout=180, interval=0.5,
                       what="every deadline fired")
            wait_until(lambda: len([r for r in sms_requests(sim) if r["to"] == BRIAN])
                       >= DEADLINES, timeout=120, interval=0.5, what="every escalation SMS")
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(timeout=30)
        to_brian = [r for r in sms_requests(sim) if r["to"] == BRIAN]
        with rt.db.session() as session:
            firers = Counter(session.scalars(select(Deadline.claimed_by).where(
                Deadline.state == "done")))
            brian_rows = session.scalar(
                select(func.count()).select_from(Recipient).join(Volunteer)
                .where(Volunteer.name == "Brian Keller"))
            late_taken = session.scalar(select(func.count()).select_from(Deadline).where(
                Deadline.id.in_(dead), Deadline.state == "done"))
        rt.close()
    assert len(to_brian) == DEADLINES  # each escalation sent exactly once
    assert brian_rows == DEADLINES
    assert late_taken == 100  # the dead worker's rows, after its lease
    live = [name for name in firers if name and not name.startswith("otherhost")]
    assert len(live) == 2 and all(firers[n] > 0 for n in live), firers  # work was shared
