"""The browser test setup works: Chromium opens a page served in this process, a click changes
what people see (found by role and label), and screenshots come out in both colour schemes."""

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.browser.helpers import expect, screenshot

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = pytest.mark.browser

HELLO = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Greeter</title>
  <style>
    body { font: 16px system-ui, sans-serif; background: #fff; color: #111; margin: 2rem; }
    @media (prefers-color-scheme: dark) { body { background: #111; color: #eee; } }
  </style>
</head>
<body>
  <main>
    <label for="name">Name</label> <input id="name" value="world">
    <button type="button">Say hello</button>
    <p role="status">Nobody greeted yet</p>
  </main>
  <script>
    document.querySelector("button").addEventListener("click", () => {
      const name = document.getElementById("name").value;
      document.querySelector("[role=status]").textContent = `Hello, ${name}!`;
    });
  </script>
</body>
</html>
"""


async def _hello(_request: web.Request) -> web.Response:
    return web.Response(text=HELLO, content_type="text/html")


async def test_a_click_changes_the_page_and_screenshots_come_in_both_schemes(
    page: "Page", tmp_path: Path
) -> None:
    app = web.Application()
    app.router.add_get("/", _hello)
    async with TestServer(app, host="127.0.0.1") as server:
        await page.goto(str(server.make_url("/")))
        await expect(page).to_have_title("Greeter")
        status = page.get_by_role("status")
        await expect(status).to_have_text("Nobody greeted yet")
        await page.get_by_label("Name").fill("Ada")
        await page.get_by_role("button", name="Say hello").click()
        await expect(status).to_have_text("Hello, Ada!")
        light, dark = await screenshot(page, "greeter", tmp_path)
    assert (light.name, dark.name) == ("greeter-light.png", "greeter-dark.png")
    assert light.read_bytes()[:8] == dark.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert light.read_bytes() != dark.read_bytes()  # the dark scheme really was emulated
    assert not await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
