"""Browser tests of the web pages: Debian's chromium driven by Playwright's Python package.

Fixtures:

browser     (module) chromium from /usr/bin/chromium, headless (Playwright's own browser
            download is never used). Missing chromium skips locally and fails in CI
            (``.ci/run`` installs it on a clean machine).
page        a fresh browser context (its own cookies) with a 1280x800 viewport
phone       the same at a phone's 390x844
gw          (tests/conftest.py) a real embedded-mode gateway on a free port, mock upstream

``screenshot(page, name)`` writes the whole page to docs/screenshots/<name>.png, the folder
the README shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support.servers import require_or_skip

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Module scope, not session: the sync API keeps an event loop of its own on this thread,
    # which must not outlive the browser tests into the suite's asyncio.run tests.
    if not os.access(CHROMIUM, os.X_OK):
        require_or_skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


def _page(browser: Browser, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, DESKTOP)


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    yield from _page(browser, PHONE)


def screenshot(page: Page, name: str) -> Path:
    """The whole page as docs/screenshots/<name>.png; returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
