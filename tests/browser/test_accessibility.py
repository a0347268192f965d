"""Every page of the officer's console, the volunteer's acknowledgement page and the HTML
exercise report, in Debian's Chromium on a laptop (1366×768) and a phone (390×844): axe-core
finds no WCAG 2.1 A/AA or best-practice violation, nothing scrolls sideways, and a
full-page screenshot of each lands in test-artifacts/screenshots/. One live exercise
(acknowledged, HELP, escalated, unreached, an update) is set up once for the module."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dispatcher.localtime import local_time
from dispatcher.tokens import ack_url
from tests.browser_support import (
    VIEWPORTS,
    add_duty_officer,
    axe_violations,
    chromium_page,
    fits,
    log_in,
    require_chromium,
    save_screenshot,
)
from tests.engine import Engine, engines_in
from tests.helpers import wait_until

VICTOR = "+529515101001"  # Oaxaca primary: answers YES
ANA = "+529611230101"  # Chiapas primary: asks for HELP
ZONES = ["Oaxaca", "Hidalgo", "Chiapas", "Puebla"]
#: Longest wait for something the engine does on its own (replies, escalation).
LIVE_TIMEOUT_S = 30


@dataclass
class Drill:
    engine: Engine
    alert_id: int
    ack_path: str  # a volunteer's acknowledgement link, without the host


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drill]:
    """An exercise past its window: Oaxaca acknowledged, Chiapas asked for HELP, Puebla
    escalated, Hidalgo unreached, and an update sent."""
    from dispatcher.dispatch.versions import update_alert

    require_chromium()
    with engines_in(tmp_path_factory.mktemp("a11y")) as make:
        engine: Engine = make()
        add_duty_officer(engine)
        engine.sim.script(VICTOR, reply="YES {code}", delay=0.5)
        engine.sim.script(ANA, reply="HELP {code}", delay=0.5)
        alert_id = engine.send(ZONES, body="Demonstration downtown.\nAvoid the Zócalo.",
                               exercise=True, ack_window_seconds=3, actor="officer:duty")
        with engine.rt.db.session() as s:
            update_alert(s, engine.rt.settings, alert_id, "The march moved to Reforma.",
                         "officer:duty")
        wait_until(lambda: engine.zone(alert_id, "Hidalgo")["state"] == "unreached"
                   and engine.zone(alert_id, "Oaxaca")["state"] == "acknowledged"
                   and any(r["kind"] == "help" for r in _replies(engine, alert_id)),
                   LIVE_TIMEOUT_S, what="the drill to play out")
        quinn = engine.recipient(alert_id, "Quinn Harper")
        link = ack_url("", engine.rt.vault, quinn["id"], alert_id)
        yield Drill(engine, alert_id, link)


def _replies(engine: Engine, alert_id: int) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from dispatcher.models import Response

    with engine.rt.db.session() as s:
        return [{"kind": r.kind} for r in s.scalars(
            select(Response).where(Response.alert_id == alert_id))]


def _visit_all(page: Any, drill: Drill) -> Iterator[str]:
    """Every page, in turn; yields each page's name once it is on screen."""
    url, alert = drill.engine.url, drill.alert_id
    page.goto(f"{url}/login")
    yield "login"
    log_in(page, drill.engine)
    yield "alert-list"
    page.select_option("#zones", ["Oaxaca", "Puebla"])
    page.get_by_label("What happened, and what to do").fill("Road closed on Reforma.")
    yield "compose"
    page.get_by_role("button", name="Send…").click()
    page.locator("#confirm-message").wait_for()
    yield "confirm-send"
    page.goto(f"{url}/alerts/{alert}")
    page.wait_for_selector('#live[data-live="live"]', timeout=LIVE_TIMEOUT_S * 1000)
    page.wait_for_selector('section.zone[data-zone="Hidalgo"][data-state="unreached"]',
                           timeout=LIVE_TIMEOUT_S * 1000)
    yield "board"
    page.goto(f"{url}/alerts/{alert}/cancel")
    yield "confirm-cancel"
    page.goto(f"{url}/inbox")
    yield "inbox"
    page.goto(f"{url}/audit")
    yield "audit"
    page.goto(f"{url}/api/reports/{alert}?format=html")
    yield "report"
    page.goto(f"{url}{drill.ack_path}")
    yield "ack"


@pytest.mark.browser
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_every_page_is_accessible_and_fits(drill: Drill, size: str) -> None:
    problems: list[str] = []
    seen = []
    with chromium_page(viewport=VIEWPORTS[size]) as page:
        for name in _visit_all(page, drill):
            seen.append(name)
            save_screenshot(page, name)
            over = fits(page)
            if over:
                problems.append(f"{name}: scrolls sideways by {over} px")
            problems += [f"{name}: {v}" for v in axe_violations(page)]
    assert len(seen) == 10
    assert not problems, "\n".join(problems)


def _sent_at(engine: Engine, alert_id: int) -> str:
    from dispatcher.models import Alert

    with engine.rt.db.session() as s:
        alert = s.get(Alert, alert_id)
        assert alert is not None and alert.sent_at is not None
        return alert.sent_at.isoformat()


@pytest.mark.browser
def test_report_reads_in_local_time_and_draws_never(drill: Drill) -> None:
    """The report on a phone: the post's local time, labelled, to the second; a zone
    nobody acknowledged reads "never" (a hatched stub, not a full-length bar); no "0 / 0"
    headcounts; HELP, the update and dead numbers among the findings; charts are images
    with a title and a text alternative."""
    engine, alert = drill.engine, drill.alert_id
    with chromium_page(viewport=VIEWPORTS["phone"]) as page:
        log_in(page, engine)
        page.goto(f"{engine.url}/api/reports/{alert}?format=html")
        assert page.locator("main").count() == 1 and page.locator("header").count() == 1
        meta = page.inner_text("header")
        local = local_time(_sent_at(engine, alert), "America/Mexico_City", "%Y-%m-%d %H:%M:%S")
        assert f"sent {local}" in meta and "Times in America/Mexico_City" in meta
        text = page.inner_text("body")
        assert not re.search(r"\d\d:\d\d:\d\d[.,]\d", text)  # no fractions of a second
        assert not re.search(r"\d\.\d+ s\b", text)
        assert "+00:00" not in text and "0 / 0" not in text
        never = page.locator('#zones tr[data-zone="Hidalgo"] td[data-label="Time to acknowledge"]')
        assert never.inner_text() == "never"
        bars = page.locator("#zone-bars svg")
        assert bars.get_attribute("role") == "img"
        assert "Hidalgo: never" in bars.locator("desc").text_content()
        assert bars.locator("title").text_content() == "Time to first acknowledgement, by zone"
        # The bar of a zone that never answered is a stub, not the chart's length.
        zones = page.eval_on_selector_all("#zones tbody tr", "rs => rs.map(r => r.dataset.zone)")
        widths = page.evaluate("""() => {
            const svg = document.querySelector('#zone-bars svg');
            const plot = svg.querySelector('#zone-bars-plot').getBBox().width;
            return [...svg.querySelectorAll('[id^="zone-bar-"]')].map(
                b => b.getBBox().width / plot); }""")
        assert len(widths) == len(zones) and widths[zones.index("Hidalgo")] < 0.05, widths
        assert page.locator("#curve svg title").text_content() == "Acknowledgements over time"
        kinds = page.eval_on_selector_all("#findings li", "ls => ls.map(l => l.dataset.kind)")
        assert {"help", "updated", "zone_unreached"} <= set(kinds), kinds
        assert "Ana Morales (Chiapas) asked for HELP" in page.inner_text("#findings")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.browser
def test_audit_reads_in_words_and_filters(drill: Drill) -> None:
    engine, alert = drill.engine, drill.alert_id
    with chromium_page(viewport=VIEWPORTS["laptop"]) as page:
        page.goto(f"{engine.url}/audit?kind=alert.sent")
        assert page.url.endswith("/login")  # anonymous: never the trail
        # A forged name at the login ends up in the trail as text, never markup.
        page.get_by_label("Officer name").fill('<img src=x id=forged>')
        page.get_by_label("Password or API token").fill("wrong password")
        page.get_by_role("button", name="Log in").click()
        log_in(page, engine)

        page.goto(f"{engine.url}/alerts/{alert}")  # who to call: the board reads phones
        page.wait_for_selector('section.zone[data-zone="Hidalgo"] a.tel',
                               timeout=LIVE_TIMEOUT_S * 1000)
        page.goto(f"{engine.url}/audit")
        assert page.locator("#f-actor, #f-alert, #f-kind").count() == 3  # the filter form
        phones = page.locator('tr[data-kind="alert.phones_read"]').first.inner_text()
        assert "Phone numbers shown to an officer" in phones and "Maria Torres" in phones
        escalated = page.locator('tr[data-kind="zone.escalated"]').first.inner_text()
        assert "Zone escalated" in escalated and "the engine" in escalated
        assert re.search(r"late by: \d+ s", escalated), escalated
        rows = page.locator("#audit tbody tr")
        sent = page.locator('tr[data-kind="alert.sent"]')
        assert "Alert sent" in sent.inner_text() and "duty (officer)" in sent.inner_text()
        acked = page.locator('tr[data-kind="recipient.acknowledged"]').first.inner_text()
        assert "volunteer: Victor Castillo" in acked and "zone: Oaxaca" in acked
        assert "{" not in page.inner_text("#audit") and "recipient_id" not in acked
        failed = page.locator('tr[data-kind="officer.login_failed"]').inner_text()
        assert "name tried: <img src=x id=forged>" in failed
        assert page.locator("#forged").count() == 0

        page.select_option("#f-kind", "zone.unreached")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/audit?*kind=zone.unreached*")
        assert rows.count() >= 1
        assert set(page.eval_on_selector_all("#audit tbody tr", "rs => rs.map(r => "
                                             "r.dataset.kind)")) == {"zone.unreached"}
        page.goto(f"{engine.url}/audit?actor=officer:duty&alert={alert}")
        actors = page.eval_on_selector_all("#audit tbody tr", "rs => rs.map(r => r.dataset.actor)")
        assert actors and set(actors) == {"officer:duty"}
        assert page.locator("#f-actor").input_value() == "officer:duty"
        page.goto(f"{engine.url}/audit?alert={alert + 1}")
        assert page.inner_text("#audit tbody") == "No event matches."

        for query, said in (("alert=twelve", "alert must be an alert number"),
                            ("actor=officer:nobody", "nobody called 'officer:nobody'"),
                            ("kind=alert.exploded", "'alert.exploded' is not a kind")):
            answer = page.goto(f"{engine.url}/audit?{query}")
            assert answer is not None and answer.status == 400
            assert said in page.inner_text("#audit-error")
            assert page.locator("#audit").count() == 0
