"""The `codecourier` command: run the services and administer projects and keys."""

import argparse
import asyncio
import gc
import json
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import prometheus_client

from services.common.config import ConfigError, Settings, ensure_secret_key, load_settings
from services.common.log import configure_logging

PLANS = ("free", "pro", "team", "enterprise")


class CliError(Exception):
    """A failure to report in one line and exit 1."""


# ---- talking to a running API -------------------------------------------------------------


def _endpoint(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    from services.common.localfile import read_credentials

    saved = read_credentials(settings.data_dir)
    return {
        "url": (args.url or settings.client_url or (saved.baseUrl if saved else "")).rstrip("/")
        or f"http://127.0.0.1:{settings.http_port}",
        "admin": getattr(args, "admin_token", None)
        or settings.admin_token
        or (saved.adminToken if saved else ""),
        "key": args.api_key or settings.api_key or (saved.apiKey if saved else ""),
    }


def request(method: str, url: str, token: str, body: Any = None) -> Any:
    """One JSON call; contract errors become CliError with code, message and request id."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - operator-given URL
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            detail = "; ".join(f"{d['field']}: {d['message']}" for d in error.get("details", []))
            raise CliError(
                f"{error['code']}: {error['message']}"
                + (f" ({detail})" if detail else "")
                + f" [request {error['requestId']}]"
            ) from None
        except (ValueError, KeyError):
            raise CliError(f"HTTP {exc.code} from {url}") from None
    except urllib.error.URLError as exc:
        raise CliError(f"cannot reach {url}: {exc.reason}; is `codecourier up` running?") from None


def _print(payload: Any, as_json: bool, lines: Sequence[str]) -> None:
    if as_json:
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(lines))


def cmd_project_create(args: argparse.Namespace, ep: dict[str, str]) -> None:
    data = request(
        "POST",
        f"{ep['url']}/admin/v1/projects",
        ep["admin"],
        {"name": args.name, "plan": args.plan},
    )["data"]
    _print(
        data,
        args.json,
        [
            "project  {id}  {name}  ({plan})".format(**data["project"]),
            f"key      {data['key']['id']}",
            f"secret   {data['key']['secret']}   (shown once: store it now)",
        ],
    )


def cmd_project_set_plan(args: argparse.Namespace, ep: dict[str, str]) -> None:
    data = request(
        "PATCH",
        f"{ep['url']}/admin/v1/projects/{args.project_id}",
        ep["admin"],
        {"plan": args.plan},
    )["data"]
    _print(data, args.json, [f"project  {data['id']}  now on the {data['plan']} plan"])


def cmd_key_create(args: argparse.Namespace, ep: dict[str, str]) -> None:
    body: dict[str, Any] = {"name": args.name, "scopes": args.scopes.split(",")}
    if args.expires_at:
        body["expiresAt"] = args.expires_at
    if args.project:  # the operator's way in, with the admin token
        url, token = f"{ep['url']}/admin/v1/projects/{args.project}/keys", ep["admin"]
    else:
        url, token = f"{ep['url']}/api/v1/keys", ep["key"]
    data = request("POST", url, token, body)["data"]
    _print(
        data,
        args.json,
        [
            f"key      {data['id']}  {data['name']}  scopes={','.join(data['scopes'])}",
            f"secret   {data['secret']}   (shown once: store it now)",
        ],
    )


def cmd_key_list(args: argparse.Namespace, ep: dict[str, str]) -> None:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = request("GET", f"{ep['url']}/api/v1/keys{query}", ep["key"])
        items += page["data"]
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            break
    _print(
        items,
        args.json,
        [
            f"{k['id']}  {k['prefix']}…  {k['name']}  scopes={','.join(k['scopes'])}  "
            f"lastUsed={k['lastUsedAt'] or 'never'}"
            for k in items
        ]
        or ["no keys"],
    )


def cmd_key_revoke(args: argparse.Namespace, ep: dict[str, str]) -> None:
    data = request("DELETE", f"{ep['url']}/api/v1/keys/{args.key_id}", ep["key"])["data"]
    _print(data, args.json, [f"revoked  {data['id']}  at {data['revokedAt']}"])


def cmd_events_send(args: argparse.Namespace, ep: dict[str, str]) -> None:
    from services.clientcmds import send_events

    send_events(ep["url"], ep["key"], args.file, args.batch_size, args.json)


def cmd_logs_tail(args: argparse.Namespace, ep: dict[str, str]) -> None:
    from services.clientcmds import TailOptions, tail_logs

    filters = {"level": args.level, "workflowIds": args.workflow_ids}
    tail_logs(
        ep["url"],
        ep["key"],
        {name: value for name, value in filters.items() if value},
        TailOptions(args.since_start, args.interval, args.limit, args.json),
    )


def _bounded(kind: type[int] | type[float], low: float, high: float) -> Any:
    """An argparse type accepting numbers of `kind` in [low, high]."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


# ---- running services -----------------------------------------------------------------------


def cmd_up(settings: Settings) -> int:
    from services.local import run_local

    return asyncio.run(run_local(settings))


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


async def _run_api(settings: Settings) -> int:
    from services.common import wiring

    if not settings.kafka_bootstrap:
        raise CliError(
            "`codecourier api` needs CC_KAFKA_BOOTSTRAP; `codecourier up` runs everything"
        )
    stop = _stop_on_signals()
    api = await wiring.api(ensure_secret_key(settings), settings.kafka_bootstrap)
    print(f"CodeCourier API listening on http://{settings.http_host}:{api.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await api.stop()
    return 0


async def _run_logsink(settings: Settings) -> int:
    from services.common import wiring

    if not settings.kafka_bootstrap:
        raise CliError("`codecourier logsink` needs CC_KAFKA_BOOTSTRAP; `codecourier up` runs all")
    stop = _stop_on_signals()
    async with wiring.standalone_log_sink(settings) as sink:
        await sink.run(stop)
    return 0


def _run_alerts(settings: Settings) -> int:
    from services.common import wiring

    if not settings.kafka_bootstrap:
        raise CliError("`codecourier alerts` needs CC_KAFKA_BOOTSTRAP; `codecourier up` runs all")
    return wiring.run_alerts(settings)


async def _run_dispatcher(settings: Settings) -> int:
    from services.common import wiring

    if not settings.kafka_bootstrap:
        raise CliError(
            "`codecourier dispatcher` needs CC_KAFKA_BOOTSTRAP; `codecourier up` runs all"
        )
    if not settings.secret_key and not (settings.data_dir / "secret.key").exists():
        raise CliError("`codecourier dispatcher` needs the API's CC_SECRET_KEY to open secrets")
    settings = ensure_secret_key(settings)
    stop = _stop_on_signals()
    async with wiring.dispatcher(settings) as (dispatcher, clients):
        await dispatcher.run(stop, clients)
    return 0


async def _migrate(settings: Settings) -> int:
    from services.common import wiring
    from services.common.clock import now_ms

    cp = wiring.controlplane(settings)
    ch = wiring.clickhouse(settings)
    try:
        print(f"control plane: applied {await cp.migrate(now_ms()) or 'nothing (up to date)'}")
        print(f"clickhouse:    applied {await ch.migrate() or 'nothing (up to date)'}")
    finally:
        await cp.close()
        ch.close()
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser, with a `--help` for every command."""
    top = argparse.ArgumentParser(
        prog="codecourier",
        description="CodeCourier: workflow-execution logs, alerts and notifications.",
        epilog="Configuration comes from CC_* environment variables (see the README).",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser(
        "up",
        help="run the whole local stack (embedded broker, chDB, SQLite, API, log sink, alerts, "
        "dispatcher)",
        description="Run every service in the foreground with embedded defaults; prints "
        "the base URL, an admin token and a project key, and writes <data dir>/local.json. "
        "Ctrl-C or SIGTERM stops it in order within CC_STOP_TIMEOUT_SECONDS (events are refused, "
        "everything accepted is stored, the broker stops last); a second Ctrl-C stops at once. "
        "A crashed service is restarted with back-off.",
    )
    sub.add_parser(
        "api",
        help="run the HTTP API alone against external services",
        description="Serve the API; needs CC_KAFKA_BOOTSTRAP. Replicas must share "
        "CC_SECRET_KEY, CC_DATABASE_URL and CC_REDIS_URL.",
    )
    sub.add_parser(
        "logsink",
        help="run the log sink alone (executions, delivery-log -> ClickHouse)",
        description="Consume `executions` and `delivery-log` and write ClickHouse; needs "
        "CC_KAFKA_BOOTSTRAP. Run several (up to the partition count) to scale out; they share "
        "the consumer group.",
    )
    sub.add_parser(
        "alerts",
        help="run the alert engine alone (executions -> notifications), with its tick producer",
        description="Evaluate subscriptions and alert rules on `executions`, `ticks` and "
        "`subscriptions`, produce `notifications`; needs CC_KAFKA_BOOTSTRAP. Run several (up to "
        "the partition count) to scale out; CC_ALERTS_GROUP, CC_ALERTS_STORE, CC_TICK_SECONDS.",
    )
    sub.add_parser(
        "dispatcher",
        help="run the dispatcher alone (notifications -> webhook, email, Slack)",
        description="Deliver `notifications` with durable retries on the delay-tier topics and "
        "record every attempt on `delivery-log`; needs CC_KAFKA_BOOTSTRAP, the API's "
        "CC_SECRET_KEY and CC_DATABASE_URL (to disable a subscription whose receiver answers "
        "410). Run several (up to the partition count) to scale out; CC_DISPATCHER_GROUP, "
        "CC_DISPATCHER_LANE_IN_FLIGHT, CC_DISPATCHER_LANE_QUEUE, CC_DELIVERY_TIMEOUT_SECONDS, "
        "CC_RETRY_DELAYS, CC_SMTP_URL, CC_EMAIL_FROM, CC_EGRESS_ALLOW_CIDRS.",
    )
    sub.add_parser("migrate", help="apply control-plane and ClickHouse migrations, then exit")

    def client(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--url", help="API base URL (default: CC_URL, then local.json)")
        p.add_argument(
            "--admin-token", help="operator token (default: CC_ADMIN_TOKEN, then local.json)"
        )
        p.add_argument("--api-key", help="API key (default: CC_API_KEY, then local.json)")
        p.add_argument("--json", action="store_true", help="print the API's JSON instead of text")
        return p

    project = sub.add_parser("project", help="create projects and change plans (admin API)")
    psub = project.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = client(psub.add_parser("create", help="create a project and its all-scopes key"))
    create.add_argument("--name", required=True, help="display name")
    create.add_argument(
        "--plan", choices=PLANS, default="free", help="rate-limit plan (default free)"
    )
    create.set_defaults(run=cmd_project_create)
    plan = client(psub.add_parser("set-plan", help="move a project to another plan"))
    plan.add_argument("project_id", metavar="PROJECT_ID")
    plan.add_argument("--plan", choices=PLANS, required=True)
    plan.set_defaults(run=cmd_project_set_plan)

    key = sub.add_parser(
        "key", help="create, list and revoke API keys (of your project, or any with --project)"
    )
    ksub = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    kcreate = client(ksub.add_parser("create", help="create a key (no more powerful than yours)"))
    kcreate.add_argument("--name", required=True)
    kcreate.add_argument(
        "--scopes", required=True, help="comma list, e.g. logs:read,events:write or *"
    )
    kcreate.add_argument("--expires-at", help="ISO-8601 time with zone, e.g. 2027-01-01T00:00:00Z")
    kcreate.add_argument(
        "--project",
        metavar="PROJECT_ID",
        help="issue the key for this project with the admin token (operators; any scopes)",
    )
    kcreate.set_defaults(run=cmd_key_create)
    client(ksub.add_parser("list", help="list live keys (never their secrets)")).set_defaults(
        run=cmd_key_list
    )
    krevoke = client(ksub.add_parser("revoke", help="revoke a key at once"))
    krevoke.add_argument("key_id", metavar="KEY_ID")
    krevoke.set_defaults(run=cmd_key_revoke)
    _stream_commands(sub)
    return top


def _keyed(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--url", help="API base URL (default: CC_URL, then local.json)")
    p.add_argument("--api-key", help="API key (default: CC_API_KEY, then local.json)")
    return p


def _stream_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    events = sub.add_parser("events", help="send execution events to the API")
    esub = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    send = _keyed(
        esub.add_parser(
            "send",
            help="send an NDJSON file of events in batches",
            description="Post FILE (one event per line, blank lines skipped) to /api/v1/events "
            "in batches; waits out 429s, retries 5xx, and names the file's line of a bad event. "
            "Resending is safe: events are idempotent on (type, executionId).",
        )
    )
    send.add_argument("file", metavar="FILE", help="NDJSON events; - reads standard input")
    send.add_argument(
        "--batch-size",
        type=_bounded(int, 1, 1000),
        default=500,
        help="events per request, 1..1000 (default 500)",
    )
    send.add_argument("--json", action="store_true", help="print the summary as JSON")
    send.set_defaults(run=cmd_events_send)

    logs = sub.add_parser("logs", help="follow completed executions")
    lsub = logs.add_subparsers(dest="action", required=True, metavar="ACTION")
    tail = _keyed(
        lsub.add_parser(
            "tail",
            help="print new completed executions as they arrive",
            description="Follow GET /api/v1/logs with order=asc and its cursor: every completed "
            "execution is printed exactly once, in completion order. Ctrl-C stops.",
        )
    )
    tail.add_argument(
        "--since-start", action="store_true", help="print existing logs first, oldest first"
    )
    tail.add_argument(
        "--interval",
        type=_bounded(float, 0.05, 3600),
        default=1.0,
        help="seconds between polls once caught up (default 1.0)",
    )
    tail.add_argument("--level", choices=("info", "error"), help="only this level")
    tail.add_argument("--workflow-ids", help="comma list of workflow ids to follow")
    tail.add_argument("--json", action="store_true", help="print each log as one JSON line")
    tail.add_argument(
        "--limit", type=_bounded(int, 1, 1000), default=100, help="page size (default 100)"
    )
    tail.set_defaults(run=cmd_logs_tail)


SERVICES = ("up", "api", "logsink", "alerts", "dispatcher")
WORKERS = ("logsink", "alerts", "dispatcher")


def tune_gc() -> None:
    """Collect young objects less often: ingest decodes large JSON into many short-lived objects,
    and the default threshold (700) makes the cyclic collector run thousands of times a second."""
    gc.set_threshold(50_000, 20, 100)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `codecourier` console script."""
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        if args.command in SERVICES:
            tune_gc()
        if args.command in WORKERS and settings.metrics_port:
            # Workers have no HTTP server of their own: Prometheus metrics on a port of theirs.
            prometheus_client.start_http_server(settings.metrics_port, addr=settings.http_host)
        if args.command == "up":
            return cmd_up(settings)
        if args.command == "api":
            return asyncio.run(_run_api(settings))
        if args.command == "logsink":
            return asyncio.run(_run_logsink(settings))
        if args.command == "alerts":
            return _run_alerts(settings)
        if args.command == "dispatcher":
            return asyncio.run(_run_dispatcher(settings))
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        args.run(args, _endpoint(args, settings))
        return 0
    except (CliError, ConfigError) as exc:
        print(f"codecourier: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
