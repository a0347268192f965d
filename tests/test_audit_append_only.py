"""The audit log is append-only in the database itself (migration 0003), on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from dispatcher import audit
from dispatcher.models import AuditEvent
from dispatcher.runtime import Runtime


def _rows(rt: Runtime) -> list[tuple[str, str]]:
    with rt.db.session() as session:
        return [tuple(r) for r in session.execute(
            select(AuditEvent.actor, AuditEvent.action).order_by(AuditEvent.id))]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor = 'someone else'",
    "DELETE FROM audit_log",
    "DELETE FROM audit_log WHERE id = -1",  # even one matching nothing (PostgreSQL: per statement)
])
def test_update_and_delete_on_the_audit_log_fail_in_the_database(rt: Runtime,
                                                                 statement: str) -> None:
    with rt.db.session() as session:
        audit.record(session, "cli", "alert.sent", alert_id=None, zones=["Chiapas"])
    before = _rows(rt)
    if "id = -1" in statement and rt.db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite triggers are per row: a statement touching no row changes nothing")
    with pytest.raises(DBAPIError, match="audit_log is append-only"), \
            rt.db.engine.begin() as conn:
        conn.execute(text(statement))
    assert _rows(rt) == before


def test_truncating_the_audit_log_fails_on_postgresql(rt: Runtime) -> None:
    if rt.db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE")
    with rt.db.session() as session:
        audit.record(session, "cli", "alert.sent")
    with pytest.raises(DBAPIError, match="audit_log is append-only"), \
            rt.db.engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))
    with rt.db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1


def test_appending_to_the_audit_log_still_works(rt: Runtime) -> None:
    with rt.db.session() as session:
        audit.record(session, "cli", "one")
        with audit.batched(session):
            audit.record(session, "cli", "two")
            audit.record(session, "cli", "three")
    assert [a for _, a in _rows(rt)] == ["one", "two", "three"]
