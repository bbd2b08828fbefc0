"""The outbox relay against the embedded broker: a message the broker refuses (over the
producer's limit, a partition that does not exist) is dead-lettered and the rows behind it
are published."""

import asyncio
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from prometheus_client import REGISTRY

from schemas import topics
from services.api.deps import Deps
from services.api.outbox import relay_once
from services.common.clock import system_clock
from services.common.controlplane import ControlPlane, make_engine, outbox
from services.common.kafka import ensure_topics, make_producer
from tests.records import matching_records

PARTITIONS = 3  # the session broker's topics (see test_infrastructure)


async def _read(bootstrap: str, topic: str, marker: bytes, count: int) -> list[Any]:
    return await matching_records(
        bootstrap, topic, PARTITIONS, lambda r: marker in (r.key or b""), count
    )


async def test_a_message_the_broker_refuses_is_dead_lettered_and_the_next_is_published(
    broker: str, tmp_path: Path
) -> None:
    await ensure_topics(broker, PARTITIONS)
    marker = secrets.token_hex(4)
    rows = [
        (f"ntf_big_{marker}/0", 0, b"x" * (5 * 1024 * 1024)),  # over the producer's 4 MiB
        (f"ntf_lost_{marker}/999", 999, b"{}"),  # no such partition
        (f"ntf_ok_{marker}/0", 0, b'{"ok":true}'),
    ]
    cp = ControlPlane(make_engine(f"sqlite+aiosqlite:///{tmp_path / 'control.db'}"))
    await cp.migrate(0)
    async with cp.engine.begin() as conn:
        await conn.execute(outbox.insert(), [
            {"topic": topics.SUBSCRIPTIONS, "key": key, "partition": partition, "value": value,
             "created_at_ms": 1} for key, partition, value in rows
        ])  # fmt: skip
    producer = make_producer(broker)
    await producer.start()
    before = REGISTRY.get_sample_value("cc_outbox_dead_letters_total") or 0.0
    try:
        deps = cast(
            Deps,
            SimpleNamespace(
                controlplane=cp, producer=producer, clock=system_clock, outbox_lock=asyncio.Lock()
            ),
        )
        assert await relay_once(deps) == 3
        assert await cp.pending_outbox(10) == []
    finally:
        await producer.stop()
        await cp.close()
    published = await _read(broker, topics.SUBSCRIPTIONS, marker.encode(), 1)
    assert [(r.key.decode(), r.value) for r in published] == [(rows[2][0], rows[2][2])]
    dead = await _read(broker, topics.SUBSCRIPTIONS_DLQ, marker.encode(), 2)
    by_key = {r.key.decode(): (r.value, dict(r.headers)) for r in dead}
    big_value, big_headers = by_key[rows[0][0]]
    assert big_value is None  # the value is what the broker refused
    assert big_headers["error"].startswith(b"MessageSizeTooLargeError")
    assert big_headers["source"] == b"subscriptions/0/"
    lost_value, lost_headers = by_key[rows[1][0]]
    assert lost_value == b"{}" and b"partition" in lost_headers["error"]
    after = REGISTRY.get_sample_value("cc_outbox_dead_letters_total") or 0.0
    assert after - before == 2
