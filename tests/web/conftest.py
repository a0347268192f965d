"""The officer app on a fresh database with the sample roster and one officer per role."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dispatcher import heap
from dispatcher.models import Officer
from dispatcher.web.app import create_app
from dispatcher.web.auth import add_officer, hash_password
from tests.conftest import rt_with_roster

PASSWORD = "correct horse battery"


@pytest.fixture
def app_rt(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    rt = rt_with_roster(database_url)
    with rt.db.session() as s:
        tokens = {role: add_officer(s, f"{role}-officer", role)
                  for role in ("admin", "officer", "viewer")}
        s.scalars(select(Officer).where(Officer.name == "officer-officer")).one() \
            .password_hash = hash_password(PASSWORD)
    # As a server runs it: started, and shut down (boards closed, their looks waited for)
    # before the database is closed. But the heap is not settled: frozen in the test
    # process, every later test's garbage would be collected by the order tests ran in.
    monkeypatch.setattr(heap, "settle_heap", lambda: None)
    with TestClient(create_app(rt, run_worker=False)) as client:
        yield rt, client, tokens
    rt.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login_form(client: TestClient, name: str, password: str) -> dict[str, str]:
    """The login form as the login page gives it (with its CSRF token), filled in."""
    page = client.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    return {"name": name, "password": password, "csrf": token}


def login(client: TestClient, name: str = "officer-officer",
          password: str = PASSWORD) -> str:
    r = client.post("/login", data=login_form(client, name, password),
                    follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/").text
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
