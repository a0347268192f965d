"""Bad input to the officer API and dashboard: a clear 4xx naming what is wrong, never a 500."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from dispatcher.models import Alert
from dispatcher.web.limits import MAX_REQUEST_BYTES
from tests.web.conftest import bearer, login

HUGE_ID = "99999999999999999999999"


def _no_alert(rt: Any) -> None:
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0


def test_ids_beyond_the_database_integer_are_422_not_500(app_rt: Any) -> None:
    _, client, tokens = app_rt
    h = bearer(tokens["officer"])
    for method, path in [("GET", f"/api/alerts/{HUGE_ID}"),
                         ("POST", f"/api/alerts/{HUGE_ID}/cancel"),
                         ("GET", f"/api/reports/{2**31}"),
                         ("POST", f"/api/inbox/{HUGE_ID}/handled"),
                         ("GET", "/api/alerts/0")]:
        r = client.request(method, path, headers=h)
        assert r.status_code == 422, (method, path, r.status_code)
    assert client.get(f"/api/alerts/{2**31 - 1}", headers=h).status_code == 404
    login(client)
    assert client.get(f"/alerts/{HUGE_ID}").status_code == 422


def test_an_ack_window_beyond_seven_days_is_a_clear_error(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    for window in ("999999999h", "169h", "9" * 5000 + "s"):
        r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x",
                                              "ack_window": window[:32]}, headers=h)
        assert r.status_code == 422, (window[:20], r.status_code, r.text[:200])
    r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x",
                                          "ack_window": "999999999h"}, headers=h)
    assert "longer than the longest allowed, 7 days" in r.json()["detail"]
    assert client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x", "dry_run": True,
                                             "ack_window": "168h"}, headers=h).status_code == 200
    _no_alert(rt)


def test_oversized_fields_are_422_naming_the_field(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    big = "x" * 130_000
    for field, value in [("body", big), ("zones", [big]), ("title", big), ("policy", big)]:
        r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x", field: value},
                        headers=h)
        assert r.status_code == 422, (field, r.status_code)
        assert field in str(r.json()["errors"][0]["loc"]) and field in r.json()["detail"]
    _no_alert(rt)


def test_a_body_over_the_cap_is_413_and_changes_nothing(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    r = client.post("/api/alerts", content=b"{" + b" " * (3 * MAX_REQUEST_BYTES) + b"}",
                    headers={**bearer(tokens["officer"]), "Content-Type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]
    _no_alert(rt)


def test_dashboard_compose_with_an_oversized_body_shows_the_error(app_rt: Any) -> None:
    rt, client, _ = app_rt
    csrf = login(client)
    r = client.post("/compose", data={"zones": ["Oaxaca"], "body": "x" * 20_000, "csrf": csrf,
                                      "template": "security", "action": "send"})
    assert r.status_code == 200 and "body: String should have at most" in r.text
    _no_alert(rt)


def test_every_id_and_limit_the_schema_names_is_bounded(app_rt: Any) -> None:
    """Derived from the served schema, so a new route's ids are covered: out of range is a
    422 problem naming the parameter, and nothing reaches the database as an overflow."""
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    schema = client.get("/api/openapi.json", headers=h).json()
    checked = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            params = {p["name"]: p for p in op.get("parameters", [])}
            for name, param in params.items():
                if param["in"] == "path" or name == "limit":
                    for bad in (0, -1, 2**31, 595092960002929869193216):
                        url = path.replace("{" + name + "}", str(bad)) if param["in"] == \
                            "path" else f"{path}?{name}={bad}"
                        url = url.replace("{alert_id}", "1").replace("{response_id}", "1")
                        r = client.request(method, url, headers=h)
                        assert r.status_code == 422, (method, url, r.status_code)
                        assert name in r.json()["detail"], (method, url, r.text)
                        checked += 1
    assert checked >= 4 * 10  # six ids in paths, four limits
    r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x", "draft_id": 2**31},
                    headers=h)
    assert r.status_code == 422 and "draft_id" in r.json()["detail"]
    _no_alert(rt)


def test_a_nul_character_in_any_text_is_422_not_500(app_rt: Any) -> None:
    """PostgreSQL cannot store NUL: found by the fuzzer as a 500 on an update's body."""
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    alert_id = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"},
                           headers=h).json()["id"]
    for field in ("body", "title", "template", "policy", "zones"):
        value = ["Oax\x00aca"] if field == "zones" else "a\x00b"
        r = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x", field: value},
                        headers=h)
        assert r.status_code == 422 and field in r.json()["detail"], (field, r.text)
    r = client.post(f"/api/alerts/{alert_id}/update", json={"body": "a\x00b"}, headers=h)
    assert r.status_code == 422 and "body" in r.json()["detail"], r.text
    r = client.get("/api/roster", params={"zone": "Oax\x00aca"}, headers=h)
    assert r.status_code == 422 and "zone" in r.json()["detail"], r.text
    assert client.get(f"/api/alerts/{alert_id}", headers=h).json()["versions"][-1][
        "number"] == 1
