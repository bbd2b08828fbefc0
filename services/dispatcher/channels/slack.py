"""Slack channel: a Block Kit message posted to an incoming webhook.

The message is a fallback `text` (what notifications show), a header block, and one attachment
whose colour tells the outcome, holding the alert reason, the facts (status, trigger, duration,
cost), the final output when the subscription includes it (cut to fit a code block), a
"View log" button and a context line with the execution id. Everything stays within Slack's
limits (50 blocks, 3,000 characters of section text, 10 fields of 2,000, a 150-character
header). Trace spans are never shown.

The webhook URL is the secret (`Secrets.current`): errors never contain it. The outcome of a
POST is classified as for a webhook (429 and its Retry-After included).
"""

from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from schemas.notifications import NotificationRecord
from services.dispatcher.channels import http, webhook
from services.dispatcher.channels.base import Context, Result, Secrets
from services.dispatcher.channels.summary import Kind, Summary, one_line, summarize

SECTION_CHARS: Final = 3000
FIELD_CHARS: Final = 2000
HEADER_CHARS: Final = 150
MAX_FIELDS: Final = 10
URL_CHARS: Final = 3000
COLOURS: Final[dict[Kind, str]] = {
    "alert": "#e01e5a",
    "error": "#e01e5a",
    "resolved": "#2eb67d",
    "completed": "#2eb67d",
}

_encoder = msgspec.json.Encoder()


def escape(text: str) -> str:
    """Text for a mrkdwn object: Slack's three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fit(text: str, limit: int) -> str:
    """At most `limit` characters, cut with an ellipsis and never inside an `&...;` escape."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", len(cut) - 4)
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def mrkdwn(text: str, limit: int = SECTION_CHARS) -> dict[str, Any]:
    """A mrkdwn text object from already escaped text."""
    return {"type": "mrkdwn", "text": fit(text, limit)}


def code_block(title: str, text: str) -> dict[str, Any]:
    """A section showing `text` verbatim in a code block, cut to fit a section."""
    head, tail = f"*{title}*\n```\n", "\n```"
    body = escape(text.replace("```", "`\u200b``")) or " "
    return {
        "type": "section",
        "text": mrkdwn(head + fit(body, SECTION_CHARS - 10 - len(head)) + tail),
    }


def message(record: NotificationRecord, ctx: Context) -> dict[str, Any]:
    """The Block Kit message of a notification."""
    summary = summarize(record.payload, ctx.public_base_url)
    header = {
        "type": "plain_text",
        "text": fit(one_line(summary.title), HEADER_CHARS),
        "emoji": True,
    }
    attachment = {"color": COLOURS[summary.kind], "blocks": detail_blocks(summary)}
    return {
        "text": fit(escape(_fallback(summary)), SECTION_CHARS),
        "blocks": [{"type": "header", "text": header}],
        "attachments": [attachment],
    }


def _fallback(summary: Summary) -> str:
    return f"{summary.title}: {summary.reason}" if summary.reason else summary.title


def detail_blocks(summary: Summary) -> list[dict[str, Any]]:
    """The blocks of the coloured attachment."""
    blocks: list[dict[str, Any]] = []
    if summary.reason:
        blocks.append({"type": "section", "text": mrkdwn(escape(summary.reason))})
    if summary.facts:
        fields = [mrkdwn(f"*{k}*\n{escape(v)}", FIELD_CHARS) for k, v in summary.facts]
        blocks.append({"type": "section", "fields": fields[:MAX_FIELDS]})
    if summary.final_output is not None:
        blocks.append(code_block("Final output", summary.final_output))
    if summary.log_url and len(summary.log_url) <= URL_CHARS:
        button = {
            "type": "button",
            "text": {"type": "plain_text", "text": "View log"},
            "url": summary.log_url,
            "action_id": "view_log",
        }
        blocks.append({"type": "actions", "elements": [button]})
    about = f"Execution `{summary.execution_id}`" if summary.execution_id else summary.workflow
    blocks.append({"type": "context", "elements": [mrkdwn(escape(about))]})
    return blocks


async def send(record: NotificationRecord, secrets: Secrets, ctx: Context) -> Result:
    """POST the message to the subscription's incoming webhook."""
    url = secrets.current
    if not url:
        return Result(delivered=False, error="the Slack webhook URL is missing")
    body = _encoder.encode(message(record, ctx))
    headers = {"Content-Type": "application/json", "User-Agent": webhook.USER_AGENT}
    parts = urlsplit(url)
    hidden = [url, *(part for part in (parts.path, parts.query) if len(part) > 1)]
    return await http.post(ctx, url, body, headers, hidden)
