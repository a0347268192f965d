"""The dashboard in Debian's Chromium: log in, send an exercise through the form, and watch
the zone turn acknowledged on the open page when the simulated volunteer answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.web.auth import add_officer, hash_password
from tests.browser_support import chromium_page
from tests.engine import Engine

VICTOR = "+529515101001"  # Oaxaca primary
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.browser
def test_zone_turns_acknowledged_live_without_reload(engine: Engine) -> None:
    from sqlalchemy import select

    from dispatcher.models import Officer

    with engine.rt.db.session() as s:
        add_officer(s, "duty", "officer", actor="test")
        s.scalars(select(Officer).where(Officer.name == "duty")).one().password_hash = \
            hash_password("a long enough password")
    engine.sim.script(VICTOR, reply="YES {code}", delay=2.0)
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium_page(viewport={"width": 390, "height": 844}) as page:
        refused: list[str] = []  # what the Content-Security-Policy blocked on our own pages
        page.on("console", lambda m: refused.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.goto(f"{engine.url}/alerts/1")
        assert page.url.endswith("/login")  # anonymous: sent to the login page
        page.get_by_label("Officer name").fill("duty")
        page.get_by_label("Password or API token").fill("a long enough password")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{engine.url}/")
        page.select_option("#zones", ["Oaxaca"])
        page.select_option("#template", "demonstration")
        page.get_by_label("What happened, and what to do").fill(
            "Demonstration expected downtown this afternoon.")
        page.get_by_label("Exercise (every message says EXERCISE)").check()
        page.get_by_role("button", name="Send").click()
        page.wait_for_url("**/alerts/*")
        zone = page.locator('section.zone[data-zone="Oaxaca"]')
        assert zone.get_attribute("data-state") == "waiting"
        page.evaluate("window.__notReloaded = true")
        page.wait_for_selector('section.zone[data-zone="Oaxaca"][data-state="acknowledged"]',
                               timeout=20_000)
        assert page.evaluate("window.__notReloaded === true")
        row = page.locator('tr[data-volunteer="Victor Castillo"]')
        assert row.get_attribute("data-state") == "acknowledged"
        assert "EXERCISE" in page.locator("h1").inner_text()
        assert refused == []  # the board's script and styles are files the policy allows
        page.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)
    assert (ARTIFACTS / "board.png").stat().st_size > 10_000
