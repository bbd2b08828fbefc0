"""The composition root: the only place that turns Settings into concrete adapters."""

from services.common.auth import KeyAuthenticator
from services.common.clickhouse import ClickHouse
from services.common.config import Settings, require_secret_key
from services.common.controlplane import ControlPlane, make_engine
from services.common.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter


def controlplane(settings: Settings) -> ControlPlane:
    """SQLite under the data dir by default, PostgreSQL when `CC_DATABASE_URL` says so."""
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ControlPlane(make_engine(settings.database_url))


def rate_limiter(settings: Settings) -> RateLimiter:
    """Redis when `CC_REDIS_URL` is set (shared by replicas), else this process's memory."""
    if settings.redis_url:
        return RedisRateLimiter(settings.redis_url)
    return MemoryRateLimiter()


def clickhouse(settings: Settings) -> ClickHouse:
    """chDB under the data dir by default, a ClickHouse server for `http(s)://` URLs."""
    if settings.clickhouse_url.startswith("chdb://"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return ClickHouse(settings.clickhouse_url)


def key_authenticator(settings: Settings, cp: ControlPlane) -> KeyAuthenticator:
    """Key verification under the server's secret key."""
    return KeyAuthenticator(cp, require_secret_key(settings), settings.key_cache_s)
