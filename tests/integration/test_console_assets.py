"""The console's files over real HTTP: every console path answers with the app's page, assets
revalidate by content hash and travel gzipped, and no third-party host is referenced."""

import gzip
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services.api.console import CONSOLE_PATHS, STATIC_DIR, add_console_routes, load_assets
from services.common.http import envelope_middleware

CONSOLE_BUDGET_GZIP_BYTES = 200 * 1024

# The server runs in this process, where warnings are errors: the API keeps per-request values
# under plain string keys, which aiohttp only recommends against.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application(middlewares=[envelope_middleware])
    add_console_routes(app)
    async with TestClient(TestServer(app)) as running:
        yield running


@pytest.mark.parametrize("path", ["/", "/logs", "/executions/exec-1", "/notifications/ntf_1/edit"])
async def test_console_paths_answer_with_the_app_page_and_a_strict_policy(
    client: TestClient[Any, Any], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert '<script type="module" src="/assets/app.js">' in await response.text()
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy


async def test_assets_revalidate_by_etag_and_are_gzipped(client: TestClient[Any, Any]) -> None:
    first = await client.get("/assets/app.js", headers={"Accept-Encoding": "gzip"})
    assert first.status == 200
    assert first.headers["Content-Encoding"] == "gzip"
    assert first.content_type == "text/javascript"
    assert b"navigate" in await first.read()  # the client decompressed what was sent gzipped
    again = await client.get("/assets/app.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304


async def test_unknown_assets_and_paths_are_404_in_the_error_envelope(
    client: TestClient[Any, Any],
) -> None:
    missing = await client.get("/assets/nope.js")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "NOT_FOUND"
    traversal = await client.get("/assets/..%2Fapi%2Fconsole.py")
    assert traversal.status == 404
    assert (await client.get("/not-a-console-page")).status == 404


def test_every_router_path_is_served_and_every_page_module_exists() -> None:
    app_js = (STATIC_DIR / "app.js").read_text()
    routes = re.findall(r'\["(/[^"]*)", "(\w+)"', app_js)
    served = {re.sub(r"\{\w+\}", ":x", p) for p in CONSOLE_PATHS}
    for pattern, page in routes:
        assert re.sub(r":\w+", ":x", pattern) in served, pattern
        assert (STATIC_DIR / "pages" / f"{page}.js").is_file(), page


def test_the_console_loads_nothing_from_another_host_and_fits_its_budget() -> None:
    assets = load_assets()
    for name, asset in assets.items():
        text = asset.body.decode(errors="replace")
        hosts = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"']*", text)
        assert [h for h in hosts if "www.w3.org/2000/svg" not in h] == [], name
    total = sum(len(a.gzipped) for n, a in assets.items() if n.endswith((".js", ".css")))
    assert total < CONSOLE_BUDGET_GZIP_BYTES
    assert len(gzip.decompress(assets["app.js"].gzipped)) == len(assets["app.js"].body)
