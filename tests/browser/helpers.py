"""What browser tests share: Playwright's `expect`, and screenshots in both colour schemes.

Test modules import `expect` from here, not from Playwright: without Playwright they still load,
and the `browser` fixture skips them with the reason (or fails them under CC_REQUIRE_SERVICES=1).
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.async_api import Page

expect: Any
try:
    from playwright.async_api import expect
except ImportError:  # the `browser` fixture reports it before any test can call this
    expect = None

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
SCHEMES = ("light", "dark")


async def screenshot(page: "Page", name: str, directory: Path = SCREENSHOTS) -> list[Path]:
    """Write `<name>-light.png` and `<name>-dark.png` of the whole page (Playwright creates the
    folder); the page is left in the light scheme."""
    written = []
    await page.evaluate("window.scrollTo(0, 0)")  # sticky parts where they are on arrival
    for scheme in SCHEMES:
        await page.emulate_media(color_scheme=scheme)
        path = directory / f"{name}-{scheme}.png"
        await page.screenshot(path=path, full_page=True, animations="disabled")
        written.append(path)
    await page.emulate_media(color_scheme="light")
    return written
