"""Settings: read from the environment once, in `main()`, and passed down as one frozen struct."""

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from msgspec import Struct, field

from schemas.api import Plan
from services.common.workers import AlertsConfig, DispatcherConfig, SinkConfig


class PlanLimits(Struct, frozen=True, rename="camel"):
    """What one plan allows: token buckets (per minute, burst), monthly cost, retention."""

    api_per_minute: int
    api_burst: int
    sync_per_minute: int
    sync_burst: int
    async_per_minute: int
    async_burst: int
    monthly_cost_limit_usd: float
    retention_days: int
    ingest_multiplier: int = 100


class QueryLimits(Struct, frozen=True):
    """Per-query ClickHouse limits of one group of routes (0 leaves a limit off)."""

    max_execution_seconds: float
    max_memory_bytes: int
    max_rows_to_read: int


# max_rows_to_read counts the rows of every range ClickHouse selects after the primary key and
# skip indexes, not only the rows a LIMIT lets it read, so it is sized for the largest project.
DEFAULT_QUERY_LIMITS: dict[str, QueryLimits] = {
    "logs": QueryLimits(10.0, 2 * 1024**3, 2_000_000_000),
    "runs": QueryLimits(10.0, 1024**3, 500_000_000),
    "workflows": QueryLimits(10.0, 1024**3, 500_000_000),
    # An aggregate of every execution of the range (up to 30 days), not a page of them.
    "stats": QueryLimits(10.0, 1024**3, 500_000_000),
    # Every delivery of a page of subscriptions (up to 90 days of the delivery log).
    "health": QueryLimits(10.0, 1024**3, 500_000_000),
    # A page of a project's alerts (one row per alert episode) and their acknowledgements.
    "alerts": QueryLimits(10.0, 1024**3, 100_000_000),
}

DEFAULT_PLANS: dict[str, PlanLimits] = {
    "free": PlanLimits(10, 20, 10, 20, 50, 100, 10.0, 7),
    "pro": PlanLimits(30, 60, 60, 120, 200, 400, 100.0, 30),
    "team": PlanLimits(60, 120, 120, 240, 500, 1000, 500.0, 90),
    "enterprise": PlanLimits(120, 240, 300, 600, 1000, 2000, 5000.0, 365),
}


class Settings(Struct, frozen=True, kw_only=True):
    """Every knob of every service; see the README's configuration table."""

    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    kafka_bootstrap: str | None = None
    kafka_port: int = 0
    kafka_partitions: int = 8
    clickhouse_url: str
    database_url: str
    redis_url: str | None = None
    admin_token: str | None = None
    secret_key: str | None = None
    smtp_url: str | None = None
    smtp_ca_file: str | None = None
    email_from: str = "CodeCourier <alerts@codecourier.local>"
    retry_delays_s: tuple[float, ...] = (5, 15, 60, 180, 600)
    alert_cooldown_s: int = 3600
    egress_allow_cidrs: tuple[str, ...] = ()
    key_cache_s: float = 5.0
    max_body_bytes: int = 1024 * 1024
    max_event_bytes: int = 256 * 1024
    log_level: str = "info"
    public_base_url: str | None = None
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    metrics_port: int | None = None
    stop_timeout_s: float = 30.0
    plans: dict[str, PlanLimits] = {}
    logs_page_max_bytes: int = 8 * 1024 * 1024
    query_limits: dict[str, QueryLimits] = {}
    logsink: SinkConfig = field(default_factory=SinkConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    dispatcher: DispatcherConfig = field(default_factory=DispatcherConfig)
    console_rate_per_minute: int = 600  # a console user's requests (per minute and burst)
    invite_ttl_hours: float = 168.0
    auto_disable_hours: float = 120.0  # of nothing but failed deliveries (at least 10)
    # Where client commands find a running API and their key (`CC_URL`, `CC_API_KEY`).
    client_url: str | None = None
    api_key: str | None = None

    def plan(self, name: Plan | str) -> PlanLimits:
        """The limits of a plan, falling back to the defaults table."""
        return self.plans.get(name) or DEFAULT_PLANS[name]

    def query_limits_for(self, group: str) -> QueryLimits:
        """The ClickHouse limits of a group of routes (`logs`, `runs`, `workflows`, `stats`,
        `health`, `alerts`)."""
        return self.query_limits.get(group) or DEFAULT_QUERY_LIMITS[group]

    @property
    def embedded_kafka(self) -> bool:
        """Whether this process must start the embedded broker itself."""
        return self.kafka_bootstrap is None


class ConfigError(ValueError):
    """An environment variable holds a value that cannot be used."""


MIN_SECRET_KEY_CHARS = 32


def require_secret_key(settings: Settings) -> str:
    """The server secret; ConfigError when none was configured or loaded (never an empty key)."""
    key = settings.secret_key
    if not key or len(key) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(
            "no usable server secret key: set CC_SECRET_KEY (at least "
            f"{MIN_SECRET_KEY_CHARS} characters) or let the data dir hold secret.key"
        )
    return key


def _float_list(raw: str, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{name} must be a comma list of seconds, got {raw!r}") from exc
    if not values or any(v < 0 for v in values):
        raise ConfigError(f"{name} must list at least one non-negative delay")
    return values


def env_number(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number from the environment; `default` when unset or empty."""
    raw = env.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def load_plans(env: Mapping[str, str]) -> dict[str, PlanLimits]:
    """Merge `CC_PLANS_FILE` then `CC_PLANS` (JSON, camelCase fields) over the defaults."""
    merged = {name: msgspec.structs.asdict(p) for name, p in DEFAULT_PLANS.items()}
    sources = []
    if path := env.get("CC_PLANS_FILE"):
        sources.append(Path(path).read_text())
    if inline := env.get("CC_PLANS"):
        sources.append(inline)
    for source in sources:
        try:
            overrides: dict[str, dict[str, Any]] = json.loads(source)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"plan table is not valid JSON: {exc}") from exc
        for name, fields in overrides.items():
            if name not in merged:
                raise ConfigError(f"unknown plan {name!r} in the plan table")
            snake = {_snake(k): v for k, v in fields.items()}
            merged[name] = {**merged[name], **snake}
    try:
        return {name: PlanLimits(**fields) for name, fields in merged.items()}
    except TypeError as exc:
        raise ConfigError(f"plan table has an unknown field: {exc}") from exc


def load_query_limits(env: Mapping[str, str]) -> dict[str, QueryLimits]:
    """Merge `CC_QUERY_LIMITS` (JSON per route group, camelCase fields) over the defaults."""
    merged = {name: msgspec.structs.asdict(q) for name, q in DEFAULT_QUERY_LIMITS.items()}
    try:
        overrides: dict[str, dict[str, Any]] = json.loads(env.get("CC_QUERY_LIMITS") or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"CC_QUERY_LIMITS is not valid JSON: {exc}") from exc
    for name, fields in overrides.items():
        if name not in merged:
            raise ConfigError(f"unknown route group {name!r} in CC_QUERY_LIMITS")
        merged[name] = {**merged[name], **{_snake(k): v for k, v in fields.items()}}
    try:
        return {name: QueryLimits(**fields) for name, fields in merged.items()}
    except TypeError as exc:
        raise ConfigError(f"CC_QUERY_LIMITS has an unknown field: {exc}") from exc


def _snake(camel: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def _secret_key(raw: str | None) -> str | None:
    if raw is not None and len(raw) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(
            f"CC_SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters long (got "
            f"{len(raw)}); use a long random value, e.g. `openssl rand -base64 48`"
        )
    return raw


def _database_url(raw: str | None, data_dir: Path) -> str:
    if not raw:
        return f"sqlite+aiosqlite:///{data_dir / 'controlplane.db'}"
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if raw.startswith(plain):
            return driver + raw[len(plain) :]
    return raw


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `CC_*` variables (the process environment by default)."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("CC_DATA_DIR") or ".codecourier").resolve()
    cidrs = tuple(c.strip() for c in env.get("CC_EGRESS_ALLOW_CIDRS", "").split(",") if c.strip())
    return Settings(
        data_dir=data_dir,
        http_host=env.get("CC_HTTP_HOST") or "127.0.0.1",
        http_port=_int(env, "CC_HTTP_PORT", 8080),
        kafka_bootstrap=env.get("CC_KAFKA_BOOTSTRAP") or None,
        kafka_port=_int(env, "CC_KAFKA_PORT", 0),
        kafka_partitions=_int(env, "CC_KAFKA_PARTITIONS", 8),
        clickhouse_url=env.get("CC_CLICKHOUSE_URL") or f"chdb://{data_dir / 'clickhouse'}",
        database_url=_database_url(env.get("CC_DATABASE_URL"), data_dir),
        redis_url=env.get("CC_REDIS_URL") or None,
        admin_token=env.get("CC_ADMIN_TOKEN") or None,
        secret_key=_secret_key(env.get("CC_SECRET_KEY") or None),
        smtp_url=env.get("CC_SMTP_URL") or None,
        smtp_ca_file=env.get("CC_SMTP_CA_FILE") or None,
        email_from=env.get("CC_EMAIL_FROM") or "CodeCourier <alerts@codecourier.local>",
        retry_delays_s=_float_list(
            env.get("CC_RETRY_DELAYS") or "5,15,60,180,600", "CC_RETRY_DELAYS"
        ),
        alert_cooldown_s=_int(env, "CC_ALERT_COOLDOWN_SECONDS", 3600),
        egress_allow_cidrs=cidrs,
        key_cache_s=float(env.get("CC_KEY_CACHE_SECONDS") or 5.0),
        max_body_bytes=_int(env, "CC_MAX_BODY_BYTES", 1024 * 1024),
        log_level=(env.get("CC_LOG_LEVEL") or "info").lower(),
        public_base_url=env.get("CC_PUBLIC_BASE_URL") or None,
        pagerduty_url=env.get("CC_PAGERDUTY_URL") or "https://events.pagerduty.com/v2/enqueue",
        metrics_port=_int(env, "CC_METRICS_PORT", 0) or None,
        stop_timeout_s=env_number(env, "CC_STOP_TIMEOUT_SECONDS", 30.0),
        plans=load_plans(env),
        logs_page_max_bytes=_int(env, "CC_LOGS_PAGE_MAX_BYTES", 8 * 1024 * 1024),
        query_limits=load_query_limits(env),
        logsink=SinkConfig(dedup_scope=env.get("CC_LOGSINK_DEDUP_SCOPE") or ""),
        alerts=load_alerts_config(env),
        dispatcher=load_dispatcher_config(env),
        console_rate_per_minute=int(env_number(env, "CC_CONSOLE_RATE_PER_MINUTE", 600)),
        invite_ttl_hours=env_number(env, "CC_INVITE_TTL_HOURS", 168.0),
        auto_disable_hours=env_number(env, "CC_AUTO_DISABLE_HOURS", 120.0),
        client_url=env.get("CC_URL") or None,
        api_key=env.get("CC_API_KEY") or None,
    )


def load_alerts_config(env: Mapping[str, str]) -> AlertsConfig:
    """Read `CC_ALERTS_GROUP`, `_STORE`, `_COMMIT_SECONDS`, `_BATCH`, `_BATCH_MS` and
    `CC_TICK_SECONDS`."""
    default = AlertsConfig()
    return AlertsConfig(
        group=env.get("CC_ALERTS_GROUP") or default.group,
        store=env.get("CC_ALERTS_STORE") or default.store,
        tick_s=env_number(env, "CC_TICK_SECONDS", default.tick_s),
        commit_interval_s=env_number(env, "CC_ALERTS_COMMIT_SECONDS", default.commit_interval_s),
        batch_max=max(1, int(env_number(env, "CC_ALERTS_BATCH", default.batch_max))),
        batch_s=max(0.001, env_number(env, "CC_ALERTS_BATCH_MS", default.batch_s * 1000) / 1000),
    )


def load_dispatcher_config(env: Mapping[str, str]) -> DispatcherConfig:
    """Read `CC_DISPATCHER_*` and `CC_DELIVERY_TIMEOUT_SECONDS`; the rest keep their defaults."""
    default = DispatcherConfig()
    in_flight = env_number(env, "CC_DISPATCHER_LANE_IN_FLIGHT", default.in_flight_per_lane)
    queued = env_number(env, "CC_DISPATCHER_LANE_QUEUE", default.queued_per_lane)
    return DispatcherConfig(
        group=env.get("CC_DISPATCHER_GROUP") or default.group,
        in_flight_per_lane=int(in_flight),
        queued_per_lane=int(queued),
        timeout_s=env_number(env, "CC_DELIVERY_TIMEOUT_SECONDS", default.timeout_s),
        lane_stall_s=env_number(env, "CC_DISPATCHER_LANE_STALL_SECONDS", default.lane_stall_s),
    )


def ensure_secret_key(settings: Settings) -> Settings:
    """Use `CC_SECRET_KEY`, else a key persisted (mode 0600) under the data dir.

    Processes starting together may all generate one: each writes its own temporary file and
    links it into place, which succeeds for exactly one; the others read the winner's. The key
    file only ever appears complete, so a reader never sees a half-written one.
    """
    if settings.secret_key:
        return settings
    path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        _publish_new_key(path)
    key = path.read_text().strip()
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(
            f"{path} holds no usable secret key (empty or shorter than {MIN_SECRET_KEY_CHARS} "
            "characters); restore it from a backup or set CC_SECRET_KEY"
        )
    return msgspec.structs.replace(settings, secret_key=key)


def _publish_new_key(path: Path) -> None:
    key = secrets.token_urlsafe(48)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: use its key
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
