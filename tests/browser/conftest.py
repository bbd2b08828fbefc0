"""Fixtures of the browser tests: Debian's Chromium driven by Playwright's async API.

One browser for the session (starting Chromium takes a second or two) and a fresh context per
test, so no cookie, storage or emulation leaks from one test into the next. The async API runs on
the session's event loop like every other async fixture (`asyncio_mode = auto`, session loop
scope); Playwright's sync API refuses to run where an event loop is running.
"""

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from tests.conftest import _require_marker, _skip_or_fail

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="session")
async def browser() -> "AsyncIterator[Browser]":
    """Chromium for the whole session; skipped (failed under CC_REQUIRE_SERVICES=1) without it."""
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        _skip_or_fail(f"Playwright is not installed ({exc}); run `make install`")
    if not os.access(CHROMIUM, os.X_OK):
        _skip_or_fail(f"{CHROMIUM} is missing; install Debian's chromium package")
    playwright = await async_playwright().start()
    try:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except Exception as exc:
        await playwright.stop()
        _skip_or_fail(f"{CHROMIUM} did not start: {exc}")
    yield launched
    await launched.close()
    await playwright.stop()


@pytest.fixture
async def page(request: pytest.FixtureRequest, browser: "Browser") -> "AsyncIterator[Page]":
    """A page of a context of its own (1280x800, light colour scheme) for one test."""
    _require_marker(request, "browser")
    context = await browser.new_context(viewport=VIEWPORT, color_scheme="light")
    try:
        yield await context.new_page()
    finally:
        await context.close()
