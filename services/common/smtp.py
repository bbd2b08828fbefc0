"""Sending one email through the SMTP server of `CC_SMTP_URL`: the dispatcher's email channel and
the API's notices to project owners share it, so both honour the same URL, TLS rules and CA.

The rules (STARTTLS required before credentials unless `?allow_plaintext_auth=1`, certificates
always verified) are described in `services.dispatcher.channels.email`.
"""

import asyncio
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from services.common.config import ConfigError


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to send: parsed from `CC_SMTP_URL`."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None
    plaintext_auth: bool = False  # the URL accepts AUTH without TLS (`?allow_plaintext_auth=1`)

    @property
    def start_tls(self) -> bool | None:
        """aiosmtplib's `start_tls`: required before sending credentials, else if offered."""
        if self.implicit_tls:
            return False
        return True if self.username and not self.plaintext_auth else None


def smtp_server(url: str) -> SmtpServer:
    """The SMTP server of an `smtp://` or `smtps://` URL; ValueError if it is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("CC_SMTP_URL must be smtp://[user:pass@]host[:port] or smtps://...")
    implicit_tls = parts.scheme == "smtps"
    opt_in = parse_qs(parts.query).get("allow_plaintext_auth", [""])[-1].lower()
    return SmtpServer(
        host=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        implicit_tls=implicit_tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        plaintext_auth=opt_in in ("1", "true", "yes"),
    )


def tls_context(ca_file: str | None) -> ssl.SSLContext | None:
    """The context verifying SMTP servers: the system's CAs plus `ca_file` (None: no extra CA)."""
    if not ca_file:
        return None
    # create_default_context(cafile=...) would trust that file *instead of* the system's CAs
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"CC_SMTP_CA_FILE is not a readable PEM CA bundle: {exc}") from exc
    return context


async def submit(
    message: EmailMessage,
    *,
    sender: str | None,
    recipients: list[str],
    server: SmtpServer,
    tls: ssl.SSLContext | None,
    timeout_s: float,
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    """Hand a message to the server: the recipients it refused and its reply (aiosmtplib's
    errors are raised as they are)."""
    async with asyncio.timeout(timeout_s):  # aiosmtplib's timeout is per command
        return await aiosmtplib.send(
            message, sender=sender, recipients=recipients, hostname=server.host,
            port=server.port, username=server.username, password=server.password,
            use_tls=server.implicit_tls, start_tls=server.start_tls,
            tls_context=tls,  # None: aiosmtplib's, verifying with the system's CAs
            timeout=timeout_s,
        )  # fmt: skip
