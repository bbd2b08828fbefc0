"""`codecourier user create` as an operator runs it: a child process on the control plane's
SQLite database, the password on standard input."""

import asyncio
import json
import subprocess
from pathlib import Path

from argon2 import PasswordHasher

from services.common.controlplane import ControlPlane, MembershipRecord, UserRecord, make_engine
from tests.processes import CLI, ROOT, service_env

PASSWORD = "an operator's chosen password"


def _plane(data_dir: Path) -> ControlPlane:
    return ControlPlane(make_engine(f"sqlite+aiosqlite:///{data_dir / 'controlplane.db'}"))


def new_project(data_dir: Path) -> str:
    async def create() -> str:
        cp = _plane(data_dir)
        try:
            await cp.migrate(1)
            return (await cp.create_project("acme", "free", 1)).id
        finally:
            await cp.close()

    data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(create())


def stored(data_dir: Path, email: str) -> tuple[UserRecord | None, list[MembershipRecord]]:
    async def read() -> tuple[UserRecord | None, list[MembershipRecord]]:
        cp = _plane(data_dir)
        try:
            user = await cp.find_user(email)
            return user, (await cp.memberships_of(user.id) if user else [])
        finally:
            await cp.close()

    return asyncio.run(read())


def create_user(data_dir: Path, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = service_env(data_dir, settings={"CC_DATABASE_URL": ""})
    return subprocess.run(
        [CLI, "user", "create", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_user_create_takes_the_password_from_standard_input(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    project_id = new_project(data_dir)
    args = ("--email", "Ada@Example.com", "--project", project_id, "--role", "viewer", "--json")
    made = create_user(data_dir, f"{PASSWORD}\n", *args)
    assert made.returncode == 0, made.stderr
    answer = json.loads(made.stdout)
    assert answer["userId"].startswith("usr_") and "password" not in answer
    assert (answer["email"], answer["projectId"], answer["role"]) == (
        "ada@example.com",
        project_id,
        "viewer",
    )
    user, memberships = stored(data_dir, "ada@example.com")
    assert user is not None and user.password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(user.password_hash, PASSWORD)
    assert [(m.project_id, m.role) for m in memberships] == [(project_id, "viewer")]


def test_an_existing_user_gets_the_role_and_keeps_the_password(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    project_id = new_project(data_dir)
    base = ("--email", "ada@example.com", "--project", project_id, "--role")
    assert create_user(data_dir, f"{PASSWORD}\n", *base, "owner").returncode == 0
    again = create_user(data_dir, "ignored other password\n", *base, "member")
    assert again.returncode == 1 and "last owner" in again.stderr  # the project keeps an owner
    other = new_project(data_dir)
    joined = create_user(data_dir, "", "--email", "ada@example.com", "--project", other,
                         "--role", "member")  # fmt: skip
    assert joined.returncode == 0, joined.stderr
    assert "existing; password kept" in joined.stdout and "\npassword " not in joined.stdout
    user, memberships = stored(data_dir, "ada@example.com")
    assert user is not None and PasswordHasher().verify(user.password_hash, PASSWORD)
    assert [(m.project_id, m.role) for m in memberships] == [
        (project_id, "owner"),
        (other, "member"),
    ]


def test_bad_input_is_one_line_and_exit_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    project_id = new_project(data_dir)
    short = create_user(data_dir, "short\n", "--email", "a@example.com", "--project", project_id,
                        "--role", "member")  # fmt: skip
    assert short.returncode == 1
    assert short.stderr.startswith("codecourier: the password read from standard input")
    missing = create_user(data_dir, f"{PASSWORD}\n", "--email", "a@example.com", "--project",
                          "prj_missing", "--role", "member")  # fmt: skip
    assert (missing.returncode, missing.stderr) == (
        1,
        "codecourier: no project prj_missing in the control plane\n",
    )
    bad_email = create_user(data_dir, "", "--email", "nobody", "--project", project_id,
                            "--role", "member")  # fmt: skip
    assert bad_email.returncode == 2 and "not an email address" in bad_email.stderr
    assert stored(data_dir, "a@example.com") == (None, [])
