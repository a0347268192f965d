"""Every API error is an RFC 9457 problem of the same shape, whatever raised it."""

from __future__ import annotations

from typing import Any

from dispatcher.web.limits import MAX_REQUEST_BYTES
from dispatcher.web.problems import PROBLEM_MEDIA_TYPE
from tests.web.conftest import bearer

PROBLEM_KEYS = {"type", "title", "status", "detail"}


def assert_problem(r: Any, status: int, kind: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"] == PROBLEM_MEDIA_TYPE, r.headers["content-type"]
    doc: dict[str, Any] = r.json()
    assert PROBLEM_KEYS <= set(doc), doc
    assert doc["status"] == status and doc["type"] == f"urn:aln:problem:{kind}", doc
    for word in words:
        assert word in doc["detail"], (word, doc)
    return doc


def test_every_kind_of_error_is_the_same_problem_shape(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    assert_problem(client.get("/api/alerts"), 401, "unauthenticated", "authentication")
    assert_problem(client.post("/api/alerts/1/cancel", headers=bearer(tokens["viewer"])),
                   403, "forbidden", "officer role")
    assert_problem(client.get("/api/alerts/999", headers=h), 404, "not-found", "999")
    assert_problem(client.post("/api/alerts", json={"zones": ["Oaxca"], "body": "x"},
                               headers=h), 422, "invalid-input", "did you mean 'Oaxaca'")
    doc = assert_problem(client.get("/api/alerts/0", headers=h), 422, "invalid-input",
                         "alert_id")
    assert doc["errors"][0]["loc"] == ["path", "alert_id"]
    assert_problem(client.post("/api/alerts", content=b"{" + b" " * (2 * MAX_REQUEST_BYTES),
                               headers={**h, "Content-Type": "application/json"}),
                   413, "too-large", "larger than")
    assert_problem(client.get("/api/nothing-here", headers=h), 404, "not-found", "no route")


def test_a_refusal_is_409(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    alert_id = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"},
                           headers=h).json()["id"]
    assert client.post(f"/api/alerts/{alert_id}/cancel", headers=h).status_code == 200
    assert_problem(client.post(f"/api/alerts/{alert_id}/cancel", headers=h), 409, "refused")


def test_a_405_allows_every_method_of_the_path(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    r = client.request("DELETE", "/api/alerts", headers=bearer(tokens["officer"]))
    assert_problem(r, 405, "method-not-allowed", "DELETE")
    assert r.headers["allow"] == "GET, POST", r.headers["allow"]
