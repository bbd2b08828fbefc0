"""Key secrets, hashing and scope rules."""

import math

from services.common import apikeys


def test_secret_has_the_contract_prefix_and_over_190_bits() -> None:
    secret = apikeys.new_secret()
    body = secret.removeprefix("cc_live_")
    assert secret.startswith("cc_live_")
    assert len(body) * math.log2(62) >= 190
    assert apikeys.is_well_formed(secret)
    assert apikeys.new_secret() != secret


def test_malformed_secrets_are_recognised() -> None:
    for bad in ["", "cc_live_", "cc_live_short", "sk_live_" + "a" * 40, "cc_live_" + "!" * 40]:
        assert not apikeys.is_well_formed(bad)


def test_hash_depends_on_the_server_key() -> None:
    secret = apikeys.new_secret()
    one = apikeys.hash_secret(secret, "server-a")
    assert one == apikeys.hash_secret(secret, "server-a")
    assert one != apikeys.hash_secret(secret, "server-b")
    assert secret not in one
    assert apikeys.hashes_match(one, one)
    assert not apikeys.hashes_match(one, apikeys.hash_secret(secret, "server-b"))


def test_display_prefix_is_too_short_to_use() -> None:
    secret = apikeys.new_secret()
    prefix = apikeys.display_prefix(secret)
    assert secret.startswith(prefix)
    assert not apikeys.is_well_formed(prefix)


def test_scopes_and_the_wildcard() -> None:
    assert apikeys.has_scope(["*"], "keys:write")
    assert apikeys.has_scope(["keys:write"], "keys:write")
    assert not apikeys.has_scope(["keys:read"], "keys:write")


def test_a_key_cannot_grant_what_it_lacks() -> None:
    assert apikeys.ungrantable(["*"], ["*", "logs:read"]) == []
    assert apikeys.ungrantable(["keys:write", "logs:read"], ["logs:read"]) == []
    assert apikeys.ungrantable(["keys:write"], ["logs:read", "keys:write"]) == ["logs:read"]
    assert apikeys.ungrantable(["keys:write", "logs:read"], ["*"]) == ["*"]
