"""Settings from the environment: defaults, overrides, clear errors."""

from pathlib import Path

import pytest

from services.common.config import DEFAULT_PLANS, ConfigError, ensure_secret_key, load_settings


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = load_settings({"CC_DATA_DIR": str(tmp_path)})
    assert settings.http_port == 8080
    assert settings.embedded_kafka
    assert settings.clickhouse_url == f"chdb://{tmp_path}/clickhouse"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/controlplane.db"
    assert settings.redis_url is None
    assert settings.smtp_url is None and settings.smtp_ca_file is None
    assert settings.retry_delays_s == (5, 15, 60, 180, 600)
    assert settings.plan("free") == DEFAULT_PLANS["free"]


def test_postgres_urls_get_the_async_driver(tmp_path: Path) -> None:
    env = {"CC_DATA_DIR": str(tmp_path), "CC_DATABASE_URL": "postgresql://u@h:5432/db"}
    assert load_settings(env).database_url == "postgresql+asyncpg://u@h:5432/db"


def test_smtp_ca_file_is_read(tmp_path: Path) -> None:
    env = {"CC_DATA_DIR": str(tmp_path), "CC_SMTP_CA_FILE": "/etc/relay-ca.pem"}
    assert load_settings(env).smtp_ca_file == "/etc/relay-ca.pem"


def test_plan_table_overrides_merge_over_defaults(tmp_path: Path) -> None:
    plans = tmp_path / "plans.json"
    plans.write_text('{"free": {"apiPerMinute": 100}}')
    env = {
        "CC_DATA_DIR": str(tmp_path),
        "CC_PLANS_FILE": str(plans),
        "CC_PLANS": '{"enterprise": {"apiBurst": 100000}}',
    }
    settings = load_settings(env)
    assert settings.plan("free").api_per_minute == 100
    assert settings.plan("free").api_burst == 20
    assert settings.plan("enterprise").api_burst == 100000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CC_HTTP_PORT", "eighty"),
        ("CC_RETRY_DELAYS", "5,soon"),
        ("CC_PLANS", "{"),
        ("CC_PLANS", '{"gold": {}}'),
        ("CC_PLANS", '{"free": {"speed": 1}}'),
    ],
)
def test_bad_values_are_config_errors(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError):
        load_settings({"CC_DATA_DIR": str(tmp_path), name: value})


def test_secret_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = ensure_secret_key(load_settings({"CC_DATA_DIR": str(tmp_path)}))
    second = ensure_secret_key(load_settings({"CC_DATA_DIR": str(tmp_path)}))
    assert first.secret_key and first.secret_key == second.secret_key
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    explicit = ensure_secret_key(
        load_settings({"CC_DATA_DIR": str(tmp_path), "CC_SECRET_KEY": "x"})
    )
    assert explicit.secret_key == "x"
