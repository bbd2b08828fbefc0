"""Egress guard, literal part (pure): refuse receivers on internal addresses.

Checks what can be decided from the URL alone: scheme, literal IPs in every spelling the
standard library accepts (dotted, integer, hex and octal shorthands, IPv4-mapped IPv6) and
names that are internal by definition. IPv6 addresses that carry an IPv4 address (IPv4-mapped
`::ffff:0:0/96`, IPv4-compatible `::/96`, 6to4 `2002::/16`) are judged by that IPv4 address;
the local-use NAT64 prefix `64:ff9b:1::/48` (and the well-known `64:ff9b::/96`) is refused.
Delivery-time checks resolve names and check every address again (the dispatcher), since a
public name can point anywhere.
"""

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BLOCKED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "255.255.255.255/32", "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96",
        "64:ff9b:1::/48", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
    )
)  # fmt: skip
INTERNAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
INTERNAL_NAMES = ("localhost", "metadata.google.internal", "metadata")


class EgressRefused(ValueError):
    """A receiver URL points somewhere CodeCourier will not send to."""


def parse_cidrs(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Allow-list entries from `CC_EGRESS_ALLOW_CIDRS`."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def literal_ip(host: str) -> IPAddress | None:
    """The address a host spells literally (incl. `2130706433`, `0x7f.1`), else None."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))  # legacy shorthands
    except OSError:
        return None


_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches (mapped, compatible or 6to4), else None."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.scope_id is None and address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _within(address: IPAddress, networks: tuple[Network, ...]) -> bool:
    return any(address in net for net in networks if net.version == address.version)


def address_allowed(address: IPAddress, allow: tuple[Network, ...]) -> bool:
    """Whether an address may receive deliveries."""
    if _within(address, allow):
        return True
    if (embedded := embedded_ipv4(address)) is not None:
        return address_allowed(embedded, allow)
    return not _within(address, BLOCKED)


def check_url(url: str, allow: tuple[Network, ...]) -> str:
    """The host of an acceptable receiver URL; EgressRefused says why one is not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressRefused("Receiver URLs must be absolute http(s) URLs.")
    if parts.username or parts.password:
        raise EgressRefused("Receiver URLs must not carry credentials.")
    return check_host(parts.hostname, allow)


def check_host(host: str, allow: tuple[Network, ...]) -> str:
    """The normalised host if a literal IP or name is acceptable; EgressRefused says why not."""
    host = host.rstrip(".").lower()
    address = literal_ip(host)
    if address is not None:
        if not address_allowed(address, allow):
            raise EgressRefused(f"Receiver address {address} is internal; it is not allowed.")
        return host
    loopback_allowed = any(ipaddress.ip_address("127.0.0.1") in n for n in allow if n.version == 4)
    if (host in INTERNAL_NAMES or host.endswith(INTERNAL_SUFFIXES)) and not loopback_allowed:
        raise EgressRefused(f"Receiver host {host} is internal; it is not allowed.")
    return host
