"""ClickHouse query limits: the settings sent and how an exceeded limit reaches the client."""

from pathlib import Path

import pytest

from services.common.clickhouse import limit_error, limit_settings
from services.common.config import (
    DEFAULT_QUERY_LIMITS,
    ConfigError,
    QueryLimits,
    load_settings,
)
from services.common.errors import QueryTooBroad, Unavailable


class DriverError(Exception):
    """What clickhouse-connect raises: a numeric ClickHouse code on `code`."""

    def __init__(self, code: int) -> None:
        super().__init__(f"Code: {code}.")
        self.code = code


def test_settings_make_clickhouse_throw_at_every_limit() -> None:
    settings = limit_settings(QueryLimits(2.5, 1000, 50))
    assert settings == {
        "max_execution_time": 2.5, "timeout_overflow_mode": "throw", "max_memory_usage": 1000,
        "max_rows_to_read": 50, "read_overflow_mode": "throw",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("code", "kind", "status"),
    [
        (159, Unavailable, 503),
        (241, Unavailable, 503),
        (158, QueryTooBroad, 400),
        (307, QueryTooBroad, 400),
    ],
)
def test_exceeded_limits_become_app_errors(code: int, kind: type, status: int) -> None:
    error = limit_error(DriverError(code), "filter by workflowId")
    assert isinstance(error, kind) and error.status == status
    assert "filter by workflowId" in error.message
    if isinstance(error, Unavailable):
        assert error.retry_after_s > 0
    else:
        assert error.code == "VALIDATION_ERROR"


def test_other_errors_are_left_alone() -> None:
    assert limit_error(DriverError(62), "x") is None  # SYNTAX_ERROR: a bug, not a limit
    assert limit_error(ValueError("no code"), "x") is None


def test_limits_and_page_bytes_are_configurable(tmp_path: Path) -> None:
    settings = load_settings({"CC_DATA_DIR": str(tmp_path)})
    assert settings.logs_page_max_bytes == 8 * 1024 * 1024
    assert settings.query_limits_for("runs") == DEFAULT_QUERY_LIMITS["runs"]
    env = {
        "CC_DATA_DIR": str(tmp_path), "CC_LOGS_PAGE_MAX_BYTES": "65536",
        "CC_QUERY_LIMITS": '{"workflows": {"maxRowsToRead": 10}, "logs": {"maxExecutionSeconds": 1.5}}',
    }  # fmt: skip
    settings = load_settings(env)
    assert settings.logs_page_max_bytes == 65536
    assert settings.query_limits_for("workflows").max_rows_to_read == 10
    assert settings.query_limits_for("logs").max_execution_seconds == 1.5
    assert (
        settings.query_limits_for("logs").max_memory_bytes
        == DEFAULT_QUERY_LIMITS["logs"].max_memory_bytes
    )
    with pytest.raises(ConfigError, match="unknown route group"):
        load_settings({"CC_DATA_DIR": str(tmp_path), "CC_QUERY_LIMITS": '{"bogus": {}}'})
    with pytest.raises(ConfigError, match="unknown field"):
        load_settings({"CC_DATA_DIR": str(tmp_path), "CC_QUERY_LIMITS": '{"logs": {"rows": 1}}'})
