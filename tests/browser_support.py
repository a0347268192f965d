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
