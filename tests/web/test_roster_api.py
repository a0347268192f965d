"""The roster over the API: who sees contacts in clear, and that every such read is kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dispatcher.models import AuditEvent
from tests.web.conftest import bearer

VICTOR = "+529515101001"


def test_a_viewer_sees_the_roster_masked(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    r = client.get("/api/roster", headers=bearer(tokens["viewer"]))
    assert r.status_code == 200 and r.json()
    assert VICTOR not in r.text and "@" not in r.text.replace("***@", "")
    victor = next(v for v in r.json()["items"] if v["name"] == "Victor Castillo")
    assert victor["phone"].startswith("+52") and "*" in victor["phone"]


def test_every_full_roster_read_is_audited(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    full = client.get("/api/roster?zone=Oaxaca",
                      headers=bearer(tokens["officer"])).json()["items"]
    assert VICTOR in [r["phone"] for r in full]
    client.get("/api/roster", headers=bearer(tokens["admin"]))
    with rt.db.session() as s:
        reads = s.scalars(select(AuditEvent).where(AuditEvent.action == "roster.read")
                          .order_by(AuditEvent.id)).all()
        assert [(e.actor, e.details["zone"]) for e in reads] == [
            ("officer:officer-officer", "Oaxaca"), ("officer:admin-officer", None)]
        assert reads[0].details["rows"] == len(full)
