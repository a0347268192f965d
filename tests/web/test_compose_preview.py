"""The compose preview is the dry run's own plan: every tier of each zone with the
escalation it would take, the gaps named, totals, only the languages used, and no reply
code before the alert is sent."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from dispatcher.models import Alert
from tests.web.conftest import bearer, login


def _dry_run(client: Any, token: str, zones: list[str], body: str = "Test") -> Any:
    r = client.post("/api/alerts", json={"zones": zones, "body": body, "dry_run": True},
                    headers=bearer(token))
    assert r.status_code == 200, r.text
    return r.json()


def test_preview_shows_every_tier_its_escalation_and_the_gaps(app_rt: Any) -> None:
    _, client, _ = app_rt
    csrf = login(client)
    page = client.post("/compose", data={"csrf": csrf, "action": "preview", "body": "Test",
                                         "zones": ["Chiapas", "Guerrero", "Hidalgo"],
                                         "exercise": "1", "ack_window": "10m"}).text
    chiapas = page.split('data-zone="Chiapas"')[1].split("</section>")[0]
    assert "Escalation: primary → alternate1 → alternate2 → duty officer, each after 10 min" \
        in chiapas
    tiers = re.findall(r'<tr data-tier="([^"]+)"><td data-label="Tier">[^<]*</td>'
                       r'<td data-label="When">([^<]*)</td><td data-label="Volunteer">([^<]*)<',
                       chiapas)
    assert tiers == [("primary", "now", "Ana Morales"),
                     ("alternate1", "if escalated", "Brian Keller"),
                     ("alternate2", "if escalated", "Carmen Ruiz")]
    gaps = page.split('id="preview-gaps"')[1].split("</div>")[0]
    assert "Guerrero has no active alternate" in gaps
    assert "Hidalgo has no active alternate" in gaps
    assert re.search(r"Luis Herrera \(alternate1\): term ended \d{4}-\d\d-\d\d", gaps)
    assert "Chiapas has" not in gaps
    assert re.search(r"Now: <strong>3 SMS</strong> \(3 segments\) and <strong>3 emails"
                     r"</strong> to 3 volunteers in 3 zones", page)


def test_preview_holds_no_reply_code(app_rt: Any) -> None:
    rt, client, tokens = app_rt
    first = _dry_run(client, tokens["officer"], ["Oaxaca"])
    second = _dry_run(client, tokens["officer"], ["Oaxaca"])
    assert first["reply_code"] is None
    texts = [p["sms_encoding"]["es"]["text"] for p in (first, second)]
    assert texts[0] == texts[1] and "####" in texts[0]  # the same text, no code in it
    assert not re.search(r"\b\d{4}\b", texts[0])
    csrf = login(client)
    page = client.post("/compose", data={"csrf": csrf, "action": "preview", "body": "Test",
                                         "zones": ["Oaxaca"]}).text
    assert "#### stands for the reply code, given when the alert is sent" in page
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
    sent = client.post("/api/alerts", json={"zones": ["Oaxaca"], "body": "Test"},
                       headers=bearer(tokens["officer"])).json()
    assert re.fullmatch(r"\d{4}", sent["reply_code"])  # a code is held once it is sent


def test_preview_counts_segments_and_shows_only_the_languages_used(app_rt: Any) -> None:
    _, client, tokens = app_rt
    short = _dry_run(client, tokens["officer"], ["Oaxaca"])
    assert short["languages"] == ["es"] and list(short["sms_encoding"]) == ["es"]
    assert short["sms"] == 1 and short["sms_segments"] == short["sms_encoding"]["es"]["segments"]
    both = _dry_run(client, tokens["officer"], ["Oaxaca", "Puebla"], body="Road closed. " * 30)
    assert both["languages"] == ["en", "es"]  # Quinn Harper reads English
    assert both["sms"] == 2 and both["sms_segments"] >= 2 * 3
    zones = {z["zone"]: z for z in both["zones"]}
    assert [t["tier"] for t in zones["Puebla"]["tiers"]] == \
        ["primary", "alternate1", "alternate2"]
