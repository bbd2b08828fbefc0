"""`codecourier up`'s console owner: made once with a generated password, kept on later starts,
a member of whichever local project the start uses."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from services.common.controlplane import ControlPlane
from services.common.localfile import LocalCredentials, read_credentials, write_credentials
from services.common.passwords import hash_password_now
from services.local import LOCAL_OWNER_EMAIL, _console_owner, banner
from tests.integration.console import cheap_hashes  # noqa: F401 - the autouse fixture

URL = "http://127.0.0.1:8080/"


def running(cp: ControlPlane) -> Any:
    return SimpleNamespace(deps=SimpleNamespace(controlplane=cp))


def saved(project_id: str, console: Any = None) -> LocalCredentials:
    return LocalCredentials("http://127.0.0.1:8080", "cc_admin_x", project_id, "cc_live_x", console)


async def test_the_owner_is_made_once_and_kept(cp: ControlPlane, tmp_path: Path) -> None:
    project = await cp.create_project("local", "enterprise", 1)
    first = await _console_owner(running(cp), project.id, URL, None)
    assert (first.url, first.email) == (URL, LOCAL_OWNER_EMAIL)
    assert first.password is not None and len(first.password) >= 12
    text = banner(saved(project.id, first), tmp_path / "local.json")
    assert f"  Console      {URL}" in text and f"  Password     {first.password}" in text
    again = await _console_owner(running(cp), project.id, URL, saved(project.id, first))
    assert again == first  # a later start: same user, same password
    other = await cp.create_project("local", "enterprise", 2)  # the old key stopped working
    moved = await _console_owner(running(cp), other.id, URL, saved(project.id, first))
    assert moved.password == first.password
    user = await cp.find_user(LOCAL_OWNER_EMAIL)
    assert user is not None
    assert [(m.project_id, m.role) for m in await cp.memberships_of(user.id)] == [
        (project.id, "owner"),
        (other.id, "owner"),
    ]
    await cp.change_password(user.id, hash_password_now("changed in the console"), 3, None)
    changed = await _console_owner(running(cp), other.id, URL, saved(other.id, first))
    assert changed.password is None  # never reset; the banner says it is not known here
    assert "not known" in banner(saved(other.id, changed), tmp_path / "local.json")


def test_an_older_local_json_without_console_is_read(tmp_path: Path) -> None:
    (tmp_path / "local.json").write_text(
        '{"baseUrl": "http://127.0.0.1:8080", "adminToken": "t", "projectId": "prj_x",'
        ' "apiKey": "cc_live_x"}'
    )
    old = read_credentials(tmp_path)
    assert old is not None and old.console is None and old.adminToken == "t"
    write_credentials(tmp_path, saved("prj_x"))
    assert read_credentials(tmp_path) == saved("prj_x")
