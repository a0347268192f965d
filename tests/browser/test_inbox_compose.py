"""The inbox, the compose preview and the alert list in Debian's Chromium, on a laptop
(1366×768) and a phone (390×844): a stranger's flood folded and never pushing a
volunteer's HELP off the first page, paging, Handled with a note, Undo and the Handled
view, the waiting count in the navigation, the preview's tiers, gaps and totals with no
reply code, Exercise ticked by default, the alert list's words, and nothing scrolling
sideways. Full-page screenshots go to test-artifacts/screenshots/<page>-<w>x<h>.png."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatcher.models import InboundMessage, Response
from dispatcher.web.inbox_view import INBOX_PAGE
from tests.browser.test_dashboard_browser import ANA, LIVE_TIMEOUT_MS
from tests.browser_support import (
    VIEWPORTS,
    add_duty_officer,
    assert_fits,
    chromium_page,
    log_in,
    save_screenshot,
)
from tests.engine import Engine
from tests.helpers import wait_until

STRANGER = "+15550009999"
#: The stranger's flood, sent through the signed webhook like any text.
FLOOD = 25
#: Other strangers, one message each: enough senders for a second page.
OTHERS = INBOX_PAGE + 2


def _responses(engine: Engine) -> int:
    with engine.rt.db.session() as s:
        return s.scalar(select(func.count()).select_from(Response)) or 0


def _inbox_with_a_flood(engine: Engine) -> None:
    """Ana asks for HELP first; then a stranger texts HELP again and again, and many other
    strangers write once (rows as the webhook keeps them, for speed)."""
    engine.sim.inbound(ANA, "HELP we are trapped at the market")
    wait_until(lambda: _responses(engine) == 1, what="Ana's HELP in the inbox")
    for i in range(FLOOD):
        engine.sim.inbound(STRANGER, f"HELP HELP {i}")
    wait_until(lambda: _responses(engine) == 1 + FLOOD, timeout=60, what="the flood")
    with engine.rt.db.session() as s:
        for n in range(OTHERS):
            inbound = InboundMessage(source="twilio", dedupe_key=f"other-{n}", raw_enc=b"x",
                                     sender_hash=f"other-{n}")
            s.add(inbound)
            s.flush()
            s.add(Response(kind="unparsed", text=f"who is this? {n}", inbound_id=inbound.id,
                           sender_masked=f"+1******{n:04d}"))


def _waiting(page: Any) -> str:
    return str(page.locator("#nav-waiting").text_content())


@pytest.mark.browser
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_inbox_folds_a_flood_pages_and_handles(engine: Engine, size: str) -> None:
    add_duty_officer(engine)
    _inbox_with_a_flood(engine)
    viewport = VIEWPORTS[size]
    senders = 2 + OTHERS
    with chromium_page(viewport=viewport) as page:
        log_in(page, engine)
        assert _waiting(page) == f"{senders} waiting"  # in the navigation of every page
        page.goto(f"{engine.url}/inbox")
        rows = page.locator("#waiting tbody tr")
        assert rows.count() == INBOX_PAGE
        first = rows.nth(0)
        assert first.get_attribute("data-kind") == "help"
        assert "Ana Morales (Chiapas)" in first.inner_text()
        assert first.locator(f'a.tel[href="tel:{ANA}"]').count() == 1
        flood = rows.nth(1)
        assert flood.get_attribute("data-count") == str(FLOOD)
        assert f"{FLOOD} messages from this sender" in flood.inner_text()
        assert f"HELP HELP {FLOOD - 1}" in flood.inner_text()
        flood.get_by_text("Earlier messages").click()
        assert flood.locator(".earlier li").count() == 5
        assert_fits(page)
        save_screenshot(page, "inbox")
        shown = set(page.eval_on_selector_all("#waiting tbody tr",
                                              "rs => rs.map(r => r.dataset.item)"))
        page.get_by_role("link", name="Next page").click()
        later = page.eval_on_selector_all("#waiting tbody tr",
                                          "rs => rs.map(r => r.dataset.item)")
        assert len(later) == senders - INBOX_PAGE and not shown & set(later)
        assert_fits(page)
        page.get_by_role("link", name="Back to the first page").click()

        # Handled with a note: gone from the waiting list, counted down, shown with who.
        help_item = page.locator('tr[data-kind="help"]')
        help_item.get_by_label("Note (optional)").fill("Called Ana: safe, at home")
        help_item.get_by_role("button", name="Handled").click()
        page.wait_for_selector('tr[data-handled]')
        assert page.locator('tr[data-kind="help"]').count() == 0
        assert _waiting(page) == f"{senders - 1} waiting"
        done = page.locator("tr[data-handled]").first
        assert "Called Ana: safe, at home" in done.inner_text()
        assert "by duty" in done.inner_text()
        # Undo: back at the top of the inbox.
        done.get_by_role("button", name="Undo").click()
        page.wait_for_selector('#waiting tbody tr:first-child[data-kind="help"]')
        assert _waiting(page) == f"{senders} waiting"

        # The stranger's flood handled at once; the Handled view keeps it, Undo there too.
        page.locator(f'tr[data-count="{FLOOD}"]').get_by_role("button", name="Handled").click()
        page.wait_for_selector(f'tr[data-handled] >> text="{FLOOD} messages from this sender'
                               '; the newest:"')
        page.get_by_role("link", name="Handled", exact=True).click()
        page.wait_for_url("**/inbox/handled")
        assert f"{FLOOD} messages from this sender" in page.inner_text("main")
        assert page.locator('a[aria-current="page"]').inner_text() == "Handled"
        assert_fits(page)
        save_screenshot(page, "inbox-handled")


@pytest.mark.browser
@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_compose_preview_then_send_and_the_alert_list(engine: Engine, size: str) -> None:
    add_duty_officer(engine)
    viewport = VIEWPORTS[size]
    with chromium_page(viewport=viewport) as page:
        log_in(page, engine)
        exercise = page.get_by_label("Exercise (every message says EXERCISE)")
        assert exercise.is_checked()  # an exercise until the officer unticks it
        page.select_option("#zones", ["Chiapas", "Guerrero", "Hidalgo"])
        page.get_by_label("What happened, and what to do").fill(
            "Roads to the airport are closed.\nStay home and reply.")
        page.get_by_label("Acknowledgement window").fill("10m")
        page.get_by_role("button", name="Preview").click()
        page.wait_for_selector("#preview")
        assert page.get_by_label("Exercise (every message says EXERCISE)").is_checked()
        chiapas = page.locator('.plan-zone[data-zone="Chiapas"]').inner_text()
        assert "primary → alternate1 → alternate2 → duty officer, each after 10 min" in chiapas
        for name in ("Ana Morales", "Brian Keller", "Carmen Ruiz"):
            assert name in chiapas  # every tier, not only the first
        gaps = page.inner_text("#preview-gaps")
        assert "Guerrero has no active alternate" in gaps
        assert "Hidalgo has no active alternate" in gaps
        assert "Luis Herrera (alternate1): term ended" in gaps
        totals = page.inner_text("#preview-totals")
        assert re.search(r"Now: 3 SMS \(\d+ segments?\) and 3 emails to 3 volunteers in "
                         r"3 zones", totals), totals
        assert "Languages: en, es." in totals  # Brian Keller (alternate1) reads English
        sms = page.inner_text(".sms-texts")
        assert "####" in sms and not re.search(r"\b\d{4}\b", sms)  # no code before sending
        assert page.locator('.sms-texts li[data-lang="ru"]').count() == 0
        assert_fits(page)
        save_screenshot(page, "compose-preview")

        page.get_by_role("button", name="Send…").click()
        page.locator("#confirm-message").wait_for()
        assert page.inner_text("#confirm-message") == \
            "Send an EXERCISE alert to 3 zones, 3 volunteers?"
        assert_fits(page)
        save_screenshot(page, "confirm-send")
        page.get_by_role("button", name="Yes, send the exercise").click()
        page.wait_for_url("**/alerts/*")
        alert_id = page.url.rsplit("/", 1)[1]
        page.goto(f"{engine.url}/alerts/{alert_id}/cancel")
        assert_fits(page)
        save_screenshot(page, "confirm-cancel")

        page.goto(f"{engine.url}/")
        row = page.locator(f'tr[data-alert="{alert_id}"]')
        row.wait_for(timeout=LIVE_TIMEOUT_MS)
        text = row.inner_text()
        assert "EXERCISE" in text and "Roads to the airport are closed." in text
        assert "Stay home" not in text  # the first line only
        assert re.search(r"0 of 3 zones covered, 3 waiting", text), text
        code = row.locator('td[data-label="Code"]').inner_text()
        assert re.fullmatch(r"\d{4}", code)  # the code exists once the alert is sent
        assert_fits(page)
        save_screenshot(page, "alert-list")
