"""Migrations from an empty database, on SQLite and PostgreSQL; the embedded secret key."""

from __future__ import annotations

import sqlite3
import stat
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from dispatcher.db import Database, db_now, db_today, needs_migration
from dispatcher.models import Base
from dispatcher.settings import Settings
from tests.conftest import CONFIG_DIR, clock_shift_days, make_settings
from tests.helpers import returns_within, write_held_open


def test_first_use_creates_every_table(settings: Settings) -> None:
    db = Database(settings)
    tables = set(inspect(db.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert not needs_migration(db.engine)
    db.dispose()
    again = Database(settings)  # a second open migrates nothing and keeps working
    assert not needs_migration(again.engine)
    again.dispose()


def test_embedded_secret_key_file_is_private_and_stable(tmp_path: Path) -> None:
    s = Settings(database_url=f"sqlite:///{tmp_path / 'aln.db'}", config_dir=CONFIG_DIR)
    key = s.secret
    key_file = tmp_path / ".aln-secret-key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = Settings(database_url=f"sqlite:///{tmp_path / 'aln.db'}", config_dir=CONFIG_DIR)
    assert again.secret == key


def test_sqlite_clock_is_the_machine_clock_a_test_can_move(sqlite_url: str) -> None:
    db = Database(make_settings(sqlite_url))
    with time_machine.travel(datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC), tick=False), \
            db.session() as session:
        assert db_now(session) == datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    db.dispose()


@pytest.mark.parametrize(("utc", "timezone", "today"), [
    # 03:00 UTC on the 15th is still the evening of the 14th in Mexico City.
    (datetime(2027, 1, 15, 3, 0, tzinfo=UTC), "America/Mexico_City", date(2027, 1, 14)),
    (datetime(2027, 1, 15, 3, 0, tzinfo=UTC), "Asia/Almaty", date(2027, 1, 15)),
    (datetime(2027, 1, 15, 3, 0, tzinfo=UTC), "UTC", date(2027, 1, 15)),
    (datetime(2027, 1, 15, 3, 0, tzinfo=UTC), "Not/AZone", date(2027, 1, 15)),
])
def test_today_is_the_database_clocks_in_the_posts_time_zone(
        sqlite_url: str, utc: datetime, timezone: str, today: date) -> None:
    db = Database(make_settings(sqlite_url))
    with time_machine.travel(utc, tick=False), db.session() as session:
        assert db_today(session, timezone) == today
    db.dispose()


def test_the_clock_shift_of_the_session_is_in_effect() -> None:
    """`make test-future` moves Python's clocks (ALN_TEST_CLOCK_SHIFT_DAYS); SQLite's C code
    still reads the machine's real clock, which makes the shift measurable here."""
    with sqlite3.connect(":memory:") as conn:
        real = int(conn.execute("SELECT strftime('%s', 'now')").fetchone()[0])
    shift = (datetime.now(UTC).timestamp() - real) / 86_400
    assert abs(shift - clock_shift_days()) < 0.01


def test_sqlite_database_wal_and_shm_are_created_private(tmp_path: Path) -> None:
    import os

    old_umask = os.umask(0o022)
    try:
        db = Database(make_settings(f"sqlite:///{tmp_path / 'aln.db'}"))
        with db.session() as session:  # a write: the WAL and SHM exist from here
            session.execute(text("CREATE TABLE t (x INTEGER)"))
            session.execute(text("INSERT INTO t VALUES (1)"))
        files = [tmp_path / n for n in ("aln.db", "aln.db-wal", "aln.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == \
            {f.name: 0o600 for f in files}
        db.dispose()
    finally:
        os.umask(old_umask)


def test_an_existing_readable_database_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "aln.db"
    Database(make_settings(f"sqlite:///{path}")).dispose()
    path.chmod(0o644)
    Database(make_settings(f"sqlite:///{path}")).dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.postgres
def test_a_transaction_that_loses_a_deadlock_is_run_again(postgres_url: str) -> None:
    """PostgreSQL rolls back one side of a deadlock (the fuzzer met one between an
    officer's cancel and the worker): `Database.run` runs that side again."""
    import threading

    db = Database(make_settings(postgres_url))
    with db.session() as s:
        s.execute(text("CREATE TABLE pair (id int PRIMARY KEY, n int)"))
        s.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
    both_locked = threading.Barrier(2, timeout=10)
    runs: list[int] = []

    def other_side() -> None:
        with db.session() as s:
            s.execute(text("SET LOCAL deadlock_timeout = '5s'"))  # so `run`'s side loses
            s.execute(text("UPDATE pair SET n = n + 1 WHERE id = 1"))
            both_locked.wait()
            s.execute(text("UPDATE pair SET n = n + 1 WHERE id = 2"))

    def work(s: Any) -> str:
        runs.append(1)
        s.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
        s.execute(text("UPDATE pair SET n = n + 10 WHERE id = 2"))
        if len(runs) == 1:
            both_locked.wait()
        s.execute(text("UPDATE pair SET n = n + 10 WHERE id = 1"))
        return "done"

    thread = threading.Thread(target=other_side)
    thread.start()
    assert db.run(work) == "done"
    thread.join(10)
    assert len(runs) == 2
    with db.session() as s:
        assert s.execute(text("SELECT n FROM pair ORDER BY id")).scalars().all() == [11, 11]
    db.dispose()


def test_a_reading_session_reads_committed_rows_beside_an_open_writer(
        database_url: str) -> None:
    """`Database.reading` neither waits for a writer of this process (SQLite's writers queue
    on a lock and BEGIN IMMEDIATE) nor sees its uncommitted rows: a fill reads the next
    zone while another thread writes the current one."""
    db = Database(make_settings(database_url))
    with db.session() as s:
        s.execute(text("CREATE TABLE pair (id int PRIMARY KEY, n int)"))
        s.execute(text("INSERT INTO pair VALUES (1, 0)"))
    with write_held_open(db, text("UPDATE pair SET n = 5 WHERE id = 1")):
        read = returns_within(5, lambda: _read_n(db))
        assert read == [0], "the reading session waited for the writer, or saw its rows"
    assert _read_n(db) == 5
    db.dispose()


def _read_n(db: Database) -> int:
    with db.reading() as s:
        return int(s.execute(text("SELECT n FROM pair WHERE id = 1")).scalar_one())


def test_a_reading_session_refuses_writes_and_leaves_its_connection_writable(
        database_url: str) -> None:
    db = Database(make_settings(database_url))
    with db.session() as s:
        s.execute(text("CREATE TABLE pair (id int PRIMARY KEY, n int)"))
        s.execute(text("INSERT INTO pair VALUES (1, 0)"))
    with pytest.raises(DBAPIError, match="(?i)read.?only"), db.reading() as s:
        s.execute(text("UPDATE pair SET n = 1 WHERE id = 1"))
    # The pool hands the same connection to the next session, which may write.
    for n in (2, 3):
        with db.session() as s:
            s.execute(text("UPDATE pair SET n = :n WHERE id = 1"), {"n": n})
        assert _read_n(db) == n
    db.dispose()


@pytest.mark.postgres
def test_a_reading_session_sees_one_snapshot_on_postgresql(postgres_url: str) -> None:
    """A wave read in two statements must not mix two states of the roster."""
    db = Database(make_settings(postgres_url))
    with db.session() as s:
        s.execute(text("CREATE TABLE pair (id int PRIMARY KEY, n int)"))
        s.execute(text("INSERT INTO pair VALUES (1, 0)"))
    with db.reading() as r:
        assert r.execute(text("SELECT n FROM pair")).scalar_one() == 0
        with db.session() as s:
            s.execute(text("UPDATE pair SET n = 7 WHERE id = 1"))
        assert r.execute(text("SELECT n FROM pair")).scalar_one() == 0
    assert _read_n(db) == 7
    db.dispose()


def test_a_connection_a_reading_session_used_takes_writes_without_a_begin(
        sqlite_url: str) -> None:
    """Back in the pool, a reader's connection writes again even for a caller that skips
    the engine's BEGIN (the retention's VACUUM takes a raw connection)."""
    from dispatcher.privacy.erasure import compact_database

    db = Database(make_settings(sqlite_url))
    with db.session() as s:
        s.execute(text("CREATE TABLE pair (id int PRIMARY KEY, n int)"))
    with db.reading() as s:
        s.execute(text("SELECT count(*) FROM pair")).scalar_one()
    raw = db.engine.raw_connection()
    try:
        raw.cursor().execute("INSERT INTO pair VALUES (1, 1)")
        raw.commit()
    finally:
        raw.close()
    with db.reading() as s:
        s.execute(text("SELECT count(*) FROM pair")).scalar_one()
    assert compact_database(db.engine)
    assert _read_n(db) == 1
    db.dispose()
