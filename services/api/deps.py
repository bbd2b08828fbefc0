"""What route handlers may use: the adapters chosen by the wiring, as one struct."""

import asyncio
from dataclasses import dataclass, field

from services.api.intake import Intake
from services.api.visibility import Visibility
from services.common.auth import KeyAuthenticator
from services.common.clickhouse import ClickHouse
from services.common.clock import Clock, system_clock
from services.common.config import Settings
from services.common.controlplane import ControlPlane
from services.common.kafkaclients import Producer
from services.common.ratelimit import RateLimiter, RedisRateLimiter


@dataclass
class Deps:
    """The API's adapters; built once by `services.wiring`."""

    settings: Settings
    controlplane: ControlPlane
    auth: KeyAuthenticator
    limiter: RateLimiter
    clickhouse: ClickHouse
    kafka_bootstrap: str
    cursor_key: bytes
    sealing_key: bytes  # seals destination secrets at rest (from the server secret)
    producer: Producer
    visibility: Visibility
    clock: Clock = system_clock
    background: list[object] = field(default_factory=list)
    outbox_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # client address -> monotonic time until which its refused keys have blocked it
    blocked_addresses: dict[str, float] = field(default_factory=dict)
    intake: Intake = field(default_factory=Intake)

    @property
    def redis(self) -> RedisRateLimiter | None:
        """The Redis store when rate limits are shared, for readiness checks."""
        return self.limiter if isinstance(self.limiter, RedisRateLimiter) else None
