"""Dashboard login: what a hostile caller learns and can do with it."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from dispatcher.models import AuditEvent
from dispatcher.web import auth


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts the password hashes computed (a spy: the real scrypt still runs)."""
    calls: list[str] = []
    real = auth._derive

    def spy(password: str, salt: bytes) -> bytes:
        calls.append(password)
        return real(password, salt)

    monkeypatch.setattr(auth, "_derive", spy)
    return calls


def test_login_hashes_once_whether_or_not_the_name_exists(app_rt: Any,
                                                          hashes: list[str]) -> None:
    _, client, _ = app_rt
    auth._dummy_hash()  # made once per process, outside the logins compared
    for name in ("nobody-by-this-name", "officer-officer", "viewer-officer"):
        hashes.clear()
        r = client.post("/login", data={"name": name, "password": "wrong password"})
        assert r.status_code == 401
        assert hashes == ["wrong password"], name  # unknown, wrong password, no password


def test_a_failed_login_is_an_anonymous_event_with_the_name_clipped(app_rt: Any) -> None:
    rt, client, _ = app_rt
    for claimed in ("officer:Jane Doe", "x" * 500_000):
        assert client.post("/login", data={"name": claimed, "password": "p"}).status_code == 401
    with rt.db.session() as s:
        events = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "officer.login_failed").order_by(AuditEvent.id)).all()
        assert [e.actor for e in events] == ["anonymous", "anonymous"]
        assert events[0].details["name"] == "officer:Jane Doe"
        assert len(events[1].details["name"]) <= 65
        assert not s.scalar(select(AuditEvent).where(AuditEvent.actor.like("%Jane%")))
