"""Security headers, and pages that keep to their own policy: no inline script or style."""

from __future__ import annotations

import re
from typing import Any

from tests.web.conftest import bearer, login


def _pages(client: Any, tokens: dict[str, str]) -> dict[str, Any]:
    alert_id = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"},
                           headers=bearer(tokens["officer"])).json()["id"]
    pages = {"/login": client.get("/login"), "/ack/nope": client.get("/ack/nope")}
    login(client)
    for path in ("/", f"/alerts/{alert_id}", "/inbox", "/audit"):
        pages[path] = client.get(path)
    pages["/api/alerts"] = client.get("/api/alerts")
    pages["/static/board.js"] = client.get("/static/board.js")
    return pages


def test_every_answer_forbids_framing_sniffing_referrers_and_inline_script(
        app_rt: Any) -> None:
    _, client, tokens = app_rt
    for path, r in _pages(client, tokens).items():
        csp = r.headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "same-origin", path


def test_dashboard_pages_carry_no_inline_script_or_style(app_rt: Any) -> None:
    _, client, tokens = app_rt
    for path, r in _pages(client, tokens).items():
        if not r.headers.get("content-type", "").startswith("text/html"):
            continue
        for tag in re.findall(r"<script[^>]*>", r.text):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert "<style" not in r.text and " style=" not in r.text, path


def test_the_report_allows_its_inline_styles_but_no_script(app_rt: Any) -> None:
    _, client, tokens = app_rt
    h = bearer(tokens["officer"])
    alert_id = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"},
                           headers=h).json()["id"]
    r = client.get(f"/api/reports/{alert_id}?format=html", headers=h)
    csp = r.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "<script" not in r.text
