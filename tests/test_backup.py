"""`aln db backup` during a fan-out restores whole into a fresh directory; `aln db restore`
will not overwrite a database in use."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatcher.models import Alert, Contact, Recipient
from dispatcher.replies.inbound import receive_sms
from dispatcher.runtime import Runtime
from tests.bench.fixtures import bulk_roster
from tests.conftest import make_settings
from tests.engine import cli_env, sms_requests
from tests.helpers import wait_until
from tests.integration.test_alert_path import ANA
from tests.reliability.test_kill_fanout import ALN

SECRET = "integration-backup-secret"


def aln(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([ALN, *args], env=env, capture_output=True, text=True, timeout=120)
    # Rich wraps long lines to the terminal's width: compare words, not line breaks.
    done.stderr = " ".join(done.stderr.split())
    return done


def test_a_backup_taken_during_a_fan_out_restores_whole(engine_factory: Any,
                                                        tmp_path: Path) -> None:
    engine = engine_factory(secret_key=SECRET, send_concurrency=5, start=False)
    first = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=3600)
    receive_sms(engine.rt.db, engine.rt.settings, engine.rt.vault,
                {"MessageSid": "SM" + "5" * 32, "From": ANA, "To": "+15005550006",
                 "Body": f"YES {engine.code(first)}"})
    assert engine.zone(first, "Chiapas")["state"] == "acknowledged"
    bulk_roster(engine.rt, 400, zones=1)
    engine.sim.set_faults(latency_ms=50)
    second = engine.send(["Chiapas"], channels=["sms"], ack_window_seconds=3600, fan_out=False)
    done = threading.Event()
    threading.Thread(target=lambda: (asyncio.run(engine.fan_out(second)), done.set()),
                     daemon=True).start()
    wait_until(lambda: len(sms_requests(engine.sim)) >= 30, timeout=30, what="fan-out under way")
    env = cli_env(engine.rt.settings.database_url, engine.sim, SECRET)
    copy = tmp_path / "backups" / "aln-backup.db"
    made = aln(env, "db", "backup", str(copy))
    assert made.returncode == 0, made.stderr
    assert not done.is_set(), "the fan-out ended before the backup: nothing was tested"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    done.wait(60)

    fresh = tmp_path / "fresh" / "aln.db"
    restored = aln({**env, "ALN_DATABASE_URL": f"sqlite:///{fresh}"}, "db", "restore",
                   str(copy))
    assert restored.returncode == 0, restored.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    rt = Runtime.open(make_settings(f"sqlite:///{fresh}", secret_key=SECRET))
    try:
        with rt.db.session() as s:
            assert s.scalar(select(func.count()).select_from(Alert)) == 2
            ana = s.scalars(select(Recipient).where(Recipient.alert_id == first)).one()
            assert ana.state == "acknowledged" and ana.acknowledged_at is not None
            contacts = s.scalars(select(Contact)).all()
            assert len(contacts) > 300
            assert ANA in {rt.vault.decrypt(c.value_enc) for c in contacts}
    finally:
        rt.close()


def test_restore_refuses_to_overwrite_a_database_without_force(engine_factory: Any,
                                                               tmp_path: Path) -> None:
    engine = engine_factory(secret_key=SECRET, start=False)
    env = cli_env(engine.rt.settings.database_url, engine.sim, SECRET)
    copy = tmp_path / "copy.db"
    assert aln(env, "db", "backup", str(copy)).returncode == 0
    refused = aln(env, "db", "restore", str(copy))
    assert refused.returncode == 2 and "--force" in refused.stderr
    again = aln(env, "db", "backup", str(copy))
    assert again.returncode == 2 and "exists" in again.stderr


def test_restore_refuses_a_database_in_use_by_a_live_worker(engine_factory: Any,
                                                            tmp_path: Path) -> None:
    engine = engine_factory(secret_key=SECRET)  # aln serve's worker holds a lease
    env = cli_env(engine.rt.settings.database_url, engine.sim, SECRET)
    copy = tmp_path / "copy.db"
    assert aln(env, "db", "backup", str(copy)).returncode == 0
    refused = aln(env, "db", "restore", str(copy))
    assert refused.returncode == 2 and "in use by a worker" in refused.stderr


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, sqlite_url: str) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    env = {"ALN_DATABASE_URL": sqlite_url, "ALN_SECRET_KEY": SECRET, "PATH": "/usr/bin"}
    refused = aln(env, "db", "restore", str(junk))
    assert refused.returncode == 2 and "not a SQLite database" in refused.stderr


def test_backup_on_postgresql_says_how_instead(postgres_url: str, tmp_path: Path) -> None:
    env = {"ALN_DATABASE_URL": postgres_url, "ALN_SECRET_KEY": SECRET, "PATH": "/usr/bin"}
    said = aln(env, "db", "backup", str(tmp_path / "x.db"))
    assert said.returncode == 2 and "pg_dump" in said.stdout + said.stderr


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
