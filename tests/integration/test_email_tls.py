"""Email over TLS against aiosmtpd: STARTTLS when offered, implicit TLS for `smtps://`, and
certificates verified against the system's CAs plus `CC_SMTP_CA_FILE` (a throwaway CA here)."""

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.common.config import ConfigError
from services.common.egress import parse_cidrs
from services.dispatcher.channels import email
from services.dispatcher.channels.base import Context, Result, Secrets
from services.dispatcher.egress import guarded_session
from tests.receivers import SmtpReceiver, notification, sample_payload


@dataclass(frozen=True)
class Pki:
    """A throwaway CA (`ca_file`, PEM) and a server certificate it signed, for 127.0.0.1."""

    ca_file: str
    server: ssl.SSLContext  # the receiver's side


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
    )


LOCAL_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))


def make_pki(where: Path, names: tuple[x509.GeneralName, ...] = LOCAL_NAMES) -> Pki:
    """Write a CA and a server certificate for `names` under `where`."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    server_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        _certificate("CodeCourier Test CA", ca_key, "CodeCourier Test CA", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        _certificate("CodeCourier test server", server_key, "CodeCourier Test CA", ca_key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (where / "ca.pem").write_bytes(ca.public_bytes(pem))
    (where / "server.pem").write_bytes(leaf.public_bytes(pem))
    (where / "server.key").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(where / "server.pem", where / "server.key")
    return Pki(ca_file=str(where / "ca.pem"), server=server)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def http() -> AsyncIterator[Any]:
    async with guarded_session(parse_cidrs(["127.0.0.0/8"])) as session:
        yield session


def smtp_ctx(http: Any, url: str, tls: ssl.SSLContext | None) -> Context:
    return Context(http=http, timeout_s=5, smtp_url=url, smtp_tls=tls)


def record() -> Any:
    return notification("email", sample_payload(), {"recipients": ["ops@example.com"]})


async def test_starttls_is_used_when_offered_and_the_ca_file_is_trusted(
    pki: Pki, http: Any
) -> None:
    async with SmtpReceiver(credentials=("mailer", "pw"), tls=pki.server) as server:
        assert server.url.startswith("smtp://")
        tls = email.tls_context(pki.ca_file)
        result = await email.send(record(), Secrets(), smtp_ctx(http, server.url, tls))
    assert result.delivered and result.status == 250 and result.error is None
    assert server.logins == [("mailer", "pw")]  # AUTH is only offered once TLS is up
    [mail] = server.mails  # MAIL is refused before STARTTLS (require_starttls)
    assert mail.tls is not None and mail.tls.startswith("TLSv1.")
    assert mail.recipients == ["ops@example.com"]


async def test_smtps_is_tls_from_the_start(pki: Pki, http: Any) -> None:
    async with SmtpReceiver(tls=pki.server, implicit_tls=True) as server:
        assert server.url.startswith("smtps://")
        tls = email.tls_context(pki.ca_file)
        result = await email.send(record(), Secrets(), smtp_ctx(http, server.url, tls))
    assert result.delivered and result.status == 250
    [mail] = server.mails
    assert mail.tls is not None and mail.tls.startswith("TLSv1.")


@pytest.mark.parametrize("implicit_tls", [False, True], ids=["starttls", "smtps"])
async def test_an_unverified_certificate_is_a_final_failure(
    pki: Pki, http: Any, implicit_tls: bool
) -> None:
    receiver = SmtpReceiver(credentials=("mailer", "pw"), tls=pki.server, implicit_tls=implicit_tls)
    async with receiver as server:
        result = await email.send(record(), Secrets(), smtp_ctx(http, server.url, None))
    assert result == Result(delivered=False, error=result.error)  # final, no status
    assert result.error == (
        f"the TLS certificate of 127.0.0.1:{server.port} did not verify (unable to get local "
        "issuer certificate); fix it or trust its CA with CC_SMTP_CA_FILE"
    )
    assert server.mails == [] and server.logins == []


async def test_the_host_name_is_verified(tmp_path: Path, http: Any) -> None:
    elsewhere = make_pki(tmp_path, (x509.DNSName("relay.example.com"),))
    async with SmtpReceiver(tls=elsewhere.server) as server:
        tls = email.tls_context(elsewhere.ca_file)
        result = await email.send(record(), Secrets(), smtp_ctx(http, server.url, tls))
    assert not result.delivered and not result.retryable and result.error
    assert "did not verify (IP address mismatch" in result.error
    assert server.mails == []


async def test_credentials_are_never_sent_in_plain_text_when_starttls_is_missing(
    http: Any,
) -> None:
    async with SmtpReceiver(credentials=("mailer", "pw")) as server:  # no STARTTLS offered
        result = await email.send(record(), Secrets(), smtp_ctx(http, server.url, None))
    assert not result.delivered and result.retryable and result.status is None
    assert result.error == (
        f"127.0.0.1:{server.port} did not offer STARTTLS; the credentials in CC_SMTP_URL are "
        "not sent in plain text (use smtps://, or add ?allow_plaintext_auth=1 to accept it)"
    )
    assert server.logins == [] and server.mails == []


async def test_plain_text_auth_only_when_the_url_opts_in(http: Any) -> None:
    async with SmtpReceiver(credentials=("mailer", "pw")) as server:
        url = server.url + "?allow_plaintext_auth=1"
        result = await email.send(record(), Secrets(), smtp_ctx(http, url, None))
    assert result.delivered and server.logins == [("mailer", "pw")]
    [mail] = server.mails
    assert mail.tls is None


async def test_without_credentials_starttls_stays_opportunistic(http: Any) -> None:
    async with SmtpReceiver() as server:
        result = await email.send(record(), Secrets(), smtp_ctx(http, server.url, None))
    assert result.delivered and [m.tls for m in server.mails] == [None]


def test_the_ca_file_is_trusted_besides_the_system_cas(pki: Pki) -> None:
    assert email.tls_context(None) is None
    tls = email.tls_context(pki.ca_file)
    assert tls is not None and tls.verify_mode == ssl.CERT_REQUIRED and tls.check_hostname
    system = ssl.create_default_context().cert_store_stats()["x509_ca"]
    assert tls.cert_store_stats()["x509_ca"] == system + 1


@pytest.mark.parametrize("content", [None, "not a certificate"])
def test_an_unusable_ca_file_is_a_config_error(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match="CC_SMTP_CA_FILE"):
        email.tls_context(str(path))
