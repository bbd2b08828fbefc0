"""Discord channel: a message with one embed posted to a channel webhook.

The message's `content` is the one line a push notification shows; the embed has the title
(linking to the log), the alert reason and the final output (in a code block) as its
description, one inline field per fact (workflow, status, trigger, duration, cost, the alert's
rule and figures), the execution id as its footer, a colour telling the outcome and the event
time. Everything stays within Discord's limits (`limited`): content 2,000 characters, title 256,
description 4,096, 25 fields of 256 + 1,024, footer 2,048, and 6,000 characters of embed text
in all; text is cut with an ellipsis. `allowed_mentions` is empty, so no text a tenant wrote
can ping @everyone or anyone else. Trace spans are never shown.

The webhook URL is the secret (`Secrets.current`): errors never contain it. A 429 carries
`retry_after` (seconds, a float) in its JSON body: that is the wait asked for, as a Retry-After
header would be (capped alike by the retry schedule).
"""

from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

from schemas.notifications import NotificationRecord
from schemas.payloads import AlertData, DeliveryPayload
from services.common.clock import iso_ms
from services.dispatcher.channels import http, webhook
from services.dispatcher.channels.base import Context, Result, Secrets, fit
from services.dispatcher.channels.summary import Kind, Summary, one_line, plain, summarize

CONTENT_CHARS: Final = 2000
TITLE_CHARS: Final = 256
DESCRIPTION_CHARS: Final = 4096
MAX_FIELDS: Final = 25
FIELD_NAME_CHARS: Final = 256
FIELD_VALUE_CHARS: Final = 1024
FOOTER_CHARS: Final = 2048
EMBED_CHARS: Final = 6000  # title, description, field names and values, footer: in all
FACT_CHARS: Final = 256  # of each fact this channel shows (Discord allows 1,024)
URL_CHARS: Final = 2048
COLOURS: Final[dict[Kind, int]] = {
    "alert": 0xE01E5A,
    "error": 0xE01E5A,
    "resolved": 0x2EB67D,
    "completed": 0x2EB67D,
}

_encoder = msgspec.json.Encoder(decimal_format="number")
_rate_limit = msgspec.json.Decoder(dict[str, Any])


@dataclass(frozen=True)
class Embed:
    """The texts of an embed, before and after `limited`."""

    title: str
    description: str
    fields: tuple[tuple[str, str], ...]  # (name, value)
    footer: str

    def chars(self) -> int:
        """The characters Discord counts towards EMBED_CHARS."""
        named = sum(len(n) + len(v) for n, v in self.fields)
        return len(self.title) + len(self.description) + named + len(self.footer)


def limited(embed: Embed) -> Embed:
    """The embed within Discord's limits: each text cut to its own, then the description, the
    footer, the last fields and the title shortened until EMBED_CHARS hold."""
    fields = tuple(
        (fit(n, FIELD_NAME_CHARS), fit(v, FIELD_VALUE_CHARS))
        for n, v in embed.fields[:MAX_FIELDS]
        if n and v
    )
    embed = Embed(
        fit(embed.title, TITLE_CHARS), fit(embed.description, DESCRIPTION_CHARS), fields,
        fit(embed.footer, FOOTER_CHARS),
    )  # fmt: skip
    over = embed.chars() - EMBED_CHARS
    if over > 0:
        embed = replace(embed, description=fit(embed.description, len(embed.description) - over))
    over = embed.chars() - EMBED_CHARS
    if over > 0:
        embed = replace(embed, footer=fit(embed.footer, len(embed.footer) - over))
    while embed.chars() > EMBED_CHARS and embed.fields:
        embed = replace(embed, fields=embed.fields[:-1])
    over = embed.chars() - EMBED_CHARS
    if over > 0:
        embed = replace(embed, title=fit(embed.title, len(embed.title) - over))
    return embed


def facts(payload: DeliveryPayload, summary: Summary) -> tuple[tuple[str, str], ...]:
    """The embed's fields: the workflow, the execution's figures and the alert's."""
    found = [("Workflow", summary.workflow), *summary.facts]
    alert = payload.data.alert
    if isinstance(alert, AlertData):
        found += [("Rule", alert.rule), ("Observed", plain(alert.observed))]
        found += [("Threshold", plain(alert.threshold))]
    return tuple((name, fit(value, FACT_CHARS)) for name, value in found)


def description(summary: Summary, budget: int) -> str:
    """The reason and the final output in a code block, within `budget` characters."""
    reason = fit(summary.reason or "", min(budget, 1000))
    if summary.final_output is None:
        return reason
    head, tail = ("\n\n" if reason else "") + "**Final output**\n```\n", "\n```"
    room = budget - len(reason) - len(head) - len(tail)
    if room < 16:  # no room for a useful excerpt
        return reason
    output = summary.final_output.replace("```", "`\u200b``") or " "
    return reason + head + fit(output, room) + tail


def message(record: NotificationRecord, ctx: Context) -> dict[str, Any]:
    """The Discord message of a notification, within Discord's limits."""
    summary = summarize(record.payload, ctx.public_base_url)
    about = f"Execution {summary.execution_id}" if summary.execution_id else "CodeCourier"
    draft = limited(Embed(one_line(summary.title), "", facts(record.payload, summary), about))
    budget = min(DESCRIPTION_CHARS, EMBED_CHARS - draft.chars())
    embed = limited(replace(draft, description=description(summary, budget)))
    built: dict[str, Any] = {"title": embed.title}
    if embed.description:
        built["description"] = embed.description
    if summary.log_url and len(summary.log_url) <= URL_CHARS:
        built["url"] = summary.log_url
    built["color"] = COLOURS[summary.kind]
    built["fields"] = [{"name": n, "value": v, "inline": True} for n, v in embed.fields]
    built["footer"] = {"text": embed.footer}
    built["timestamp"] = iso_ms(record.payload.timestamp)
    headline = f"{summary.title}: {summary.reason}" if summary.reason else summary.title
    return {
        "content": fit(one_line(headline), CONTENT_CHARS),
        "embeds": [built],
        "allowed_mentions": {"parse": []},
    }


def retry_after_s(body: str) -> float | None:
    """The `retry_after` of a Discord 429 body, if it has a usable one."""
    try:
        value = _rate_limit.decode(body).get("retry_after")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e9:
        return float(value)
    return None


async def send(record: NotificationRecord, secrets: Secrets, ctx: Context) -> Result:
    """POST the message to the subscription's Discord webhook."""
    url = secrets.current
    if not url:
        return Result(delivered=False, error="the Discord webhook URL is missing")
    body = _encoder.encode(message(record, ctx))
    headers = {"Content-Type": "application/json", "User-Agent": webhook.USER_AGENT}
    parts = urlsplit(url)
    hidden = [url, *(part for part in (parts.path, parts.query) if len(part) > 1)]
    result = await http.post(ctx, url, body, headers, hidden)
    if result.status == 429 and (wait_s := retry_after_s(result.body)) is not None:
        result = replace(result, retry_after_s=wait_s)
    return result
