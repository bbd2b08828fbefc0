"""Settings from the environment: defaults, overrides, clear errors."""

import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from services.common import config
from services.common.config import (
    DEFAULT_PLANS,
    MIN_SECRET_KEY_CHARS,
    ConfigError,
    ensure_secret_key,
    load_settings,
    require_secret_key,
)
from services.common.workers import AlertsConfig, DispatcherConfig, SinkConfig


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
    assert settings.pagerduty_url == "https://events.pagerduty.com/v2/enqueue"


def test_postgres_urls_get_the_async_driver(tmp_path: Path) -> None:
    env = {"CC_DATA_DIR": str(tmp_path), "CC_DATABASE_URL": "postgresql://u@h:5432/db"}
    assert load_settings(env).database_url == "postgresql+asyncpg://u@h:5432/db"


def test_pagerduty_url_is_read(tmp_path: Path) -> None:
    env = {"CC_DATA_DIR": str(tmp_path), "CC_PAGERDUTY_URL": "http://127.0.0.1:9/v2/enqueue"}
    assert load_settings(env).pagerduty_url == "http://127.0.0.1:9/v2/enqueue"


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
        load_settings({"CC_DATA_DIR": str(tmp_path), "CC_SECRET_KEY": LONG_SECRET})
    )
    assert explicit.secret_key == LONG_SECRET
    assert list(tmp_path.iterdir()) == [tmp_path / "secret.key"]  # no temporary file left


LONG_SECRET = "k" * MIN_SECRET_KEY_CHARS


@pytest.mark.parametrize("value", ["x", "k" * (MIN_SECRET_KEY_CHARS - 1)])
def test_a_short_secret_key_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=f"CC_SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS}"):
        load_settings({"CC_DATA_DIR": str(tmp_path), "CC_SECRET_KEY": value})


def test_a_reader_never_sees_a_secret_key_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes start together: the second must not read the first one's half-made file."""
    generating, read = threading.Event(), threading.Event()
    real = secrets.token_urlsafe

    def first_is_slow(n: int) -> str:
        if not generating.is_set():
            generating.set()
            read.wait(5)
        return real(n)

    monkeypatch.setattr(config.secrets, "token_urlsafe", first_is_slow)
    settings = load_settings({"CC_DATA_DIR": str(tmp_path)})
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(ensure_secret_key, settings)
        assert generating.wait(5)
        second = ensure_secret_key(settings)
        read.set()
        first_key = first.result(10).secret_key
    assert second.secret_key == first_key
    assert first_key is not None and len(first_key) >= MIN_SECRET_KEY_CHARS
    assert (tmp_path / "secret.key").read_text().strip() == first_key


def test_an_empty_secret_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "secret.key").write_text("")
    with pytest.raises(ConfigError, match=r"secret\.key"):
        ensure_secret_key(load_settings({"CC_DATA_DIR": str(tmp_path)}))


def test_a_missing_secret_key_is_refused_where_it_is_needed(tmp_path: Path) -> None:
    settings = load_settings({"CC_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"secret\.key"):
        require_secret_key(settings)
    assert require_secret_key(ensure_secret_key(settings))


def test_services_refuse_to_start_without_a_secret_key(tmp_path: Path) -> None:
    from services import wiring
    from services.dispatcher.service import Dispatcher, DispatcherConfig

    settings = load_settings({"CC_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="CC_SECRET_KEY"):
        Dispatcher(settings, DispatcherConfig())
    with pytest.raises(ConfigError, match="CC_SECRET_KEY"):
        wiring.key_authenticator(settings, None)  # type: ignore[arg-type]


def test_the_workers_settings_have_their_defaults(tmp_path: Path) -> None:
    settings = load_settings({"CC_DATA_DIR": str(tmp_path)})
    assert settings.alerts == AlertsConfig("codecourier-alerts", "rocksdb://", 15.0, 1.0)
    dispatcher = settings.dispatcher
    assert (dispatcher.group, dispatcher.in_flight_per_lane, dispatcher.queued_per_lane) == (
        "codecourier-dispatcher", 16, 2000,
    )  # fmt: skip
    assert (dispatcher.timeout_s, dispatcher.lane_stall_s) == (30.0, 1.0)
    assert settings.logsink == SinkConfig() and settings.logsink.dedup_scope == ""
    assert settings.client_url is None and settings.api_key is None


def test_the_workers_settings_are_read_from_their_variables(tmp_path: Path) -> None:
    env = {
        "CC_DATA_DIR": str(tmp_path),
        "CC_ALERTS_GROUP": "alerts-b", "CC_ALERTS_STORE": "memory://", "CC_TICK_SECONDS": "1",
        "CC_ALERTS_COMMIT_SECONDS": "0.5", "CC_DISPATCHER_GROUP": "dispatch-b",
        "CC_DISPATCHER_LANE_IN_FLIGHT": "4", "CC_DISPATCHER_LANE_QUEUE": "8",
        "CC_DELIVERY_TIMEOUT_SECONDS": "5", "CC_DISPATCHER_LANE_STALL_SECONDS": "0.3",
        "CC_LOGSINK_DEDUP_SCOPE": "17:", "CC_URL": "http://api:8080", "CC_API_KEY": "cc_live_x",
    }  # fmt: skip
    settings = load_settings(env)
    assert settings.alerts == AlertsConfig("alerts-b", "memory://", 1.0, 0.5)
    assert settings.dispatcher == DispatcherConfig(
        group="dispatch-b", in_flight_per_lane=4, queued_per_lane=8, timeout_s=5.0,
        lane_stall_s=0.3,
    )  # fmt: skip
    assert settings.logsink == SinkConfig(dedup_scope="17:")
    assert (settings.client_url, settings.api_key) == ("http://api:8080", "cc_live_x")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CC_TICK_SECONDS", "0"),
        ("CC_ALERTS_COMMIT_SECONDS", "soon"),
        ("CC_DISPATCHER_LANE_QUEUE", "-1"),
        ("CC_DELIVERY_TIMEOUT_SECONDS", "x"),
    ],
)
def test_bad_worker_values_are_config_errors(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({"CC_DATA_DIR": str(tmp_path), name: value})
