"""Dashboard login: what a hostile caller learns and can do with it."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from channels.simulator.serving import ServerThread
from dispatcher.models import Alert, AuditEvent, Response
from dispatcher.web import auth
from dispatcher.web.throttle import LOGIN_ATTEMPTS, LoginThrottle, parse_trusted_proxies
from tests.web.conftest import PASSWORD, bearer, login, login_form


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
        r = client.post("/login", data=login_form(client, name, "wrong password"))
        assert r.status_code == 401
        assert hashes == ["wrong password"], name  # unknown, wrong password, no password


def test_a_failed_login_is_an_anonymous_event_with_the_name_clipped(app_rt: Any) -> None:
    rt, client, _ = app_rt
    for claimed in ("officer:Jane Doe", "x" * 500_000):
        assert client.post("/login", data=login_form(client, claimed, "p")).status_code == 401
    with rt.db.session() as s:
        events = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "officer.login_failed").order_by(AuditEvent.id)).all()
        assert [e.actor for e in events] == ["anonymous", "anonymous"]
        assert events[0].details["name"] == "officer:Jane Doe"
        assert len(events[1].details["name"]) <= 65
        assert not s.scalar(select(AuditEvent).where(AuditEvent.actor.like("%Jane%")))


def _client_at(client: TestClient, address: str) -> TestClient:
    return TestClient(client.app, client=(address, 40000))


def test_failures_from_elsewhere_do_not_lock_the_officer_out(app_rt: Any) -> None:
    _, client, _ = app_rt
    attacker = _client_at(client, "203.0.113.66")
    for i in range(LOGIN_ATTEMPTS + 3):
        r = attacker.post("/login", data=login_form(attacker, "officer-officer", "guess"),
                          headers={"X-Forwarded-For": f"198.51.100.{i}"})
        # X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
        assert r.status_code == (401 if i < LOGIN_ATTEMPTS else 429), i
    assert "Retry-After" in r.headers
    officer = _client_at(client, "192.0.2.7")
    r = officer.post("/login", data=login_form(officer, "officer-officer", PASSWORD),
                     follow_redirects=False)
    assert r.status_code == 303


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(app_rt: Any) -> None:
    rt, client, _ = app_rt
    proxy = _client_at(client, "10.0.0.2")
    proxy.post("/login", data=login_form(proxy, "x", "p"),
               headers={"X-Forwarded-For": "198.51.100.9"})
    client.app.state.trusted_proxies = parse_trusted_proxies("10.0.0.0/24")
    proxy.post("/login", data=login_form(proxy, "x", "p"),
               headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.9, 10.0.0.3"})
    with rt.db.session() as s:
        clients = [e.details["client"] for e in s.scalars(
            select(AuditEvent).where(AuditEvent.action == "officer.login_failed")
            .order_by(AuditEvent.id))]
    assert clients == ["10.0.0.2", "198.51.100.9"]


def test_thirty_guesses_at_once_get_five_password_checks(app_rt: Any,
                                                         hashes: list[str]) -> None:
    _, client, _ = app_rt
    auth._dummy_hash()
    with ServerThread(client.app) as server, ThreadPoolExecutor(30) as pool, \
            httpx.Client(base_url=server.url, timeout=60) as browser:
        form = login_form(browser, "officer-officer", "")  # type: ignore[arg-type]

        def guess(i: int) -> int:
            return browser.post("/login", data={**form, "password": f"guess {i}"}).status_code

        codes = Counter(pool.map(guess, range(30)))
    assert codes == {401: LOGIN_ATTEMPTS, 429: 30 - LOGIN_ATTEMPTS}
    assert len(hashes) == LOGIN_ATTEMPTS


def test_the_wait_doubles_with_each_failure_past_the_limit() -> None:
    now = [1000.0]
    throttle = LoginThrottle(attempts=2, lockout=60, max_lockout=600, clock=lambda: now[0])
    waits = []
    for _ in range(7):
        wait = throttle.reserve("192.0.2.1", "jane")
        if wait:
            waits.append(wait)
            now[0] += wait
            assert throttle.reserve("192.0.2.1", "jane") == 0
        throttle.settle("192.0.2.1", "jane", succeeded=False)
    assert waits == [60, 120, 240, 480, 600]
    assert throttle.reserve("192.0.2.2", "jane") == 0  # another source is not held up


def test_login_needs_its_form_token_and_our_origin(app_rt: Any) -> None:
    rt, client, _ = app_rt
    assert client.post("/login", data={"name": "officer-officer", "password": PASSWORD}
                       ).status_code == 403  # a form posted from a page elsewhere
    form = login_form(client, "officer-officer", PASSWORD)
    assert client.post("/login", data={**form, "csrf": "forged"}).status_code == 403
    r = client.post("/login", data=form, headers={"Origin": "https://evil.example"},
                    follow_redirects=False)
    assert r.status_code == 403 and "aln_session" not in r.cookies
    r = client.post("/login", data=form, headers={"Origin": "http://testserver"},
                    follow_redirects=False)
    assert r.status_code == 303


def test_the_api_changes_nothing_for_a_session_cookie(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    alert_id = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"},
                           headers=bearer(tokens["officer"])).json()["id"]
    with rt.db.session() as s:
        s.add(Response(kind="help", text="HELP", urgent=True))
    login(client)  # the browser now holds the dashboard's session cookie
    assert client.get("/api/alerts").status_code == 200  # reading (report, CSV links)
    for path in (f"/api/alerts/{alert_id}/cancel", "/api/inbox/1/handled"):
        r = client.post(path)
        assert r.status_code == 403 and "bearer" in r.json()["detail"], path
    r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"})
    assert r.status_code == 403
    with rt.db.session() as s:
        assert s.get(Alert, alert_id).state != "cancelled"  # type: ignore[union-attr]
        assert s.scalars(select(Response)).one().handled_at is None
        assert s.scalar(select(func.count()).select_from(Alert)) == 1
