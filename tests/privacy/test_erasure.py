"""Erasure and retention: a volunteer's name and number leave no trace in the database
file, the reports keep their figures, the audit trail keeps a pseudonym."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dispatcher.db import db_now, db_today
from dispatcher.dispatch.outbox import send_alert
from dispatcher.dispatch.plan import AlertRequest
from dispatcher.models import (
    AuditEvent,
    Contact,
    Delivery,
    InboundMessage,
    Membership,
    Post,
    Response,
    Volunteer,
)
from dispatcher.privacy.erasure import erase_volunteer
from dispatcher.privacy.retention import apply_retention, run_if_due
from dispatcher.receipts import status_batch
from dispatcher.replies.inbound import receive_sms, sms_batch
from dispatcher.replies.spool import Spool
from dispatcher.reports.figures import build_report
from dispatcher.roster.posts import ensure_post
from dispatcher.runtime import Runtime
from tests.conftest import rt_with_roster

NAME, ANA, EMAIL = "Ana Morales", "+529611230101", "ana.morales@example.org"
STRANGER = "+529991112233"
#: Every spelling of Ana that must not survive in the file's bytes.
TRACES = [NAME, NAME.upper(), ANA, ANA[1:], EMAIL]


@pytest.fixture
def rt(database_url: str) -> Iterator[Runtime]:
    runtime = rt_with_roster(database_url)
    yield runtime
    runtime.close()


def sms(rt: Runtime, sid: str, body: str, sender: str = ANA) -> None:
    receive_sms(rt.db, rt.settings, rt.vault,
                {"MessageSid": sid, "From": sender, "To": "+15005550006", "Body": body})


def ana_everywhere(rt: Runtime) -> int:
    """Ana acknowledges, asks for help, reports; a stranger names her; a provider error
    quotes her number; a status callback about her and a spooled reply wait."""
    with rt.db.session() as session:
        post = ensure_post(session, rt.settings, rt.vault)
        sent = send_alert(session, rt.settings, post,
                          AlertRequest(zones=["Chiapas"], body="Test", ack_window_seconds=600))
        assert sent.alert_id is not None
        alert_id = sent.alert_id
        session.execute(update(Delivery).where(Delivery.channel == "sms").values(
            error_message=f"The 'To' number {ANA} is not a valid phone number"))
    sms(rt, "SM1", "YES")
    sms(rt, "SM2", "HELP")
    sms(rt, "SM3", f"{NAME} here: the road to the airport is blocked")
    sms(rt, "SM4", f"I saw {NAME.lower()} at the airport", sender=STRANGER)
    status_batch(rt, [({"MessageSid": "SMx", "MessageStatus": "delivered", "To": ANA}, None)])
    if rt.settings.sqlite_path() is not None:
        Spool(rt.settings.spool_path(), rt.vault).put(sms_batch, {"From": ANA, "Body": "OK"})
    return alert_id


def file_bytes(db_file: Path) -> bytes:
    data = db_file.read_bytes()
    wal = db_file.with_name(db_file.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


def assert_no_trace(blob: bytes) -> None:
    for trace in TRACES:
        assert trace.encode() not in blob, trace


def test_erase_leaves_no_trace_in_the_file(sqlite_url: str, tmp_path: Path) -> None:
    rt = rt_with_roster(sqlite_url)
    alert_id = ana_everywhere(rt)
    with rt.db.session() as session:
        before = build_report(session, alert_id)["summary"]
    db_file = rt.settings.sqlite_path()
    assert db_file is not None
    rt.close()
    env = {**os.environ, "ALN_DATABASE_URL": sqlite_url, "ALN_POST": "mexico-city",
           "ALN_SECRET_KEY": "test-secret-key-not-for-production"}
    done = subprocess.run([sys.executable, "-m", "dispatcher.cli.main", "roster", "erase",
                           NAME, "--yes"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "erased volunteer" in done.stdout
    assert_no_trace(file_bytes(db_file))
    assert list((tmp_path / "aln.db.spool").glob("*.req")) == []
    rt = Runtime.open(rt.settings)
    try:
        with rt.db.session() as session:
            after = build_report(session, alert_id)["summary"]
            assert after["acknowledged"] == before["acknowledged"] == 1
            assert after["recipients"] == before["recipients"]
            erased = session.scalars(select(AuditEvent).where(
                AuditEvent.action == "volunteer.erased")).one()
            vol = session.get(Volunteer, erased.details["volunteer_id"])
            assert vol is not None and vol.name == erased.details["pseudonym"]
            kinds = set(session.scalars(select(Response.kind)
                                        .where(Response.volunteer_id == vol.id)))
            assert {"ack", "help"} <= kinds  # figures kept, text gone
    finally:
        rt.close()


def test_erase_removes_the_volunteer_from_every_table(rt: Runtime) -> None:
    ana_everywhere(rt)
    with rt.db.session() as session:
        vid = session.scalars(select(Volunteer.id).where(Volunteer.name == NAME)).one()
    result = erase_volunteer(rt, vid)
    # SMS, WhatsApp and email (the sample roster gives Ana all three).
    assert result.contacts == 3 and result.inbound >= 4 and result.audit_rows_quoting == 0
    with rt.db.session() as session:
        assert session.scalars(select(Membership).where(Membership.volunteer_id == vid)).all() \
            == []
        contacts = session.scalars(select(Contact).where(Contact.volunteer_id == vid)).all()
        assert {c.masked for c in contacts} == {"(erased)"}
        assert all(rt.vault.decrypt(c.value_enc) == "" for c in contacts)
        texts = " ".join(session.scalars(select(Response.text)))
        assert NAME.lower() not in texts.lower() and "airport" in texts  # stranger's report
        raws = [rt.vault.decrypt(r) for r in session.scalars(select(InboundMessage.raw_enc))
                if r]
        assert not any(t in raw for raw in raws for t in TRACES)
        assert not any(ANA in (m or "") for m in session.scalars(select(Delivery.error_message)))
    sms(rt, "SM9", "YES")  # her old number is a stranger now
    with rt.db.session() as session:
        last = session.scalars(select(Response).order_by(Response.id.desc())).first()
        assert last is not None and last.volunteer_id is None


def test_erase_unknown_name_changes_nothing(rt: Runtime, cli_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "dispatcher.cli.main", "roster", "erase",
                           "Ana Moralez", "--yes"], env={**os.environ, **cli_env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no volunteer named 'Ana Moralez'" in done.stderr
    assert "Traceback" not in done.stderr
    with rt.db.session() as session:
        assert session.scalars(select(Volunteer).where(Volunteer.name == NAME)).one()
        assert not session.scalars(select(AuditEvent).where(
            AuditEvent.action == "volunteer.erased")).all()


def test_retention_erases_ended_terms_and_old_texts(rt: Runtime) -> None:
    ana_everywhere(rt)
    with rt.db.session() as session:
        now = db_now(session)
        vid = session.scalars(select(Volunteer.id).where(Volunteer.name == NAME)).one()
        # The post's date, as retention reads it (between midnight UTC and midnight in
        # Mexico City the UTC date is a day ahead).
        post = session.scalars(select(Post)).one()
        today = db_today(session, post.timezone)
        session.execute(update(Membership).where(Membership.volunteer_id == vid)
                        .values(term_end=today - timedelta(days=31)))
        session.execute(update(InboundMessage).values(received_at=now - timedelta(days=31)))
        session.execute(update(Response).values(created_at=now - timedelta(days=31)))
    sms(rt, "SM-new", "fresh report", sender=STRANGER)
    result = apply_retention(rt, 30)
    assert f"erased volunteer {vid}" in result.volunteers
    with rt.db.session() as session:
        assert session.get(Volunteer, vid).name == f"erased volunteer {vid}"  # type: ignore
        kept = [r for r in session.scalars(select(InboundMessage)) if r.raw_enc]
        assert [r.dedupe_key for r in kept] == ["SM-new"]
        assert set(session.scalars(select(Response.text))) == {"", "fresh report"}
        others = session.scalars(select(Volunteer).where(Volunteer.name == "Brian Keller"))
        assert others.one()  # a term that ended 1 day ago or runs on is kept
        runs = session.scalars(select(AuditEvent.action).where(
            AuditEvent.action.in_(["retention.applied", "volunteer.erased"]))).all()
        assert sorted(runs) == ["retention.applied"] + ["volunteer.erased"] * len(
            result.volunteers)
    assert run_if_due(rt) is None  # ran today already: the worker waits a day


def test_worker_runs_retention_daily(rt: Runtime) -> None:
    from dispatcher.worker import Worker

    worker = Worker(rt, name="w-retention")
    rt.settings.retention_days = 0  # the job the scheduler starts at once does nothing
    worker._start_scheduler()
    try:
        assert worker.scheduler is not None and worker.scheduler.get_job("retention")
    finally:
        assert worker.scheduler is not None
        worker.scheduler.shutdown(wait=True)
    rt.settings.retention_days = 30
    worker.retention()
    with rt.db.session() as session:
        assert session.scalars(select(AuditEvent).where(
            AuditEvent.action == "retention.applied")).one().details["days"] == 30
    assert run_if_due(rt) is None  # a day has not passed
    rt.settings.retention_days = 0
    assert run_if_due(rt) is None


def test_spooled_request_is_private(tmp_path: Path) -> None:
    from dispatcher.crypto import Vault

    Spool(tmp_path / "spool", Vault.from_secret(b"k")).put(sms_batch, {"From": ANA})
    (path,) = (tmp_path / "spool").glob("*.req")
    assert path.stat().st_mode & 0o777 == 0o600
