"""The delivery-time egress guard's pure parts: host spellings, resolved addresses, URL checks."""

import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from services.common.egress import EgressRefused, check_host, parse_cidrs
from services.dispatcher.egress import GuardedResolver, guarded_session, post

LOOPBACK = parse_cidrs(["127.0.0.0/8", "::1/128"])


class FixedResolver(AbstractResolver):
    """Answers every name with the same addresses, as a DNS server under someone's control."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return [
            ResolveResult(hostname=host, host=h, port=port, family=family, proto=0, flags=0)
            for h in self.hosts
        ]

    async def close(self) -> None:
        pass


# What the connector sees (yarl's raw_host): legacy IPv4 shorthands are left as spelled,
# IPv6 and IDNA are normalised. The guard must refuse each spelling it is handed.
SPELLINGS = [
    ("http://0x7f.1:8080/", "0x7f.1"),
    ("http://2130706433:8080/", "2130706433"),
    ("http://017700000001/", "017700000001"),
    ("http://127.1/", "127.1"),
    ("http://127.0.0.1./", "127.0.0.1."),
    ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "::ffff:7f00:1"),
    ("http://LOCALHOST./", "localhost."),
    ("http://\u24dbocalhost/", "localhost"),
    ("http://[fe80::1%25eth0]/", "fe80::1%25eth0"),
    ("http://metadata.google.internal/", "metadata.google.internal"),
]


@pytest.mark.parametrize(("url", "raw_host"), SPELLINGS)
def test_yarl_hands_the_connector_spellings_the_guard_refuses(url: str, raw_host: str) -> None:
    assert URL(url).raw_host == raw_host
    with pytest.raises(EgressRefused, match="is internal"):
        check_host(raw_host, ())


def test_loopback_allow_list_opens_loopback_and_internal_names_only() -> None:
    assert check_host("0x7f.1", LOOPBACK) == "0x7f.1"
    assert check_host("localhost.", LOOPBACK) == "localhost"
    assert check_host("example.com", ()) == "example.com"
    with pytest.raises(EgressRefused, match=r"10\.0\.0\.1"):
        check_host("10.0.0.1", LOOPBACK)


async def test_a_name_with_any_internal_address_is_refused() -> None:
    resolver = GuardedResolver((), FixedResolver("93.184.216.34", "10.1.2.3"))
    with pytest.raises(EgressRefused, match=r"evil\.example resolves to 10\.1\.2\.3"):
        await resolver.resolve("evil.example", 443)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "::ffff:a9fe:a9fe",
        "fe80::1%eth0",
        "::a9fe:a9fe",
        "2002:a00:1::1",
        "64:ff9b:1::a00:1",
    ],
)
async def test_internal_resolved_addresses_are_refused(address: str) -> None:
    resolver = GuardedResolver((), FixedResolver(address))
    with pytest.raises(EgressRefused, match="is internal"):
        await resolver.resolve("rebind.example", 80)


async def test_unreadable_resolved_addresses_are_refused() -> None:
    with pytest.raises(EgressRefused, match="unreadable"):
        await GuardedResolver((), FixedResolver("not-an-ip")).resolve("odd.example", 80)


async def test_public_and_allow_listed_addresses_resolve() -> None:
    public = FixedResolver("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    assert len(await GuardedResolver((), public).resolve("example.com", 80)) == 2
    local = GuardedResolver(LOOPBACK, FixedResolver("127.0.0.1", "::1"))
    assert [r["host"] for r in await local.resolve("local.example", 80)] == ["127.0.0.1", "::1"]


@pytest.mark.parametrize(
    "url", ["ftp://user:pw@example.com/x?token=s3cret", "/relative?token=s3cret", "http:///x"]
)
async def test_non_http_urls_are_refused_without_echoing_them(url: str) -> None:
    async with guarded_session() as session:
        with pytest.raises(EgressRefused) as refused:
            await post(session, url, b"{}", {}, 1.0)
    assert "s3cret" not in str(refused.value)
    assert "pw" not in str(refused.value)


async def test_post_insists_on_a_guarded_session() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TypeError, match="guarded_session"):
            await post(session, "https://example.com/hook", b"{}", {}, 1.0)
