"""`codecourier silence add` turns its arguments into the API's body."""

from datetime import UTC, datetime

import pytest

from services import cli
from services.command import CliError
from services.silencecmds import body_of

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def parse(*words: str) -> object:
    return cli.parser().parse_args(["silence", "add", "--comment", "deploy", *words])


def test_a_duration_ends_that_long_after_now_with_repeatable_matchers() -> None:
    args = parse("--duration", "1d2h30m", "--workflow", "a", "--workflow", "b", "--rule",
                 "error_count")  # fmt: skip
    assert body_of(args, NOW) == {  # type: ignore[arg-type]
        "comment": "deploy",
        "matchers": {"workflowIds": ["a", "b"], "rules": ["error_count"]},
        "endsAt": "2026-06-02T14:30:00Z",
    }


def test_a_weekly_window_takes_its_time_zone() -> None:
    args = parse("--weekly", "mon,tue 22:00 120m", "--timezone", "Europe/Berlin")
    assert body_of(args, NOW)["schedule"] == {  # type: ignore[arg-type]
        "daysOfWeek": ["mon", "tue"], "start": "22:00", "durationMinutes": 120,
        "timezone": "Europe/Berlin",
    }  # fmt: skip


def test_one_of_the_end_options_is_required_and_bad_forms_are_refused() -> None:
    for words in ((), ("--duration", "soon"), ("--weekly", "mon 25h"),
                  ("--duration", "2h", "--ends-at", "2026-06-02T00:00:00Z")):  # fmt: skip
        with pytest.raises(SystemExit):
            parse(*words)


def test_a_naive_start_with_a_duration_is_refused() -> None:
    args = parse("--duration", "2h", "--starts-at", "2026-06-01T22:00:00")
    with pytest.raises(CliError):
        body_of(args, NOW)  # type: ignore[arg-type]
