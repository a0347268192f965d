"""Readiness: can this process write to its database right now, and is nothing waiting
on disk to be replayed?

`/healthz` only says the process is alive. `/readyz` tries a real write (one row of
`health_probes`, committed) with a short time-out of its own, not the 30 s the engine
waits for SQLite's write lock, so a load balancer or a supervisor learns within a
second or two that the database is locked by another process, read-only, full or down.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from sqlalchemy import text

from dispatcher.runtime import Runtime

#: How long the readiness write may wait for the database, in seconds.
READY_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str


def check_ready(rt: Runtime, spool_waiting: int = 0) -> Readiness:
    """A committed write within `READY_TIMEOUT_SECONDS`, and an empty spool."""
    try:
        if rt.settings.is_sqlite:
            _sqlite_write(rt)
        else:
            _postgres_write(rt)
    except Exception as exc:  # any failure to write is "not ready", with its reason
        return Readiness(False, f"database not writable: {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")
    if spool_waiting:
        return Readiness(False, f"{spool_waiting} webhook(s) kept on disk wait to be replayed")
    return Readiness(True, "ok")


_UPSERT = ("INSERT INTO health_probes (id, checked_at) VALUES (1, CURRENT_TIMESTAMP) "
           "ON CONFLICT (id) DO UPDATE SET checked_at = CURRENT_TIMESTAMP")


def _sqlite_write(rt: Runtime) -> None:
    path = rt.settings.sqlite_path()
    if path is None:
        return
    # A connection of its own: the engine's pool waits 30 s for the write lock.
    conn = sqlite3.connect(path, timeout=READY_TIMEOUT_SECONDS, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_UPSERT)
        conn.execute("COMMIT")
    finally:
        conn.close()


def _postgres_write(rt: Runtime) -> None:
    ms = int(READY_TIMEOUT_SECONDS * 1000)
    with rt.db.engine.connect() as conn:
        conn.execute(text(f"SET LOCAL lock_timeout = {ms}"))
        conn.execute(text(f"SET LOCAL statement_timeout = {2 * ms}"))
        conn.execute(text(_UPSERT))
        conn.commit()
