"""The `codecourier` command against the running stack."""

import json
import subprocess

from tests.conftest import CLI, Stack


def run(stack: Stack, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    auth = (
        ["--admin-token", stack.admin_token] if args[0] == "project" else ["--api-key", key or ""]
    )
    return subprocess.run(
        [CLI, *args, "--url", stack.base_url, *auth],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_project_and_key_lifecycle_from_the_command_line(stack: Stack) -> None:
    created = run(stack, "project", "create", "--name", "cli", "--plan", "pro", "--json")
    assert created.returncode == 0, created.stderr
    data = json.loads(created.stdout)
    secret = data["key"]["secret"]
    assert data["project"]["plan"] == "pro"

    made = run(
        stack, "key", "create", "--name", "ci", "--scopes", "logs:read,events:write", key=secret
    )
    assert made.returncode == 0, made.stderr
    assert "shown once" in made.stdout
    listed = json.loads(run(stack, "key", "list", "--json", key=secret).stdout)
    ci = next(k for k in listed if k["name"] == "ci")
    assert ci["scopes"] == ["events:write", "logs:read"]
    assert all("secret" not in k for k in listed)

    revoked = run(stack, "key", "revoke", ci["id"], key=secret)
    assert revoked.returncode == 0 and ci["id"] in revoked.stdout
    again = run(stack, "key", "revoke", ci["id"], key=secret)
    assert again.returncode == 1
    assert "NOT_FOUND" in again.stderr and "request" in again.stderr


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["up", "--help"],
        ["project", "create", "--help"],
        ["key", "create", "--help"],
        ["key", "revoke", "--help"],
    ):
        result = subprocess.run(
            [CLI, *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0
        assert "usage: codecourier" in result.stdout


def test_unreachable_server_is_one_clear_line(stack: Stack) -> None:
    result = subprocess.run(
        [CLI, "key", "list", "--url", "http://127.0.0.1:9", "--api-key", "x"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("codecourier: cannot reach")
