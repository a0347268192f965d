"""Commits survive a power cut: SQLite syncs every commit (synchronous=FULL in WAL), and
PostgreSQL settings that would lose committed rows are reported at start-up."""

from __future__ import annotations

import logging

import pytest

from dispatcher.db import Database, durability_problems
from dispatcher.settings import Settings
from tests.conftest import make_settings


def test_every_sqlite_connection_syncs_each_commit(sqlite_url: str) -> None:
    db = Database(make_settings(sqlite_url))
    try:
        raws = [db.engine.raw_connection() for _ in range(2)]  # two pooled connections
        for raw in raws:
            cur = raw.cursor()
            assert cur.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert cur.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
            raw.close()
        assert durability_problems(db.engine) == []
    finally:
        db.dispose()


def test_a_durable_database_raises_no_warning(settings: Settings,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dispatcher.db"):
        Database(settings).dispose()
    assert "power cut" not in caplog.text


def test_postgres_without_synchronous_commit_is_reported(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = postgres_url + "%20-csynchronous_commit%3Doff"
    with caplog.at_level(logging.WARNING, logger="dispatcher.db"):
        db = Database(make_settings(url))
    try:
        problems = durability_problems(db.engine)
    finally:
        db.dispose()
    assert problems == ["PostgreSQL synchronous_commit=off "
                        "(local or remote_write or on or remote_apply is needed)"]
    assert "commits may not survive a power cut: PostgreSQL synchronous_commit=off" \
        in caplog.text
