"""The delivery-time egress guard over real sockets: refused targets never see a connection."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from services.common.egress import EgressRefused, check_host, parse_cidrs
from services.dispatcher.egress import guarded_session, post

LOOPBACK = parse_cidrs(["127.0.0.0/8", "::1/128"])


class Listener:
    """A real TCP listener that counts connections and answers anything with 200."""

    def __init__(self) -> None:
        self.connections = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read(65536)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def listening(host: str) -> AsyncIterator[tuple[Listener, int]]:
    """A Listener on `host` and a free port."""
    listener = Listener()
    server = await asyncio.start_server(listener.serve, host, 0)
    try:
        yield listener, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def receiving(host: str, handler: Handler) -> AsyncIterator[int]:
    """A real aiohttp receiver on `host` answering every POST with `handler`; its port."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def loopback_name() -> str:
    """A real, non-internal-by-name host name that resolves to loopback only on this machine."""
    hosts = Path("/etc/hosts").read_text().split("\n") if Path("/etc/hosts").exists() else []
    listed = [
        n for line in hosts if line.strip() and not line.startswith("#") for n in line.split()[1:]
    ]
    for name in [socket.gethostname(), *listed]:
        try:
            check_host(name, ())
            infos = socket.getaddrinfo(name, 80, socket.AF_INET, socket.SOCK_STREAM)
        except (EgressRefused, OSError):
            continue
        if infos and all(str(info[4][0]).startswith("127.") for info in infos):
            return name
    pytest.skip("no host name here resolves to loopback only")


REFUSED = [
    ("http://127.0.0.1:{port}/", "127.0.0.1"),
    ("http://localhost:{port}/", "127.0.0.1"),
    ("http://[::1]:{port}/", "::1"),
    ("http://0x7f.1:{port}/", "127.0.0.1"),
    ("http://2130706433:{port}/", "127.0.0.1"),
    ("http://[::ffff:127.0.0.1]:{port}/", "127.0.0.1"),
    ("http://[::127.0.0.1]:{port}/", "127.0.0.1"),
    ("http://[2002:7f00:1::1]:{port}/", "127.0.0.1"),
    ("http://[64:ff9b:1::7f00:1]:{port}/", "127.0.0.1"),
    ("http://user:pw@127.0.0.1:{port}/hook?token=s3cret", "127.0.0.1"),
]


@pytest.mark.parametrize(("template", "host"), REFUSED)
async def test_internal_receivers_are_refused_before_connecting(template: str, host: str) -> None:
    async with listening(host) as (listener, port), guarded_session() as session:
        with pytest.raises(EgressRefused, match="is internal") as refused:
            await post(session, template.format(port=port), b"{}", {}, 2.0)
        await asyncio.sleep(0.05)
    assert listener.connections == 0
    assert "s3cret" not in str(refused.value)
    assert "pw" not in str(refused.value)


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://169.254.169.254/latest/meta-data"])
async def test_private_and_metadata_addresses_are_refused(url: str) -> None:
    async with guarded_session() as session:
        with pytest.raises(EgressRefused, match="is internal"):
            await post(session, url, b"{}", {}, 2.0)


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    name = loopback_name()
    async with listening("127.0.0.1") as (listener, port), guarded_session() as session:
        with pytest.raises(EgressRefused, match=rf"{name} resolves to 127\."):
            await post(session, f"http://{name}:{port}/", b"{}", {}, 2.0)
        await asyncio.sleep(0.05)
    assert listener.connections == 0


@pytest.mark.parametrize("allow", ["127.0.0.1/32", "127.0.0.0/8"])
async def test_redirects_are_returned_not_followed(allow: str) -> None:
    async with listening("127.0.0.2") as (internal, internal_port):
        location = f"http://127.0.0.2:{internal_port}/steal"

        async def redirect(request: web.Request) -> web.Response:
            return web.Response(status=302, headers={"Location": location})

        async with (
            receiving("127.0.0.1", redirect) as port,
            guarded_session(parse_cidrs([allow])) as session,
        ):
            reply = await post(session, f"http://127.0.0.1:{port}/hook", b"{}", {}, 2.0)
        await asyncio.sleep(0.05)
    assert reply.status == 302
    assert reply.headers["Location"] == location
    assert internal.connections == 0


async def test_allow_listed_receivers_get_the_delivery_over_one_kept_alive_connection() -> None:
    seen: list[tuple[bytes, str, object]] = []

    async def accept(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((await request.read(), request.headers["sim-event"], peer))
        return web.Response(status=202, text="accepted \u2713")

    async with receiving("127.0.0.1", accept) as port, guarded_session(LOOPBACK) as session:
        url = f"http://127.0.0.1:{port}/hook"
        first = await post(session, url, b'{"n":1}', {"sim-event": "workflow.run"}, 2.0)
        second = await post(session, url, b'{"n":2}', {"sim-event": "workflow.run"}, 2.0)
    assert (first.status, first.body) == (202, "accepted \u2713")
    assert second.status == 202
    assert [body for body, _, _ in seen] == [b'{"n":1}', b'{"n":2}']
    assert seen[0][2] == seen[1][2]  # same client address and port: the connection was reused


async def test_allow_listed_names_resolve_and_deliver() -> None:
    async def accept(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    name = loopback_name()
    async with receiving("127.0.0.1", accept) as port, guarded_session(LOOPBACK) as session:
        reply = await post(session, f"http://{name}:{port}/hook", b"{}", {}, 2.0)
    assert (reply.status, reply.body) == (200, "ok")


async def test_long_bodies_are_clipped_to_16_kib_of_text() -> None:
    async def verbose(request: web.Request) -> web.Response:
        return web.Response(text="\u00e9" * 100_000)

    async with receiving("127.0.0.1", verbose) as port, guarded_session(LOOPBACK) as session:
        reply = await post(session, f"http://127.0.0.1:{port}/", b"{}", {}, 2.0)
    assert reply.body == "\u00e9" * 16 * 1024


async def test_a_silent_receiver_times_out_without_the_url_in_the_message() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with guarded_session(LOOPBACK) as session:
            with pytest.raises(TimeoutError) as timed_out:
                await post(session, f"http://127.0.0.1:{port}/T/B/s3cret", b"{}", {}, 0.3)
    finally:
        server.close()
        await server.wait_closed()
    assert "s3cret" not in str(timed_out.value)
    assert f"127.0.0.1:{port}" in str(timed_out.value)
