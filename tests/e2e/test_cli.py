"""The `codecourier` command against the running stack."""

import json
import subprocess

from tests.processes import CLI, Stack


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


def test_an_operator_issues_a_key_for_an_existing_project(stack: Stack) -> None:
    created = json.loads(run(stack, "project", "create", "--name", "locked", "--json").stdout)
    project_id, lost = created["project"]["id"], created["key"]
    assert run(stack, "key", "revoke", lost["id"], key=lost["secret"]).returncode == 0
    issued = subprocess.run(
        [CLI, "key", "create", "--project", project_id, "--name", "recovery", "--scopes", "*",
         "--json", "--url", stack.base_url, "--admin-token", stack.admin_token],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    key = json.loads(issued.stdout)
    assert key["projectId"] == project_id and key["scopes"] == ["*"]
    listed = json.loads(run(stack, "key", "list", "--json", key=key["secret"]).stdout)
    assert [k["name"] for k in listed] == ["recovery"]


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
