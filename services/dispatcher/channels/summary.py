"""What an email or a Slack message says about a payload: the channel-neutral `Summary`.

The title is `Alert: <workflow>` for a fired alert, `Resolved: <workflow>` when an alert
resolves, `Error Alert: <workflow>` for a plain notification of a failed execution, otherwise
`Workflow Completed: <workflow>`, where <workflow> is the workflow's name, else its id. User
text is made valid UTF-8; a final output is cut at OUTPUT_CHARS. Trace spans are never shown.
"""

import re
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeGuard

import msgspec
from msgspec import UNSET, UnsetType

from schemas.events import Cost
from schemas.payloads import ALERT_RESOLVED, AlertData, DeliveryData, DeliveryPayload

OUTPUT_CHARS: Final = 10_000  # of a final output, in the summary and in an email

Kind = Literal["alert", "resolved", "error", "completed"]
PREFIXES: Final[dict[Kind, str]] = {
    "alert": "Alert",
    "resolved": "Resolved",
    "error": "Error Alert",
    "completed": "Workflow Completed",
}
# C0 and C1 controls and the Unicode line/paragraph separators: everything str.splitlines()
# breaks on, which the email package refuses in a header value.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


@dataclass(frozen=True)
class Summary:
    """What a person is told about a notification, whatever the medium (never trace spans)."""

    kind: Kind
    title: str
    workflow: str
    reason: str | None
    facts: list[tuple[str, str]]  # (label, value): status, trigger, duration, cost
    log_url: str | None
    execution_id: str | None
    final_output: str | None  # rendered and cut at OUTPUT_CHARS; None when not included


def summarize(payload: DeliveryPayload, public_base_url: str) -> Summary:
    """The human side of a delivery payload."""
    data = payload.data
    workflow = plain(_text(data.workflowName) or data.workflowId or "unknown workflow")
    alert = data.alert if isinstance(data.alert, AlertData) else None
    kind = _kind(payload.type, data.level, alert)
    execution_id = _text(data.executionId)
    return Summary(
        kind=kind,
        title=f"{PREFIXES[kind]}: {workflow}",
        workflow=workflow,
        reason=plain(alert.reason) if alert is not None and alert.reason else None,
        facts=_facts(data),
        log_url=_log_url(payload.links.log, public_base_url),
        execution_id=plain(execution_id) if execution_id else None,
        final_output=None if data.finalOutput is UNSET else render_output(data.finalOutput),
    )


def _text(value: str | UnsetType | None) -> str | None:
    return value if isinstance(value, str) and value else None


def _kind(event_type: str, level: str | UnsetType | None, alert: AlertData | None) -> Kind:
    if event_type == ALERT_RESOLVED:
        return "resolved"
    if alert is not None:
        return "alert"
    return "error" if level == "error" else "completed"


def _facts(data: DeliveryData) -> list[tuple[str, str]]:
    duration = data.totalDurationMs
    total = data.cost.total if isinstance(data.cost, Cost) else None
    facts = [
        ("Status", _text(data.status)),
        ("Trigger", _text(data.trigger)),
        ("Duration", duration_text(duration) if _is_number(duration) else None),
        ("Cost", cost_text(total) if _is_number(total) else None),
    ]
    return [(label, plain(value)) for label, value in facts if value]


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _log_url(path: str | None, public_base_url: str) -> str | None:
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    return f"{public_base_url.rstrip('/')}/api{plain(path)}"


def one_line(text: str) -> str:
    """Text for a header: control characters and line/paragraph separators become spaces."""
    return _CONTROL.sub(" ", text)


def plain(value: Any) -> str:
    """User text safe for any medium: valid UTF-8 (lone surrogates become '?')."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def render_output(value: Any) -> str:
    """A final output as text: strings as they are, anything else as indented JSON."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
        except (TypeError, UnicodeEncodeError):
            text = repr(value)
    text = plain(text)
    return text if len(text) <= OUTPUT_CHARS else text[: OUTPUT_CHARS - 1] + "…"


def duration_text(ms: float) -> str:
    """A duration for people: `850 ms`, `1.25 s`, `2 min 5 s`, `1 h 2 min`."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    seconds = round(ms / 1000)
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def cost_text(usd: float) -> str:
    """A cost for people: cents below a dollar keep four decimals."""
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}"
