"""Dashboard login: what a hostile caller learns and can do with it."""

from __future__ import annotations

from typing import Any

import pytest

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
