"""The web console's files: `/assets/*` and `index.html` for every console path.

The files are read once, compressed once and served from memory with a content hash as ETag, so
a browser revalidates cheaply and never runs a stale script after an upgrade.
"""

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from services.common.errors import NotFound

STATIC_DIR = Path(__file__).resolve().parent.parent / "console" / "static"

# The console's own paths (the router in app.js); each answers with index.html.
CONSOLE_PATHS = (
    "/",
    "/logs",
    "/executions/{executionId}",
    "/workflows",
    "/workflows/{workflowId}",
    "/alerts",
    "/notifications",
    "/notifications/new",
    "/notifications/{id}",
    "/notifications/{id}/edit",
    "/keys",
    "/settings",
    "/sign-in",
    "/invite",
)

# Same origin only: no third-party host can run code, style or receive data from the console.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Asset:
    """One file as served: its bytes, their gzip form and a strong ETag."""

    body: bytes
    gzipped: bytes
    content_type: str
    etag: str


def load_assets(root: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every file under `root` by its path relative to it (`pages/logs.js`)."""
    assets = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes()
        kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        assets[path.relative_to(root).as_posix()] = Asset(
            body=body,
            gzipped=gzip.compress(body, compresslevel=9, mtime=0),
            content_type=kind or "application/octet-stream",
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        )
    return assets


def asset_response(request: web.Request, asset: Asset) -> web.Response:
    """The asset, 304 when the browser has it, gzipped when the browser takes gzip."""
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
    if request.headers.get("If-None-Match") == asset.etag:
        return web.Response(status=304, headers=headers)
    body = asset.body
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Vary"] = "Accept-Encoding"
    return web.Response(body=body, headers=headers, content_type=asset.content_type)


def add_console_routes(app: web.Application, assets: dict[str, Asset] | None = None) -> None:
    """Serve the console under `/`; the API's routes must already be added."""
    files = load_assets() if assets is None else assets
    index = files["index.html"]

    async def page(request: web.Request) -> web.Response:
        return asset_response(request, index)

    async def asset(request: web.Request) -> web.Response:
        found = files.get(request.match_info["path"])
        if found is None:
            raise NotFound("No such console file.")
        return asset_response(request, found)

    for path in CONSOLE_PATHS:
        app.router.add_get(path, page)
    app.router.add_get("/assets/{path:.+}", asset)
