"""Client commands: `events send` (NDJSON in batches) and `logs tail` (follow logs).

Both speak HTTP with the standard library only (`services.apiclient`), so the CLI stays fast
to start.
"""

import argparse

from services.apiclient import endpoint
from services.command import Command, bounded
from services.common.config import Settings
from services.eventsend import send_events
from services.logtail import TailOptions, tail_logs


def _keyed(parser: argparse.ArgumentParser) -> None:
    """Where the API is and the key to call it with."""
    parser.add_argument("--url", help="API base URL (default: CC_URL, then local.json)")
    parser.add_argument("--api-key", help="API key (default: CC_API_KEY, then local.json)")


def send(args: argparse.Namespace, settings: Settings) -> int:
    """`events send`: post an NDJSON file in batches and print a summary."""
    ep = endpoint(args, settings)
    send_events(ep.url, ep.key, args.file, args.batch_size, args.json)
    return 0


def _send_arguments(parser: argparse.ArgumentParser) -> None:
    _keyed(parser)
    parser.add_argument("file", metavar="FILE", help="NDJSON events; - reads standard input")
    parser.add_argument(
        "--batch-size",
        type=bounded(int, 1, 1000),
        default=500,
        help="events per request, 1..1000 (default 500)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def tail(args: argparse.Namespace, settings: Settings) -> int:
    """`logs tail`: print every new completed execution until interrupted."""
    ep = endpoint(args, settings)
    filters = {"level": args.level, "workflowIds": args.workflow_ids}
    tail_logs(
        ep.url,
        ep.key,
        {name: value for name, value in filters.items() if value},
        TailOptions(args.since_start, args.interval, args.limit, args.json),
    )
    return 0


def _tail_arguments(parser: argparse.ArgumentParser) -> None:
    _keyed(parser)
    parser.add_argument(
        "--since-start", action="store_true", help="print existing logs first, oldest first"
    )
    parser.add_argument(
        "--interval",
        type=bounded(float, 0.05, 3600),
        default=1.0,
        help="seconds between polls once caught up (default 1.0)",
    )
    parser.add_argument("--level", choices=("info", "error"), help="only this level")
    parser.add_argument("--workflow-ids", help="comma list of workflow ids to follow")
    parser.add_argument("--json", action="store_true", help="print each log as one JSON line")
    parser.add_argument(
        "--limit", type=bounded(int, 1, 1000), default=100, help="page size (default 100)"
    )


COMMANDS = (
    Command(
        "events send",
        "send an NDJSON file of events in batches",
        send,
        _send_arguments,
        description="Post FILE (one event per line, blank lines skipped) to /api/v1/events "
        "in batches; waits out 429s, retries 5xx, and names the file's line of a bad event. "
        "Resending is safe: events are idempotent on (type, executionId).",
    ),
    Command(
        "logs tail",
        "print new completed executions as they arrive",
        tail,
        _tail_arguments,
        description="Follow GET /api/v1/logs with order=asc and its cursor: every completed "
        "execution is printed exactly once, in completion order. Ctrl-C stops.",
    ),
)
