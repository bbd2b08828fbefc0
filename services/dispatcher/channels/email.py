"""Email channel: one text-and-HTML message per delivery, sent over SMTP.

Subjects: `Alert: <workflow>` for a fired alert, `Resolved: <workflow>` when an alert resolves,
`Error Alert: <workflow>` for a plain notification of a failed execution, otherwise
`Workflow Completed: <workflow>`, where <workflow> is the workflow's name, else its id. The
Message-ID is made from the delivery id, so every retry and redelivery carries the same one
and a mail system can drop duplicates. Trace spans are never shown.

`CC_SMTP_URL` is `smtp://user:pass@host:port` (port 25 by default) or `smtps://...` (TLS from
the start; port 465 by default). With `smtp://` and credentials, STARTTLS is required: a server
that does not offer it (or a network that strips the offer) never sees the credentials, and the
attempt fails (retryable), unless the URL ends in `?allow_plaintext_auth=1`. Without credentials,
STARTTLS is used when offered and the message goes in plain text otherwise. The server's
certificate and host name are always verified, against the system's CAs plus `CC_SMTP_CA_FILE`
when set (a private relay's CA).

Outcome: the server accepted the message -> delivered, with any recipients it refused listed in
`error`; it refused every recipient -> retryable if any refusal was 4xx, else final; a
certificate that does not verify -> final (a configuration problem that waiting does not fix);
connection errors, timeouts and 4xx replies -> retryable; other 5xx replies -> final. `status`
is the SMTP reply code.

What the message says comes from `channels.summary`, as for Slack.
"""

import html
import ssl
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Final

import aiosmtplib

from schemas.destinations import EmailDestination
from schemas.notifications import NotificationRecord
from services.common.smtp import SmtpServer, smtp_server, submit
from services.common.smtp import tls_context as tls_context  # re-exported for the wiring
from services.dispatcher.channels.base import Context, Result, Secrets, clip
from services.dispatcher.channels.summary import Summary, one_line, summarize

MAX_RECIPIENTS: Final = 10
SUBJECT_CHARS: Final = 200
NOT_CONFIGURED: Final = "email is not configured (CC_SMTP_URL)"


def recipients(record: NotificationRecord) -> list[str]:
    """The destination's addresses (at most 10)."""
    destination = record.destination
    addresses = destination.recipients if isinstance(destination, EmailDestination) else []
    return [a for a in addresses if a][:MAX_RECIPIENTS]


def message_id(record: NotificationRecord) -> str:
    """The Message-ID of a delivery, the same on every attempt."""
    return f"<{record.deliveryId}@codecourier>"


def build_message(record: NotificationRecord, ctx: Context) -> EmailMessage:
    """The email of a notification: multipart/alternative, text and HTML (escaped)."""
    summary = summarize(record.payload, ctx.public_base_url)
    message = EmailMessage()
    message["Subject"] = one_line(summary.title)[:SUBJECT_CHARS]
    message["From"] = ctx.email_from
    message["To"] = one_line(", ".join(recipients(record)))
    message["Message-ID"] = message_id(record)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message["X-CodeCourier-Delivery"] = record.deliveryId
    message.set_content(text_body(summary, record))
    message.add_alternative(html_body(summary, record), subtype="html")
    return message


def text_body(summary: Summary, record: NotificationRecord) -> str:
    """The plain-text part."""
    lines = [summary.title, ""]
    if summary.reason:
        lines += [summary.reason, ""]
    lines += [f"{label}: {value}" for label, value in summary.facts]
    if summary.execution_id:
        lines.append(f"Execution: {summary.execution_id}")
    if summary.log_url:
        lines.append(f"Log: {summary.log_url}")
    if summary.final_output is not None:
        lines += ["", "Final output:", summary.final_output]
    lines += ["", "--", _footer(record)]
    return "\n".join(lines) + "\n"


def html_body(summary: Summary, record: NotificationRecord) -> str:
    """The HTML part; every value is escaped."""
    e = html.escape
    rows = [(label, e(value)) for label, value in summary.facts]
    if summary.execution_id:
        rows.append(("Execution", f"<code>{e(summary.execution_id)}</code>"))
    if summary.log_url:
        rows.append(("Log", f'<a href="{e(summary.log_url)}">View log</a>'))
    table = "".join(f"<tr><th align='left'>{e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    parts = [f"<h2>{e(summary.title)}</h2>"]
    if summary.reason:
        parts.append(f"<p><strong>{e(summary.reason)}</strong></p>")
    parts.append(f"<table cellpadding='4'>{table}</table>")
    if summary.final_output is not None:
        parts.append(f"<h3>Final output</h3><pre>{e(summary.final_output)}</pre>")
    parts.append(f"<p style='color:#888'>{e(_footer(record))}</p>")
    return "<!DOCTYPE html><html><body>" + "".join(parts) + "</body></html>\n"


def _footer(record: NotificationRecord) -> str:
    return f"Sent by CodeCourier (subscription {record.subscriptionId}, {record.deliveryId})."


async def send(record: NotificationRecord, secrets: Secrets, ctx: Context) -> Result:
    """Send the notification's email through the configured SMTP server."""
    if not ctx.smtp_url:
        return Result(delivered=False, error=NOT_CONFIGURED)
    try:
        server = smtp_server(ctx.smtp_url)
    except ValueError as exc:
        return Result(delivered=False, error=str(exc))
    to = recipients(record)
    if not to:
        return Result(delivered=False, error="the email destination has no recipients")
    message = build_message(record, ctx)
    message["Date"] = formatdate(usegmt=True)
    try:
        refused, reply = await submit(
            message, sender=parseaddr(ctx.email_from)[1] or None, recipients=to,
            server=server, tls=ctx.smtp_tls, timeout_s=ctx.timeout_s,
        )  # fmt: skip
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return all_refused(exc)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        if server.start_tls and starttls_missing(exc):
            return Result(delivered=False, retryable=True, error=_NO_STARTTLS.format(s=server))
        return smtp_failure(exc, server, ctx.timeout_s)
    error = refused_error(refused) if refused else None
    return Result(delivered=True, status=250, body=clip(reply), error=error)


_NO_STARTTLS = (
    "{s.host}:{s.port} did not offer STARTTLS; the credentials in CC_SMTP_URL are not sent in "
    "plain text (use smtps://, or add ?allow_plaintext_auth=1 to accept it)"
)


def starttls_missing(exc: BaseException) -> bool:
    """Whether aiosmtplib refused because the server did not offer STARTTLS."""
    plain = isinstance(exc, aiosmtplib.SMTPException)
    return (
        plain
        and not isinstance(exc, aiosmtplib.SMTPResponseException)
        and ("STARTTLS extension not supported" in str(exc))
    )


def refused_error(refused: dict[str, aiosmtplib.SMTPResponse]) -> str:
    """The recipients a server refused while accepting the message for the others."""
    listed = "; ".join(f"{to} ({r.code} {r.message})" for to, r in sorted(refused.items()))
    return f"refused recipients: {listed}"


def all_refused(exc: aiosmtplib.SMTPRecipientsRefused) -> Result:
    """Every recipient refused: retryable if any refusal was temporary (4xx)."""
    listed = "; ".join(f"{r.recipient} ({r.code} {r.message})" for r in exc.recipients)
    temporary = any(400 <= r.code < 500 for r in exc.recipients)
    status = exc.recipients[0].code if exc.recipients else None
    error = f"all recipients refused: {listed}"
    return Result(delivered=False, retryable=temporary, status=status, error=error)


def smtp_failure(exc: BaseException, server: SmtpServer, timeout_s: float) -> Result:
    """An SMTP error: 5xx replies and unverified certificates are final, the rest retryable."""
    if isinstance(exc, TimeoutError):
        return Result(delivered=False, retryable=True, error=f"timed out after {timeout_s:g} s")
    if (unverified := certificate_error(exc)) is not None:
        error = (
            f"the TLS certificate of {server.host}:{server.port} did not verify "
            f"({unverified.verify_message}); fix it or trust its CA with CC_SMTP_CA_FILE"
        )
        return Result(delivered=False, error=error)
    code = exc.code if isinstance(exc, aiosmtplib.SMTPResponseException) else None
    message = f"{type(exc).__name__}: {exc}"
    for hidden in (server.password, server.username):
        if hidden:
            message = message.replace(hidden, "<hidden>")
    final = code is not None and code >= 500
    return Result(delivered=False, retryable=not final, status=code, error=message)


def certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The failed certificate check behind an error, if any.

    aiosmtplib raises it bare from STARTTLS but wraps it in SMTPConnectError for implicit TLS.
    """
    cause: BaseException | None = exc
    for _ in range(5):
        if cause is None or isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None
