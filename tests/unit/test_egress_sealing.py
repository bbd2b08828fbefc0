"""The literal egress guard and sealed secrets."""

import pytest

from services.common.egress import EgressRefused, check_url, literal_ip, parse_cidrs
from services.common.sealing import seal, sealing_key, unseal

REFUSED = [
    "http://127.0.0.1/x", "http://localhost:8080/x", "http://[::1]/x", "http://10.0.0.1/x",
    "http://169.254.169.254/latest/meta-data", "http://0x7f.1/x", "http://2130706433/x",
    "http://[::ffff:127.0.0.1]/x", "http://192.168.1.10/x", "http://100.64.0.1/x",
    "http://metadata.google.internal/x", "http://printer.local/x", "http://0.0.0.0/x",
    "http://[fd00::1]/x", "http://user:pw@example.com/x", "ftp://example.com/x", "not a url",
    # IPv6 forms that embed an IPv4 address: IPv4-compatible, 6to4, local-use NAT64
    "http://[::127.0.0.1]/x", "http://[::a9fe:a9fe]/x", "http://[::10.0.0.1]/x",
    "http://[2002:7f00:1::]/x", "http://[2002:a9fe:a9fe::1]/x", "http://[2002:c0a8:10a::]/x",
    "http://[64:ff9b:1::7f00:1]/x", "http://[64:ff9b:1:ffff::808:808]/x",
]  # fmt: skip


@pytest.mark.parametrize("url", REFUSED)
def test_internal_receivers_are_refused(url: str) -> None:
    with pytest.raises(EgressRefused):
        check_url(url, ())


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T/B/X",
        "http://93.184.216.34/x",
        "http://[2002:5db8:d822::1]/x",  # 6to4 of the public 93.184.216.34
        "http://[2606:2800:220:1:248:1893:25c8:1946]/x",
    ],
)
def test_public_receivers_pass(url: str) -> None:
    assert check_url(url, ())


def test_allow_list_opens_exactly_its_ranges() -> None:
    allow = parse_cidrs(["127.0.0.0/8", "::1/128"])
    assert check_url("http://127.0.0.1:9000/x", allow) == "127.0.0.1"
    assert check_url("http://localhost:9000/x", allow) == "localhost"
    assert check_url("http://[::ffff:127.0.0.1]/x", allow)
    with pytest.raises(EgressRefused):
        check_url("http://10.1.2.3/x", allow)


def test_legacy_ipv4_spellings_are_understood() -> None:
    assert str(literal_ip("0x7f.1")) == "127.0.0.1"
    assert str(literal_ip("2130706433")) == "127.0.0.1"
    assert str(literal_ip("017700000001")) == "127.0.0.1"
    assert literal_ip("example.com") is None


def test_sealed_secrets_round_trip_and_are_bound_to_key_and_context() -> None:
    key = sealing_key("server secret")
    token = seal("whsec_abc", key, "ntf_1")
    assert "whsec_abc" not in token
    assert unseal(token, key, "ntf_1") == "whsec_abc"
    assert seal("whsec_abc", key, "ntf_1") != token  # fresh nonce each time
    for wrong_key, context in ((sealing_key("other"), "ntf_1"), (key, "ntf_2")):
        with pytest.raises(ValueError, match="does not open"):
            unseal(token, wrong_key, context)
