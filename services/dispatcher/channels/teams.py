"""Microsoft Teams channel: an Adaptive Card message posted to an incoming webhook or a
Workflows URL.

The card has a title coloured by the outcome, the alert reason, a fact set (workflow, status,
trigger, duration, cost and the alert's rule, observed value and threshold), the final output
when the subscription includes it, the execution id, and a "View log" action. Every text is
bounded and the final output is cut until the whole message fits in MAX_BYTES (Teams rejects
messages over 28 KB). Trace spans are never shown.

The URL is the secret (`Secrets.current`): errors never contain it. The outcome of a POST is
classified as for a webhook (429 and its Retry-After included), with one more rule: an incoming
webhook answers 200 with a text when Teams did not post the message ("Webhook message delivery
failed with error: Microsoft Teams endpoint returned HTTP error 429 ..."), so a 2xx whose body
tells of an error or a failure is not a delivery (retryable when the error it names is 429 or
5xx). Success is "1" from an incoming webhook, and 202 with no body from a Workflows URL.
"""

import re
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from schemas.notifications import NotificationRecord
from schemas.payloads import AlertData, DeliveryPayload
from services.dispatcher.channels import http, webhook
from services.dispatcher.channels.base import Context, Result, Secrets, fit
from services.dispatcher.channels.summary import Kind, Summary, one_line, plain, summarize

MAX_BYTES: Final = 27 * 1024  # of the encoded message; Teams refuses more than 28 KB
TITLE_CHARS: Final = 200
REASON_CHARS: Final = 1000
FACT_CHARS: Final = 200
URL_CHARS: Final = 2048
CARD_SCHEMA: Final = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_TYPE: Final = "application/vnd.microsoft.card.adaptive"
COLOURS: Final[dict[Kind, str]] = {
    "alert": "Attention",
    "error": "Attention",
    "resolved": "Good",
    "completed": "Good",
}

_encoder = msgspec.json.Encoder(decimal_format="number")
_FAILED = re.compile(r"error|fail", re.IGNORECASE)
_NAMED_STATUS = re.compile(r"HTTP error (\d{3})")


def facts(payload: DeliveryPayload, summary: Summary) -> list[dict[str, str]]:
    """The card's facts: the workflow, the execution's figures and the alert's."""
    found = [("Workflow", summary.workflow), *summary.facts]
    alert = payload.data.alert
    if isinstance(alert, AlertData):
        found += [("Rule", alert.rule), ("Observed", plain(alert.observed))]
        found += [("Threshold", plain(alert.threshold))]
    return [{"title": title, "value": fit(value, FACT_CHARS)} for title, value in found]


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


def card(payload: DeliveryPayload, summary: Summary, output: str | None) -> dict[str, Any]:
    """The Adaptive Card (version 1.4) of a notification, with `output` as its final output."""
    title = fit(one_line(summary.title), TITLE_CHARS)
    body = [_text(title, size="Large", weight="Bolder", color=COLOURS[summary.kind])]
    if summary.reason:
        body.append(_text(fit(summary.reason, REASON_CHARS)))
    body.append({"type": "FactSet", "facts": facts(payload, summary)})
    if output is not None:
        body += [_text("Final output", weight="Bolder"), _text(output or " ", fontType="Monospace")]
    if summary.execution_id:
        about = f"Execution {fit(summary.execution_id, FACT_CHARS)}"
        body.append(_text(about, size="Small", isSubtle=True))
    content: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": "1.4",
        "body": body,
    }
    if summary.log_url and len(summary.log_url) <= URL_CHARS:
        content["actions"] = [
            {"type": "Action.OpenUrl", "title": "View log", "url": summary.log_url}
        ]
    return content


def message(record: NotificationRecord, ctx: Context) -> dict[str, Any]:
    """The Teams message of a notification: one Adaptive Card within MAX_BYTES."""
    summary = summarize(record.payload, ctx.public_base_url)
    output = summary.final_output
    while True:
        built = {
            "type": "message",
            "attachments": [
                {"contentType": CARD_TYPE, "content": card(record.payload, summary, output)}
            ],
        }
        if output is None or len(_encoder.encode(built)) <= MAX_BYTES:
            return built
        output = fit(output, len(output) // 2) if len(output) > 64 else None


async def send(record: NotificationRecord, secrets: Secrets, ctx: Context) -> Result:
    """POST the card to the subscription's Teams webhook."""
    url = secrets.current
    if not url:
        return Result(delivered=False, error="the Teams webhook URL is missing")
    body = _encoder.encode(message(record, ctx))
    headers = {"Content-Type": "application/json", "User-Agent": webhook.USER_AGENT}
    parts = urlsplit(url)
    hidden = [url, *(part for part in (parts.path, parts.query) if len(part) > 1)]
    return judged(await http.post(ctx, url, body, headers, hidden), hidden)


def judged(result: Result, hidden: list[str]) -> Result:
    """`result`, unless it is a 2xx whose body says Teams did not post the message."""
    if not result.delivered or not _FAILED.search(result.body):
        return result
    named = _NAMED_STATUS.search(result.body)
    code = int(named.group(1)) if named else 0
    said = http.redact(one_line(result.body), hidden)[:300]
    return Result(
        delivered=False,
        retryable=code == 429 or code >= 500,
        status=result.status,
        body=result.body,
        error=f"HTTP {result.status} but not delivered: {said}",
    )
