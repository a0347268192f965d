"""Debian's Chromium driven by Playwright (never a browser Playwright downloads)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
#: Flags for a closed network: no background connections that the machine would refuse.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("/usr/bin/chromium is missing: `make test` installs Debian's chromium")
    pytest.skip("browser tests need Debian's chromium (/usr/bin/chromium); "
                "`make test` installs it when run as root")


@contextmanager
def chromium_page(viewport: dict[str, int] | None = None) -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport=viewport or {"width": 1100, "height": 900})
            yield page
        finally:
            browser.close()


#: Where the browser tests leave a full-page screenshot of every page (git-ignored).
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
#: axe-core, installed from the npm registry by `make test` (tests/browser/axe/package.json).
AXE_JS = Path(__file__).resolve().parent / "browser" / "axe" / "node_modules" / "axe-core" \
    / "axe.min.js"
#: The rule sets every page must pass: WCAG 2.0 and 2.1, levels A and AA, and axe's
#: best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def fits(page: Any) -> int:
    """How many pixels the page is wider than its viewport (0: nothing scrolls sideways)."""
    return int(page.evaluate(
        "Math.max(0, document.documentElement.scrollWidth - window.innerWidth)"))


def assert_fits(page: Any) -> None:
    over = fits(page)
    assert over == 0, f"{page.url} scrolls sideways by {over} px"


def save_screenshot(page: Any, name: str) -> Path:
    """A full-page screenshot, named <page>-<width>x<height>.png."""
    size = page.viewport_size
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{size['width']}x{size['height']}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, f"{path} is nearly empty"
    return path


def axe_violations(page: Any) -> list[str]:
    """axe-core's violations on the page as it stands, one line per rule and element.

    axe is evaluated through the DevTools protocol, which the pages' Content-Security-Policy
    (`script-src 'self'`) does not govern: the app's policy stays as strict as it is."""
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} is missing: `make test` installs it (npm ci in tests/browser/axe)")
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(AXE_JS.read_text(encoding="utf-8"))
    found = page.evaluate("""async (tags) => {
        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                                resultTypes: ['violations']});
        return result.violations.flatMap(v => v.nodes.map(n =>
            `${v.id} (${v.impact}): ${v.help} at ${n.target.join(' ')}`));
    }""", AXE_TAGS)
    return [str(line) for line in found]


def assert_accessible(page: Any, name: str) -> None:
    """No axe-core violation on the page (WCAG 2.1 A and AA, best practices)."""
    found = axe_violations(page)
    assert not found, f"{name} ({page.url}):\n  " + "\n  ".join(found)


#: The duty officer every browser test logs in as.
OFFICER, PASSWORD = "duty", "a long enough password"
#: Both screens the console is checked on: a laptop and a phone.
VIEWPORTS = {"laptop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}


def add_duty_officer(engine: Any) -> None:
    """The officer OFFICER, with the password PASSWORD, on the engine's database."""
    from sqlalchemy import select

    from dispatcher.models import Officer
    from dispatcher.web.auth import add_officer, hash_password

    with engine.rt.db.session() as s:
        add_officer(s, OFFICER, "officer", actor="test")
        s.scalars(select(Officer).where(Officer.name == OFFICER)).one().password_hash = \
            hash_password(PASSWORD)


def log_in(page: Any, engine: Any) -> None:
    page.goto(f"{engine.url}/login")
    page.get_by_label("Officer name").fill(OFFICER)
    page.get_by_label("Password or API token").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{engine.url}/")
