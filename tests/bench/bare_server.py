"""Baseline for the whoami benchmark: a bare aiohttp handler returning the same JSON."""

import sys

from aiohttp import web

BODY = (
    b'{"data":{"keyId":"kak_0123456789abcdefghij","projectId":"prj_0123456789abcdefghij",'
    b'"name":"default","scopes":["*"],"createdAt":"2026-01-01T00:00:00.000Z",'
    b'"lastUsedAt":"2026-01-01T00:00:00.000Z"}}'
)


async def whoami(_request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/api/v1/whoami", whoami)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
