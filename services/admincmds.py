"""Admin commands: create projects, change plans, and create, list and revoke API keys."""

import argparse
import json
from collections.abc import Sequence
from typing import Any

from services.apiclient import endpoint, request
from services.command import Command
from services.common.config import Settings

PLANS = ("free", "pro", "team", "enterprise")


def _print(payload: Any, as_json: bool, lines: Sequence[str]) -> None:
    if as_json:
        print(json.dumps(payload, indent=2))
    else:
        print("\n".join(lines))


def client_options(parser: argparse.ArgumentParser) -> None:
    """Where the API is, the credentials to call it with, and the output format."""
    parser.add_argument("--url", help="API base URL (default: CC_URL, then local.json)")
    parser.add_argument(
        "--admin-token", help="operator token (default: CC_ADMIN_TOKEN, then local.json)"
    )
    parser.add_argument("--api-key", help="API key (default: CC_API_KEY, then local.json)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of text")


def create_project(args: argparse.Namespace, settings: Settings) -> int:
    """`project create`: a project and its all-scopes key, with the admin token."""
    ep = endpoint(args, settings)
    body = {"name": args.name, "plan": args.plan}
    data = request("POST", f"{ep.url}/admin/v1/projects", ep.admin, body)["data"]
    _print(
        data,
        args.json,
        [
            "project  {id}  {name}  ({plan})".format(**data["project"]),
            f"key      {data['key']['id']}",
            f"secret   {data['key']['secret']}   (shown once: store it now)",
        ],
    )
    return 0


def _create_project_arguments(parser: argparse.ArgumentParser) -> None:
    client_options(parser)
    parser.add_argument("--name", required=True, help="display name")
    parser.add_argument(
        "--plan", choices=PLANS, default="free", help="rate-limit plan (default free)"
    )


def set_plan(args: argparse.Namespace, settings: Settings) -> int:
    """`project set-plan`: move a project to another plan, with the admin token."""
    ep = endpoint(args, settings)
    url = f"{ep.url}/admin/v1/projects/{args.project_id}"
    data = request("PATCH", url, ep.admin, {"plan": args.plan})["data"]
    _print(data, args.json, [f"project  {data['id']}  now on the {data['plan']} plan"])
    return 0


def _set_plan_arguments(parser: argparse.ArgumentParser) -> None:
    client_options(parser)
    parser.add_argument("project_id", metavar="PROJECT_ID")
    parser.add_argument("--plan", choices=PLANS, required=True)


def create_key(args: argparse.Namespace, settings: Settings) -> int:
    """`key create`: a key of the caller's project, or of any project with the admin token."""
    ep = endpoint(args, settings)
    body: dict[str, Any] = {"name": args.name, "scopes": args.scopes.split(",")}
    if args.expires_at:
        body["expiresAt"] = args.expires_at
    if args.project:  # the operator's way in, with the admin token
        url, token = f"{ep.url}/admin/v1/projects/{args.project}/keys", ep.admin
    else:
        url, token = f"{ep.url}/api/v1/keys", ep.key
    data = request("POST", url, token, body)["data"]
    _print(
        data,
        args.json,
        [
            f"key      {data['id']}  {data['name']}  scopes={','.join(data['scopes'])}",
            f"secret   {data['secret']}   (shown once: store it now)",
        ],
    )
    return 0


def _create_key_arguments(parser: argparse.ArgumentParser) -> None:
    client_options(parser)
    parser.add_argument("--name", required=True)
    parser.add_argument(
        "--scopes", required=True, help="comma list, e.g. logs:read,events:write or *"
    )
    parser.add_argument("--expires-at", help="ISO-8601 time with zone, e.g. 2027-01-01T00:00:00Z")
    parser.add_argument(
        "--project",
        metavar="PROJECT_ID",
        help="issue the key for this project with the admin token (operators; any scopes)",
    )


def list_keys(args: argparse.Namespace, settings: Settings) -> int:
    """`key list`: every live key of the caller's project, page after page."""
    ep = endpoint(args, settings)
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = request("GET", f"{ep.url}/api/v1/keys{query}", ep.key)
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
    return 0


def revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    """`key revoke`: revoke a key at once."""
    ep = endpoint(args, settings)
    data = request("DELETE", f"{ep.url}/api/v1/keys/{args.key_id}", ep.key)["data"]
    _print(data, args.json, [f"revoked  {data['id']}  at {data['revokedAt']}"])
    return 0


def _revoke_arguments(parser: argparse.ArgumentParser) -> None:
    client_options(parser)
    parser.add_argument("key_id", metavar="KEY_ID")


COMMANDS = (
    Command(
        "project create",
        "create a project and its all-scopes key",
        create_project,
        _create_project_arguments,
    ),
    Command("project set-plan", "move a project to another plan", set_plan, _set_plan_arguments),
    Command(
        "key create",
        "create a key (no more powerful than yours)",
        create_key,
        _create_key_arguments,
    ),
    Command("key list", "list live keys (never their secrets)", list_keys, client_options),
    Command("key revoke", "revoke a key at once", revoke_key, _revoke_arguments),
)
