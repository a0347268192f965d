"""The duty officer's console in Debian's Chromium, on a laptop (1366×768) and a phone
(390×844): log in, send an exercise through the confirmation, watch the board answer "who
do I call now?" live (acknowledged, HELP, unreached), update, cancel, and read the alert
list, inbox and audit without sideways scrolling. Full-page screenshots of every page go
to test-artifacts/screenshots/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser_support import (
    PASSWORD,
    VIEWPORTS,
    add_duty_officer,
    assert_fits,
    chromium_page,
    log_in,
    save_screenshot,
)
from tests.engine import Engine

VICTOR = "+529515101001"  # Oaxaca primary: answers YES
ANA = "+529611230101"  # Chiapas primary: asks for HELP
#: Longest wait for something the engine does on its own (replies, escalation).
LIVE_TIMEOUT_MS = 30_000


@pytest.mark.browser
def test_board_says_when_it_is_reconnecting(engine: Engine, monkeypatch: Any) -> None:
    from dispatcher.web import board

    monkeypatch.setattr(board, "BOARD_STREAM_SECONDS", 2.0)  # each stream ends after 2 s
    add_duty_officer(engine)
    alert_id = engine.send(["Oaxaca"], ack_window_seconds=600)
    with chromium_page(viewport=VIEWPORTS["phone"]) as page:
        log_in(page, engine)
        page.goto(f"{engine.url}/alerts/{alert_id}")
        page.evaluate("""window.__live = []; new MutationObserver(() => window.__live.push(
            document.getElementById('live').dataset.live)).observe(
            document.getElementById('live'), {attributes: true})""")
        page.wait_for_function(
            "() => window.__live.join(' ').includes('reconnecting live')", timeout=LIVE_TIMEOUT_MS)
        assert page.locator("#live").inner_text().startswith(("● Live", "Reconnecting…"))


@pytest.mark.browser
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_board_answers_who_to_call_live(engine: Engine, size: str) -> None:
    add_duty_officer(engine)
    engine.sim.script(VICTOR, reply="YES {code}", delay=2.0)
    engine.sim.script(ANA, reply="HELP {code}", delay=1.0)
    viewport = VIEWPORTS[size]
    with chromium_page(viewport=viewport) as page:
        refused: list[str] = []  # what the Content-Security-Policy blocked on our own pages
        page.on("console", lambda m: refused.append(m.text)
                if "Content Security Policy" in m.text else None)
        page.goto(f"{engine.url}/alerts/1")
        assert page.url.endswith("/login")  # anonymous: sent to the login page
        assert_fits(page)
        page.get_by_label("Officer name").fill("duty")
        page.get_by_label("Password or API token").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{engine.url}/")

        # Compose: an exercise unless the officer unticks it; Send asks first.
        exercise = page.get_by_label("Exercise (every message says EXERCISE)")
        assert exercise.is_checked()
        page.select_option("#zones", ["Oaxaca", "Hidalgo", "Chiapas", "Puebla"])
        page.select_option("#template", "demonstration")
        page.get_by_label("What happened, and what to do").fill(
            "Demonstration expected downtown this afternoon.\nAvoid the Zócalo.")
        page.get_by_label("Acknowledgement window").fill("8s")
        assert_fits(page)
        save_screenshot(page, "compose")
        page.get_by_role("button", name="Send…").click()
        confirm = page.locator("#confirm-message")
        confirm.wait_for()
        assert confirm.inner_text() == "Send an EXERCISE alert to 4 zones, 4 volunteers?"
        assert_fits(page)
        save_screenshot(page, "confirm-send")
        page.get_by_role("button", name="Yes, send the exercise").click()
        page.wait_for_url("**/alerts/*")
        page.evaluate("window.__notReloaded = true")
        # Everything the polite live region says, in order (each change replaces the last).
        page.evaluate("""window.__said = []; new MutationObserver(() => window.__said.push(
            document.getElementById('announce').textContent)).observe(
            document.getElementById('announce'), {childList: true, characterData: true,
                                                  subtree: true})""")

        # Live, with a countdown to the next escalation and who to call, numbers in clear.
        page.wait_for_selector('#live[data-live="live"]', timeout=LIVE_TIMEOUT_MS)
        assert re.search(r"Live · last update \d\d:\d\d:\d\d", page.inner_text("#live"))
        assert "times in America/Mexico_City" in page.inner_text(".meta")
        assert "Avoid the Zócalo." in page.inner_text("#versions")
        page.wait_for_selector('section.zone[data-zone="Puebla"] a.tel[href="tel:+522222300801"]',
                               timeout=LIVE_TIMEOUT_MS)
        assert "Quinn Harper" in page.inner_text('section.zone[data-zone="Puebla"] .call')

        # Victor answers: Oaxaca is covered, collapsed, and a screen reader hears only that.
        page.wait_for_selector('details.zone[data-zone="Oaxaca"][data-state="acknowledged"]',
                               state="attached", timeout=LIVE_TIMEOUT_MS)
        assert not page.locator('details.zone[data-zone="Oaxaca"]').evaluate("d => d.open")
        # Ana asks for HELP: counted in the summary, her zone right after the unreached.
        page.wait_for_function(
            "() => document.getElementById('sum-help').textContent === '1 HELP'",
            timeout=LIVE_TIMEOUT_MS)
        # Hidalgo has nobody after its primary: unreached once the window passes.
        page.wait_for_selector('section.zone[data-zone="Hidalgo"][data-state="unreached"]',
                               timeout=LIVE_TIMEOUT_MS)
        assert "Maria Torres" in page.inner_text('section.zone[data-zone="Hidalgo"] .call')
        order = page.eval_on_selector_all("#board > .zone", "zs => zs.map(z => z.dataset.zone)")
        assert order[0] == "Hidalgo" and order[1] == "Chiapas" and order[-1] == "Oaxaca"
        said = " ".join(page.evaluate("window.__said"))
        assert "Oaxaca: acknowledged." in said and "Hidalgo: unreached." in said
        assert "Chiapas: HELP received." in said
        assert "Victor Castillo" not in said  # the change, not the whole board again
        assert re.search(r"(next escalation in \d\d:\d\d|no escalation pending)",
                         page.inner_text("#sum-next"))
        assert page.evaluate("window.__notReloaded === true")
        row = page.locator('tr[data-volunteer="Victor Castillo"]')
        assert row.get_attribute("data-state") == "acknowledged"
        assert "EXERCISE" in page.locator("h1").inner_text()
        assert_fits(page)
        save_screenshot(page, "board")

        # An update from the board: the next version, shown live.
        page.get_by_text("Send an update").click()
        page.get_by_label("The update's text").fill("The march moved to Reforma.")
        page.get_by_role("button", name="Send update").click()
        page.wait_for_selector("#versions li:nth-child(2)", timeout=LIVE_TIMEOUT_MS)
        assert "The march moved to Reforma." in page.inner_text("#versions")

        # Cancel says what will go out, then no zone reads "waiting" any more.
        page.get_by_role("link", name="Cancel this alert…").click()
        message = page.locator("#confirm-message").inner_text()
        assert re.match(r"Cancel: \d+ stand-down messages? will go out", message), message
        assert_fits(page)
        save_screenshot(page, "confirm-cancel")
        page.get_by_role("button", name="Yes, cancel the alert").click()
        page.wait_for_url("**/alerts/*")
        page.wait_for_function("() => document.getElementById('alert-state').textContent"
                               " === 'cancelled'", timeout=LIVE_TIMEOUT_MS)
        shown = page.eval_on_selector_all("#board > .zone", "zs => zs.map(z => z.dataset.shown)")
        assert "waiting" not in shown and "cancelled" in shown
        assert page.get_by_role("link", name="Cancel this alert…").count() == 0
        save_screenshot(page, "board-cancelled")

        # The alert list says what happened; inbox and audit fit the screen too.
        page.goto(f"{engine.url}/")
        row_text = page.locator('tr[data-alert="1"]').inner_text()
        assert "Demonstration expected downtown this afternoon." in row_text
        assert "Avoid the Zócalo" not in row_text  # the first line only
        assert "EXERCISE" in row_text and "cancelled" in row_text
        assert re.search(r"\d of 4 zones covered", row_text)
        assert_fits(page)
        save_screenshot(page, "alert-list")
        page.goto(f"{engine.url}/inbox")
        help_item = page.locator('tr[data-kind="help"]')
        assert "Ana Morales (Chiapas)" in help_item.inner_text()
        assert_fits(page)
        save_screenshot(page, "inbox")
        help_item.get_by_label("Note (optional)").fill("Called Ana: safe, at home")
        help_item.get_by_role("button", name="Handled").click()
        page.wait_for_selector('tr[data-handled]')
        assert "Called Ana: safe, at home" in page.inner_text('tr[data-handled]')
        assert "by duty" in page.inner_text('tr[data-handled]')
        assert_fits(page)
        save_screenshot(page, "inbox-handled")
        page.goto(f"{engine.url}/audit")
        assert_fits(page)
        save_screenshot(page, "audit")
        assert "Phone numbers shown to an officer" in page.inner_text("main")
        assert page.locator('tr[data-kind="alert.phones_read"]').count() >= 1
        assert refused == []  # every script and style is a file the policy allows
