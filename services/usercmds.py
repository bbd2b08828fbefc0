"""User commands: `user create`, which talks to the control plane directly (an operator's
command on the server, like `migrate`: no API, token or key is involved)."""

import argparse
import asyncio
import json
import re
import sys
from typing import TYPE_CHECKING, TextIO

from schemas.console import EMAIL_PATTERN, MAX_EMAIL_CHARS, ROLES
from services.command import CliError, Command
from services.common.config import Settings
from services.common.passwords import generate_password, hash_password_now, password_problem

if TYPE_CHECKING:
    from services.common.controlplane import ControlPlane


def parse_email(text: str) -> str:
    """An email argument, lower-cased; argparse reports a malformed one."""
    email = text.strip().lower()
    if len(email) > MAX_EMAIL_CHARS or not re.fullmatch(EMAIL_PATTERN, email):
        raise argparse.ArgumentTypeError(f"not an email address: {text!r}")
    return email


def read_password(stdin: TextIO) -> tuple[str, bool]:
    """The new user's password: one line of standard input when that is not a terminal, else
    a generated one; and whether it was generated (then it is printed, once)."""
    if stdin.isatty():
        return generate_password(), True
    password = stdin.readline().rstrip("\r\n")
    if problem := password_problem(password):
        raise CliError(f"the password read from standard input is unusable: {problem}")
    return password, False


def create_user(args: argparse.Namespace, settings: Settings) -> int:
    """`user create`: a user (or an existing one) made a member of a project with a role."""
    return asyncio.run(_create_user(args, settings))


async def _create_user(args: argparse.Namespace, settings: Settings) -> int:
    from services import wiring
    from services.common.clock import now_ms

    cp = wiring.controlplane(settings)
    try:
        await cp.migrate(now_ms())
        if await cp.get_project(args.project) is None:
            raise CliError(f"no project {args.project} in the control plane")
        lines, data = await _make_member(cp, args)
    finally:
        await cp.close()
    print(json.dumps(data, indent=2) if args.json else "\n".join(lines))
    return 0


async def _make_member(
    cp: "ControlPlane", args: argparse.Namespace
) -> tuple[list[str], dict[str, object]]:
    from services.common.clock import now_ms
    from services.common.controlplane import new_user

    user = await cp.find_user(args.email)
    password, generated = None, False
    if user is None:
        password, generated = read_password(sys.stdin)
        hashed = await asyncio.to_thread(hash_password_now, password)
        user = new_user(args.email, hashed, now_ms())
        await cp.create_user(user)
    joined = await cp.add_member(user.id, args.project, args.role, now_ms())
    if not joined and await cp.set_role(args.project, user.id, args.role) == "last_owner":
        raise CliError(f"{user.email} is the last owner of {args.project}; keep them owner")
    member = await cp.get_member(args.project, user.id)
    role = member.role if member else args.role
    lines = [
        f"user     {user.id}  {user.email}" + ("" if password else "  (existing; password kept)"),
        f"project  {args.project}  role={role}",
    ]
    if generated:
        lines.append(f"password {password}   (shown once: store it now)")
    data: dict[str, object] = {"userId": user.id, "email": user.email, "projectId": args.project}
    data |= {"role": role} | ({"password": password} if generated else {})
    return lines, data


def _create_user_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--email", required=True, type=parse_email, help="the person's email (their sign-in)"
    )
    parser.add_argument(
        "--project", required=True, metavar="PROJECT_ID", help="the project to join (prj_…)"
    )
    parser.add_argument("--role", required=True, choices=ROLES, help="their role in the project")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


COMMANDS = (
    Command(
        "user create",
        "create a console user (or add an existing one) with a role in a project",
        create_user,
        _create_user_arguments,
        description="Create a person who signs in to the console, as owner, member or viewer "
        "of a project; an existing user is given the role in that project and keeps their "
        "password. The password of a new user is read from standard input (one line, at least "
        "12 characters) when that is not a terminal, e.g. `printf '%s\\n' \"$PW\" | codecourier "
        "user create ...`; on a terminal a strong one is generated and printed once. Talks to "
        "the control plane (CC_DATABASE_URL, else the data dir's SQLite) directly.",
    ),
)
