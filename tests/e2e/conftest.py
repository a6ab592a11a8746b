"""Real-browser fixtures: Playwright driving Debian's Chromium (never a downloaded one).

Screenshots of the main pages are saved under ``artifacts/screenshots/`` (override with
REVIEWAPP_ARTIFACTS). A missing Chromium is a failure, not a skip: CI must run these.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("REVIEWAPP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = Path(os.environ.get("REVIEWAPP_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))

pytestmark = pytest.mark.e2e

# The journeys run with CSRF protection on, as in production. A module that overrides
# ``app_config`` starts from this mapping.
E2E_CONFIG = {"WTF_CSRF_ENABLED": True}


@pytest.fixture
def app_config():
    return dict(E2E_CONFIG)


@pytest.fixture(scope="session")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class PageWatch:
    """Collects what a page did that it should not: dialogs, console errors (CSP
    violations land there), requests to hosts other than the app's."""

    def __init__(self, page, allowed_origins: list[str]) -> None:
        self.dialogs: list[str] = []
        self.console_errors: list[str] = []
        self.foreign_requests: list[str] = []
        self._allowed = allowed_origins
        page.on("dialog", self._on_dialog)
        page.on("console", self._on_console)
        page.on("request", self._on_request)

    def _on_dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _on_console(self, msg) -> None:
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def _on_request(self, request) -> None:
        url = request.url
        if url.startswith(("data:", "about:", "blob:")):
            return
        if not any(url.startswith(origin) for origin in self._allowed):
            self.foreign_requests.append(url)


@pytest.fixture
def new_page(browser, live_server) -> Iterator:
    """new_page() -> (page, watch) in a fresh browser context (its own cookies)."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server.url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        return page, PageWatch(page, [live_server.url])

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def screenshot(request):
    def shot(page, name: str) -> Path:
        target = ARTIFACTS / "screenshots" / f"{request.node.name}-{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(target), full_page=True)
        return target

    return shot


def ui_login(page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
