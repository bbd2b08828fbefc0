"""The alert engine on batches: the same decisions as one record at a time, fewer writes, and
outputs produced before any row is written."""

import asyncio
import random
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import topics
from schemas.events import topic_key
from schemas.ticks import Tick
from services.alerts.batch import Cursor, Overlay, write_each
from services.alerts.ledger import WRITTEN_MIN_BYTES, Ledger
from services.alerts.state import SEEN_LIMIT
from services.alerts.tables import Tables, decode_stored
from services.alerts.views import Views, partition_of
from services.common.config import Settings
from services.common.errors import Unavailable
from tests.factories import execution, execution_record
from tests.unit.test_alerts_engine import (
    PARTITIONS,
    PROJECT,
    T0,
    CountingTable,
    World,
    subscription,
)


def fixed_world() -> World:
    world = World(tables=Tables(CountingTable(), CountingTable(), CountingTable()))
    world.engine.clock = lambda: T0.timestamp()  # notifications identical between runs
    return world


def script(seed: int) -> list[tuple[str, int, bytes, bytes]]:
    """A log: a rule and a plain subscription on the stream, then executions of a few workflows
    (some failing, some resent), a tick, then more executions; (topic, partition, key, value)."""
    rng = random.Random(seed)
    out: list[tuple[str, int, bytes, bytes]] = []
    rules = [
        subscription(rule={"rule": "consecutive_failures", "consecutiveFailures": 2}),
        msgspec.structs.replace(
            subscription(rule={"rule": "error_count", "errorCountThreshold": 3}), id="ntf_errors"
        ),
        msgspec.structs.replace(subscription(), id="ntf_plain", alertConfig=None),
    ]
    for record in rules:
        for p in range(PARTITIONS):
            key = f"{record.id}/{p}".encode()
            out.append((topics.SUBSCRIPTIONS, p, key, msgspec.json.encode(record)))
    sent: list[tuple[str, bytes]] = []
    for i in range(60):
        if sent and rng.random() < 0.1:  # a resent execution: a duplicate
            workflow, value = rng.choice(sent)
        else:
            workflow = f"wf{rng.randrange(4)}"
            ended = T0 + timedelta(seconds=10 * i)
            level = "error" if rng.random() < 0.5 else "info"
            event = execution(f"ex-{i}", workflow, ended=ended, level=level, cost=0.01)
            value = execution_record(PROJECT, event, received_at_ms=int(ended.timestamp() * 1000))
            sent.append((workflow, value))
        key = topic_key(PROJECT, workflow)
        out.append((topics.EXECUTIONS, partition_of(key, PARTITIONS), key, value))
        if i == 30:
            for p in range(PARTITIONS):
                at = int((T0 + timedelta(minutes=20)).timestamp() * 1000)
                end = sum(1 for t, q, _, _ in out if t == topics.EXECUTIONS and q == p)
                tick = Tick(v=1, partition=p, atMs=at, executionsEnd=end)
                out.append((topics.TICKS, p, b"tick", msgspec.json.encode(tick)))
    return out


def messages(world: World, log: list[tuple[str, int, bytes, bytes]]) -> list[SimpleNamespace]:
    return [world.message(topic, p, key, value) for topic, p, key, value in log]


def chunks(items: list[Any], sizes: list[int]) -> list[list[Any]]:
    out, start = [], 0
    for size in sizes:
        if start >= len(items):
            break
        out.append(items[start : start + size])
        start += size
    if start < len(items):
        out.append(items[start:])
    return out


# The single world never hands a value on; `kept_from` 0 hands every one on in the batched one.
@pytest.mark.parametrize("kept_from", [WRITTEN_MIN_BYTES, 0])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000), st.lists(st.integers(1, 40), min_size=1, max_size=10))
async def test_batches_decide_exactly_as_records_one_at_a_time(
    kept_from: int, seed: int, sizes: list[int]
) -> None:
    log = script(seed)
    single, batched = fixed_world(), fixed_world()
    single.engine.ledger.written_min_bytes = 1 << 62
    batched.engine.ledger.written_min_bytes = kept_from
    for message in messages(single, log):
        await single.engine.handle(message)
    for batch in chunks(messages(batched, log), sizes):
        await batched.engine.handle_batch(batch)
    assert single.sent, "the script fires nothing: it tests nothing"
    assert [msgspec.json.encode(r) for r in batched.sent] == [
        msgspec.json.encode(r) for r in single.sent
    ]
    for name in ("states", "subscriptions", "costs"):
        assert dict(getattr(batched.tables, name)) == dict(getattr(single.tables, name)), name
    assert batched.dead == single.dead == []


async def test_a_row_written_many_times_in_a_batch_is_written_once() -> None:
    log = script(3)
    single, batched = fixed_world(), fixed_world()
    for message in messages(single, log):
        await single.engine.handle(message)
    await batched.engine.handle_batch(messages(batched, log))
    assert isinstance(batched.tables.states, CountingTable)
    assert isinstance(single.tables.states, CountingTable)
    assert batched.tables.states.writes == len(batched.tables.states)  # once per row
    assert single.tables.states.writes > 3 * batched.tables.states.writes


async def test_outputs_are_acknowledged_before_any_row_is_written() -> None:
    world = fixed_world()
    rows_at_send: list[int] = []

    async def send(records: Any) -> None:
        rows_at_send.append(len(world.tables.states))
        world.sent.extend(records)

    world.engine.send = send
    await world.engine.handle_batch(messages(world, script(5)))
    assert rows_at_send == [0] and world.sent and len(world.tables.states) > 0


async def test_a_broker_outage_at_the_flush_is_waited_out(monkeypatch: Any) -> None:
    world = fixed_world()
    calls: list[int] = []

    async def flaky(records: Any) -> None:
        calls.append(len(records))
        if len(calls) <= 2:
            raise Unavailable("broker down")
        world.sent.extend(records)

    monkeypatch.setattr("services.alerts.records.RETRY_FIRST_S", 0)
    reference = fixed_world()
    await reference.engine.handle_batch(messages(reference, script(5)))
    world.engine.send = flaky
    await world.engine.handle_batch(messages(world, script(5)))
    assert world.dead == []
    assert {msgspec.json.encode(r) for r in world.sent} == {
        msgspec.json.encode(r) for r in reference.sent
    }
    assert dict(world.tables.states) == dict(reference.tables.states)


async def test_an_output_the_broker_refuses_dead_letters_its_record_only() -> None:
    world = fixed_world()
    refused = "ex-7"

    async def send(records: Any) -> None:
        if any(msgspec.to_builtins(r.payload)["data"]["executionId"] == refused for r in records):
            raise MessageSizeTooLargeError("over the broker's limit")
        world.sent.extend(records)

    reference = fixed_world()
    await reference.engine.handle_batch(messages(reference, script(5)))
    assert refused in reference.alerts(), "the refused execution must notify for this test"
    world.engine.send = send
    await world.engine.handle_batch(messages(world, script(5)))
    assert [m.value for m, _ in world.dead] == [
        m.value for m in messages(fixed_world(), script(5)) if refused.encode() in m.value
    ][:1]
    assert sorted(world.alerts()) == sorted(e for e in reference.alerts() if e != refused)


def test_the_overlay_reads_its_writes_and_holds_them_until_taken() -> None:
    table = CountingTable()
    table[b"a"] = b"1"
    table[b"b"] = b"2"
    table.writes = 0
    at = Cursor(partition=2)
    overlay = Overlay(table, at)
    overlay[b"a"] = b"x"
    overlay[b"a"] = b"y"
    overlay[b"c"] = b"3"
    assert overlay.pop(b"b") == b"2"
    assert overlay.get(b"b") is None and b"b" not in overlay
    with pytest.raises(KeyError):
        del overlay[b"b"]
    assert overlay[b"a"] == b"y" and dict(overlay) == {b"a": b"y", b"c": b"3"}
    assert table == {b"a": b"1", b"b": b"2"} and table.writes == 0
    at.partition = 1
    overlay[b"d"] = b"4"
    assert overlay.partitions() == {1, 2}
    rows = overlay.take(2)
    assert rows == [(b"a", b"y"), (b"c", b"3"), (b"b", None)]
    asyncio.run(write_each(table, 2, rows))
    assert table == {b"a": b"y", b"c": b"3"} and table.writes == 2
    assert list(overlay.dirty) == [b"d"]
    asyncio.run(write_each(table, 1, overlay.take(1)))
    assert table == {b"a": b"y", b"c": b"3", b"d": b"4"} and overlay.dirty == {}


def test_a_loaded_value_is_what_the_table_holds_whatever_was_done_to_an_earlier_one() -> None:
    """The ledger hands a large value it just wrote back on without decoding it, once: a caller
    that changes it and does not store it (a duplicate, a tick that changed no watch, a record
    that failed half way) leaves the table's value, the next load and the views' cost as they
    were."""
    views = Views()
    settings = Settings(data_dir=Path("unused"), clickhouse_url="", database_url="")
    ledger = Ledger(settings, Tables({}, {}), views)
    key = topic_key(PROJECT, "wf1")
    first = ledger.load(key, "wf1")
    first.cost["2026-01"] = Decimal("1.5")
    first.state.now_ms = 1000
    first.state.seen_digests = bytes(range(8)) * SEEN_LIMIT  # a busy workflow's large value
    ledger.store(0, key, first)
    written = ledger.tables.states[key]
    again = ledger.load(key, "wf1")
    assert again == decode_stored(written)
    again.cost["2026-01"] += Decimal(7)  # changed, not stored
    again.state.now_ms = 99_000
    assert ledger.load(key, "wf1") == decode_stored(written)
    assert ledger.tables.states[key] is written
    assert views.wf_costs[0][PROJECT][key] == {"2026-01": Decimal("1.5")}
    ledger.store(0, key, again)  # stored: the change is the value from now on
    assert ledger.load(key, "wf1") == again == decode_stored(ledger.tables.states[key])
