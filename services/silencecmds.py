"""Client commands for silences: `silence add`, `silence list` and `silence end`.

They call `/api/v1/silences` with the standard library only (`services.apiclient`), using
`--url/--api-key`, else `CC_URL/CC_API_KEY`, else local.json, like the other client commands.
"""

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from services.apiclient import endpoint, request
from services.command import CliError, Command
from services.common.config import Settings

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
_WEEKLY = re.compile(r"^([a-z,]+)\s+(\d{2}:\d{2})\s+(\d+)m?$")


def duration(text: str) -> timedelta:
    """`2h`, `90m`, `1d12h` as a timedelta (an argparse type)."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise argparse.ArgumentTypeError(f"not a duration like 2h, 90m or 1d12h: {text!r}")
    days, hours, minutes = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def weekly(text: str) -> dict[str, Any]:
    """`"mon,tue 22:00 120m"` as a schedule without its time zone (an argparse type)."""
    match = _WEEKLY.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f'not a window like "mon,tue 22:00 120m": {text!r}')
    days, start, minutes = match.groups()
    return {"daysOfWeek": days.split(","), "start": start, "durationMinutes": int(minutes)}


def body_of(args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    """The POST body for `silence add`."""
    matchers = {
        name: values
        for name, values in (("workflowIds", args.workflow), ("subscriptionIds", args.subscription),
                             ("rules", args.rule))
        if values
    }  # fmt: skip
    body: dict[str, Any] = {"comment": args.comment, "matchers": matchers}
    if args.starts_at:
        body["startsAt"] = args.starts_at
    if args.weekly is not None:
        body["schedule"] = args.weekly | {"timezone": args.timezone}
        if args.until:
            body["until"] = args.until
    elif args.ends_at:
        body["endsAt"] = args.ends_at
    else:
        start = datetime.fromisoformat(args.starts_at) if args.starts_at else now
        if start.tzinfo is None:
            raise CliError("--starts-at needs a time zone (e.g. 2026-06-01T22:00:00Z)")
        body["endsAt"] = (start + args.duration).isoformat().replace("+00:00", "Z")
    return body


def _line(silence: dict[str, Any]) -> str:
    when = silence.get("endsAt") or _schedule(silence)
    m = silence.get("matchers") or {}
    what = " ".join(f"{k}={','.join(v)}" for k, v in m.items()) or "everything"
    return f"{silence['id']}  {silence['state']:<8} {what}  until {when}  {silence['comment']}"


def _schedule(silence: dict[str, Any]) -> str:
    s = silence.get("schedule") or {}
    text = (
        f"weekly {','.join(s.get('daysOfWeek', []))} {s.get('start')} {s.get('durationMinutes')}m"
    )
    return f"{text} {s.get('timezone')}" + (
        f" until {silence['until']}" if silence.get("until") else ""
    )


def _show(data: Any, as_json: bool, lines: list[str]) -> None:
    print(json.dumps(data, indent=2) if as_json else "\n".join(lines))


def add(args: argparse.Namespace, settings: Settings) -> int:
    """`silence add`: create a silence and print it."""
    ep = endpoint(args, settings)
    body = body_of(args, datetime.now(UTC))
    data = request("POST", f"{ep.url}/api/v1/silences", ep.key, body)["data"]
    _show(data, args.json, [_line(data)])
    return 0


def list_silences(args: argparse.Namespace, settings: Settings) -> int:
    """`silence list`: every silence (or those in one state), one per line."""
    ep = endpoint(args, settings)
    query, items, cursor = f"?limit=100{'&state=' + args.state if args.state else ''}", [], None
    while True:
        page = request("GET", f"{ep.url}/api/v1/silences{query}"
                       + (f"&cursor={cursor}" if cursor else ""), ep.key)  # fmt: skip
        items += page["data"]
        cursor = page.get("nextCursor")
        if not page.get("hasMore"):
            break
    _show(items, args.json, [_line(s) for s in items] or ["no silences"])
    return 0


def end(args: argparse.Namespace, settings: Settings) -> int:
    """`silence end`: end a silence now."""
    ep = endpoint(args, settings)
    data = request("DELETE", f"{ep.url}/api/v1/silences/{args.id}", ep.key)["data"]
    _show(data, args.json, [_line(data)])
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="API base URL (default: CC_URL, then local.json)")
    parser.add_argument("--api-key", help="API key (default: CC_API_KEY, then local.json)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--comment", required=True, help="why (required, up to 1000 characters)")
    parser.add_argument("--workflow", action="append", metavar="ID",
                        help="mute only this workflow (repeatable)")  # fmt: skip
    parser.add_argument("--subscription", action="append", metavar="ID",
                        help="mute only this subscription, ntf_... (repeatable)")  # fmt: skip
    parser.add_argument("--rule", action="append", metavar="RULE",
                        help="mute only this rule, e.g. error_count (repeatable)")  # fmt: skip
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--ends-at", metavar="ISO", help="one-off until this time")
    when.add_argument("--duration", type=duration, help="one-off for this long: 2h, 90m, 1d")
    when.add_argument("--weekly", type=weekly, metavar='"DAYS HH:MM MINUTESm"',
                      help='weekly, e.g. "mon,tue 22:00 120m" (with --timezone)')  # fmt: skip
    parser.add_argument("--timezone", default="UTC",
                        help="IANA zone of a weekly window (default UTC)")  # fmt: skip
    parser.add_argument("--starts-at", metavar="ISO", help="start later than now")
    parser.add_argument("--until", metavar="ISO", help="last moment of a weekly window")


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--state", choices=("active", "pending", "expired"))


def _end_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("id", metavar="ID", help="the silence, sil_...")


COMMANDS = (
    Command("silence add", "mute alert notifications for a while, or weekly", add,
            _add_arguments,
            description="Create a silence: alert notifications matching every given --workflow, "
            "--subscription and --rule (none: all) are recorded, not delivered, while it is "
            "active. One-off (--ends-at or --duration) or a weekly maintenance window "
            '(--weekly "sat,sun 02:00 180m" --timezone Europe/Berlin). When it ends while an '
            "alert still fires, one notification follows at once."),
    Command("silence list", "list silences with their state", list_silences, _list_arguments,
            description="List the project's silences (active, pending or expired)."),
    Command("silence end", "end a silence now", end, _end_arguments,
            description="End a silence now; an alert that still fires is notified once."),
)  # fmt: skip
