"""Browser tests: real headless Chromium (Debian's `chromium`) driven by Playwright.

`playwright install` cannot download here, so we launch the system browser. Screenshots
go to test-artifacts/pages/ (gitignored); the best ones are copied to docs/img/ by hand.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import ROOT, ServerProcess, running_server

CHROMIUM = os.environ.get("WSAPP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARTIFACTS = ROOT / "test-artifacts" / "pages"
DESKTOP = {"width": 1100, "height": 760}
PHONE = {"width": 390, "height": 780}
TIMEOUT_MS = 10_000

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is in requirements-dev.txt"
)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail("chromium not found: `make test` installs it (apt-get install -y chromium)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def web_server() -> Iterator[ServerProcess]:
    """One `python -m wsapp serve` for the page tests of a module."""
    with running_server("serve") as srv:
        yield srv


class PageWatch:
    """Collects what a page must never do: dialogs, uncaught errors, console errors (CSP!)."""

    def __init__(self, page, allow_console: tuple[str, ...] = ()) -> None:
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.console_errors: list[str] = []
        self.allow_console = allow_console
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", self._console)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, msg) -> None:
        if msg.type == "error" and not any(a in msg.text for a in self.allow_console):
            self.console_errors.append(msg.text)

    def assert_clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.errors == [], self.errors
        assert self.console_errors == [], self.console_errors


@pytest.fixture
def new_page(browser):
    """Factory: a page in its own context (own localStorage), watched, closed afterwards."""
    contexts = []

    def make(viewport=DESKTOP, allow_console: tuple[str, ...] = ()):
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        return page, PageWatch(page, allow_console)

    yield make
    for context in contexts:
        context.close()


def screenshot(page, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
