"""Officer API and dashboard: every route refuses anonymous callers; roles; CSRF; login."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import func, select

from dispatcher.models import Alert, AuditEvent, Response
from tests.conftest import CONFIG_DIR
from tests.web.conftest import bearer, login, login_form

#: Routes anybody may call: providers sign theirs, volunteers hold a signed token; probes
#: and /metrics (guarded by ALN_METRICS_TOKEN when set) carry no personal data.
PUBLIC = re.compile(r"^/(webhooks/|healthz$|readyz$|metrics$|login$|ack/)")


def all_routes(routes: Any) -> Any:
    """Every APIRoute, through FastAPI's included-router wrappers."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from all_routes(route.original_router.routes)
        elif isinstance(route, APIRoute):
            yield route


def test_every_route_refuses_anonymous_callers(app_rt: Any) -> None:
    rt, client, _ = app_rt
    routes = list(all_routes(client.app.routes))
    assert len(routes) >= 20
    checked = 0
    for route in routes:
        if PUBLIC.match(route.path):
            continue
        path = re.sub(r"\{[^}]+\}", "1", route.path)
        for method in route.methods - {"HEAD"}:
            r = client.request(method, path, follow_redirects=False)
            if path.startswith("/api/"):
                assert r.status_code == 401, (method, path, r.status_code)
            else:
                assert r.status_code in (303, 401, 403), (method, path, r.status_code)
                if r.status_code == 303:
                    assert r.headers["location"] == "/login"
            checked += 1
    assert checked >= 18
    # Nothing changed: no alert was created by any of those calls.
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0


def test_a_viewer_can_read_but_not_send_or_cancel(app_rt: Any) -> None:
    _, client, tokens = app_rt
    body = {"zones": ["Oaxaca"], "body": "Test", "dry_run": True}
    assert client.post("/api/alerts", json=body,
                       headers=bearer(tokens["viewer"])).status_code == 403
    assert client.post("/api/alerts/1/cancel", headers=bearer(tokens["viewer"])).status_code \
        == 403
    assert client.get("/api/alerts", headers=bearer(tokens["viewer"])).status_code == 200
    assert client.get("/api/openapi.json", headers=bearer(tokens["viewer"])).json()["paths"]


def test_api_send_status_cancel_inbox_audit(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    preview = client.post("/api/alerts", json={"zones": ["oaxaca"], "body": "x",
                                                "dry_run": True}, headers=h).json()
    assert preview["dry_run"] and preview["zones"][0]["recipients"][0]["name"] == \
        "Victor Castillo"
    sent = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x",
                                             "exercise": True, "ack_window": "5m"}, headers=h)
    assert sent.status_code == 200, sent.text
    alert_id = sent.json()["id"]
    status = client.get(f"/api/alerts/{alert_id}", headers=h).json()
    assert status["exercise"] and status["ack_window_seconds"] == 300
    assert client.post("/api/alerts", json={"zones": ["Oaxca"], "body": "x"},
                       headers=h).json()["detail"].endswith("(did you mean 'Oaxaca'?)")
    assert client.post(f"/api/alerts/{alert_id}/cancel", headers=h).json()["state"] == \
        "cancelled"
    assert client.get("/api/alerts/999", headers=h).status_code == 404
    with rt.db.session() as s:
        s.add(Response(kind="field_report", text="road blocked"))
        s.add(Response(kind="help", text="HELP", urgent=True))
    inbox = client.get("/api/inbox", headers=h).json()["items"]
    assert [i["kind"] for i in inbox] == ["help", "field_report"]  # urgent first
    assert client.post(f"/api/inbox/{inbox[0]['id']}/handled", headers=h).status_code == 200
    assert [i["kind"] for i in client.get("/api/inbox", headers=h).json()["items"]] == \
        ["field_report"]
    audit_csv = client.get("/api/audit?format=csv", headers=h).text
    assert "alert.sent" in audit_csv and "alert.cancelled" in audit_csv
    assert "inbox.handled" in audit_csv
    roster = client.get("/api/roster?zone=Oaxaca", headers=h).json()["items"]
    assert "+529515101001" in [r["phone"] for r in roster]
    assert "Tabasco" in client.get("/api/roster/gaps", headers=h).json()[
        "zones_without_primary"]


def test_revoked_or_unknown_token_is_401(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    assert client.get("/api/alerts", headers=bearer("aln_nope")).status_code == 401
    from typer.testing import CliRunner

    from dispatcher.cli.main import app

    env = {"ALN_DATABASE_URL": rt.settings.database_url,
           "ALN_SECRET_KEY": rt.settings.secret_key, "ALN_CONFIG_DIR": str(CONFIG_DIR)}
    assert CliRunner().invoke(app, ["officer", "revoke", "viewer-officer"],
                              env=env).exit_code == 0
    assert client.get("/api/alerts", headers=bearer(tokens["viewer"])).status_code == 401


def test_dashboard_login_csrf_and_compose(app_rt: Any) -> None:
    rt, client, _ = app_rt
    csrf = login(client)
    form = {"zones": ["Oaxaca"], "body": "Test", "template": "security", "action": "preview"}
    assert client.post("/compose", data=form).status_code == 403  # no CSRF token
    preview = client.post("/compose", data={**form, "csrf": csrf})
    assert preview.status_code == 200 and "Victor Castillo" in preview.text
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
    asked = client.post("/compose", data={**form, "csrf": csrf, "action": "send"},
                        follow_redirects=False)  # Send only asks, naming what will go out
    assert asked.status_code == 200
    assert "Send a REAL alert to 1 zone, 1 volunteer?" in asked.text
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
    sent = client.post("/compose", data={**form, "csrf": csrf, "action": "confirm"},
                       follow_redirects=False)
    assert sent.status_code == 303 and sent.headers["location"].startswith("/alerts/")
    board = client.get(sent.headers["location"])
    assert 'data-zone="Oaxaca"' in board.text and 'data-state="waiting"' in board.text
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "officer.login")) == 1


def test_login_attempts_are_rate_limited(app_rt: Any) -> None:
    _, client, _ = app_rt
    for _ in range(5):
        r = client.post("/login", data=login_form(client, "officer-officer", "wrong"))
        assert r.status_code == 401
    r = client.post("/login", data=login_form(client, "officer-officer",
                                              "correct horse battery"))
    assert r.status_code == 429


def test_board_script_cannot_be_broken_out_of(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    h = bearer(tokens["officer"])
    alert_id = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "x"},
                           headers=h).json()["id"]
    with rt.db.session() as s:
        from dispatcher.models import Recipient

        rec = s.scalars(select(Recipient).where(Recipient.alert_id == alert_id)).one()
        s.add(Response(alert_id=alert_id, recipient_id=rec.id, kind="field_report",
                       text="</script><script>alert(1)</script>"))
    login(client)
    page = client.get(f"/alerts/{alert_id}").text
    assert "</script><script>alert(1)" not in page


def test_audit_csv_never_starts_a_cell_with_a_formula(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    from dispatcher import audit

    with rt.db.session() as s:
        audit.record(s, "=cmd|' /C calc'!A0", "officer.login_failed")
    text = client.get("/api/audit?format=csv", headers=bearer(tokens["viewer"])).text
    cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
    assert "'=cmd|' /C calc'!A0" in cells
    assert not any(c.startswith(("=", "+", "@", "\t", "\r")) for c in cells)
