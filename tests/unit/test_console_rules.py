"""The console's pure rules: password bounds, session expiry, roles to scopes, the project of a
request, and the CSRF checks."""

import io

import pytest

from services.api.csrf import cross_site_problem, origin_of, own_origins, token_problem
from services.api.sessionauth import (
    ABSOLUTE_MS,
    IDLE_MS,
    VIEWER_SCOPES,
    choose_membership,
    scopes_for,
    session_problem,
)
from services.command import CliError
from services.common.controlplane import MembershipRecord, SessionRecord
from services.common.passwords import generate_password, password_problem
from services.usercmds import read_password

ORIGINS = own_origins("http", "127.0.0.1:8080", "https://console.example.com/base")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_password_bounds() -> None:
    assert password_problem("x" * 11) == "Must be at least 12 characters."
    assert password_problem("x" * 12) is None and password_problem("x" * 256) is None
    assert password_problem("x" * 257) == "Must be at most 256 characters."
    generated = {generate_password() for _ in range(100)}
    assert len(generated) == 100 and all(len(p) == 24 for p in generated)


def test_the_cli_reads_one_line_or_generates_on_a_terminal() -> None:
    assert read_password(io.StringIO("twelve chars!\nsecond line\n")) == ("twelve chars!", False)
    password, generated = read_password(Terminal())
    assert generated and password_problem(password) is None
    with pytest.raises(CliError, match="at least 12"):
        read_password(io.StringIO("short\n"))


def test_sessions_end_when_idle_absolute_or_revoked() -> None:
    live = SessionRecord("h", "usr_a", 0, 0, ABSOLUTE_MS)
    assert session_problem(live, IDLE_MS - 1) is None
    assert session_problem(live, IDLE_MS) is not None
    recent = SessionRecord("h", "usr_a", 0, ABSOLUTE_MS - 1000, ABSOLUTE_MS)
    assert session_problem(recent, ABSOLUTE_MS - 1) is None
    assert session_problem(recent, ABSOLUTE_MS) is not None
    revoked = SessionRecord("h", "usr_a", 0, 0, ABSOLUTE_MS, revoked_at_ms=5)
    assert "ended" in (session_problem(revoked, 6) or "")


def test_roles_map_to_scopes() -> None:
    assert scopes_for("viewer") == list(VIEWER_SCOPES)
    assert all(scope.endswith(":read") for scope in VIEWER_SCOPES)
    assert scopes_for("member") == scopes_for("owner") == ["*"]


def test_the_project_is_the_named_membership_or_the_oldest() -> None:
    first = MembershipRecord("prj_a", "a", "free", "viewer", 1)
    second = MembershipRecord("prj_b", "b", "pro", "owner", 2)
    assert choose_membership([first, second], None) is first
    assert choose_membership([first, second], "prj_b") is second
    with pytest.raises(Exception, match="No project prj_c"):
        choose_membership([first, second], "prj_c")
    with pytest.raises(Exception, match="not a member of any project"):
        choose_membership([], None)


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),
        ({"Origin": "http://127.0.0.1:8080"}, False),
        ({"Origin": "HTTPS://console.example.com"}, False),
        ({"Referer": "http://127.0.0.1:8080/logs?level=error"}, False),
        ({"Sec-Fetch-Site": "same-origin"}, False),
        ({"Origin": "http://127.0.0.1:8081"}, True),
        ({"Origin": "https://127.0.0.1:8080"}, True),
        ({"Origin": "null"}, True),
        ({"Referer": "https://evil.example/"}, True),
        ({"Origin": "http://127.0.0.1:8080", "Sec-Fetch-Site": "cross-site"}, True),
    ],
)
def test_other_origins_are_refused(headers: dict[str, str], refused: bool) -> None:
    assert (cross_site_problem(headers, ORIGINS) is not None) == refused


def test_the_csrf_token_must_match_the_cookie_and_the_session() -> None:
    cookies = {"cc_csrf": "t" * 64}
    assert token_problem({"X-CSRF-Token": "t" * 64}, cookies, "t" * 64) is None
    assert token_problem({}, cookies, "t" * 64) is not None
    assert token_problem({"X-CSRF-Token": "u" * 64}, {"cc_csrf": "u" * 64}, "t" * 64) is not None
    assert token_problem({"X-CSRF-Token": "t" * 64}, {}, "t" * 64) is not None
    assert origin_of("not a url") is None
