"""Poison isolation at the record handlers of the log sink, the dispatcher and the outbox relay:
for any bytes, any JSON and valid envelopes with bad fields, a handler never raises; what it
cannot handle ends on the dead-letter topic, with the error in a header."""

import asyncio
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import msgspec
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord, TopicPartition
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import topics
from schemas.alerts import AckRecord
from schemas.notifications import NotificationRecord
from services.api import outbox
from services.api.deps import Deps
from services.common.clickhouse import ClickHouse, RefusedData
from services.common.config import Settings
from services.common.controlplane import OutboxMessage
from services.common.errors import Unavailable
from services.common.kafkaclients import KafkaClients
from services.dispatcher import service
from services.dispatcher.channels.base import Result
from services.dispatcher.loop import Partition
from services.dispatcher.records import decode
from services.logsink import rows
from services.logsink.batch import TABLES, Batch
from services.logsink.sink import MARKERS, LogSink, SinkConfig
from tests.factories import completed
from tests.unit.test_alerts_engine import subscription
from tests.unit.test_alerts_silences import silence

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- inputs --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.integers(min_value=-(10**40), max_value=10**40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip


def deep(depth: int) -> str:
    """A JSON value nested `depth` levels, as a placeholder that `encode` expands."""
    return f"<deep {depth}>"


def encode(value: Any) -> bytes:
    """JSON text of `value`, with every `deep` placeholder expanded into nested arrays."""
    text = json.dumps(value)
    return re.sub(
        r'"<deep (\d+)>"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text
    ).encode()


def _at(base: Any, path: list[str]) -> dict[str, Any]:
    for step in path:
        base = base[step]
        if isinstance(base, list):
            base = base[0]
    return cast(dict[str, Any], base)


def mutated(base: dict[str, Any], path: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` with one field (of the object at `path`) replaced or removed."""

    def change(key: str, value: Any, remove: bool) -> dict[str, Any]:
        copy = json.loads(json.dumps(base))
        target = _at(copy, path)
        if remove:
            target.pop(key, None)
        else:
            target[key] = value
        return cast(dict[str, Any], copy)

    keys = st.sampled_from([*sorted(_at(base, path)), "unknown", "kind", "type"])
    values = json_values | st.integers(min_value=2000, max_value=10_000).map(deep)
    return st.builds(change, keys, values, st.booleans())


def values_for(base: dict[str, Any], *paths: list[str]) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, arbitrary JSON, deep JSON and `base` with a bad field."""
    envelopes = st.one_of(*(mutated(base, path) for path in paths)).map(encode)
    return st.one_of(
        st.binary(max_size=300),
        json_values.map(encode),
        st.integers(min_value=1, max_value=20_000).map(lambda d: encode(deep(d))),
        envelopes,
    )


def consumer_record(topic: str, value: bytes, offset: int = 7) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic, partition=0, offset=offset, timestamp=1_700_000_000_000, timestamp_type=0,
        key=b"k", value=value, checksum=None, serialized_key_size=1,
        serialized_value_size=len(value), headers=[],
    )  # fmt: skip


class Producer:
    """Records what would be produced."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, list[tuple[str, bytes]]]] = []

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: bytes | None = None, **kw: Any
    ) -> None:
        self.sent.append((topic, value, list(kw.get("headers") or [])))


# ---- the log sink --------------------------------------------------------------------------

EVENT = completed(
    "e1", "w1", ended=datetime(2026, 1, 1, 12, 0, 2, 500_000, tzinfo=UTC), duration_ms=2500,
    cost={"total": 1}, totalDurationMs=5,
)  # fmt: skip
EXECUTION = {
    "kind": "execution", "v": 2, "projectId": "prj_a", "receivedAtMs": 0, "retentionDays": 7,
    "events": [EVENT, {**EVENT, "type": "workflow.execution.started", "mode": "sync"}],
}  # fmt: skip
ATTEMPT = {
    "kind": "attempt", "v": 1, "deliveryId": "dlv_1", "eventId": "evt_1",
    "eventType": "workflow.execution.completed", "subscriptionId": "ntf_1", "projectId": "prj_a",
    "notificationType": "webhook", "round": 0, "attempt": 1, "outcome": "delivered",
    "attemptedAtMs": 1, "durationMs": 2, "target": "https://example.com",
}  # fmt: skip


def a_sink() -> LogSink:
    sink = LogSink(SinkConfig(), cast(Any, None), KafkaClients("unused:9092"))
    sink.producer = cast(Any, Producer())
    return sink


async def _sink_add(topic: str, value: bytes) -> tuple[LogSink, Producer]:
    sink = a_sink()
    await sink._add(TopicPartition(topic, 0), consumer_record(topic, value))
    return sink, cast(Producer, sink.producer)


def test_the_valid_envelopes_are_stored_not_dead_lettered() -> None:
    sink, producer = asyncio.run(_sink_add(topics.EXECUTIONS, msgspec.json.encode(EXECUTION)))
    assert producer.sent == []
    assert (len(sink.batch.executions), len(sink.batch.started)) == (1, 1)
    sink, producer = asyncio.run(_sink_add(topics.DELIVERY_LOG, msgspec.json.encode(ATTEMPT)))
    assert producer.sent == [] and len(sink.batch.attempts) == 1


def test_the_alert_engine_markers_are_neither_stored_nor_dead_lettered() -> None:
    for record in (subscription(), silence(), msgspec.convert(ACK, AckRecord)):
        sink, producer = asyncio.run(_sink_add(topics.EXECUTIONS, msgspec.json.encode(record)))
        assert producer.sent == [] and not sink.batch.sources
        assert sink.batch.records == 1 and sink.batch.next_offsets  # the offset moves on


@FUZZ
@given(values_for(EXECUTION, [], ["events"]))
def test_the_sink_stores_or_dead_letters_any_executions_record(value: bytes) -> None:
    sink, producer = asyncio.run(_sink_add(topics.EXECUTIONS, value))
    assert sink.batch.records == 1 and sink.batch.next_offsets  # the offset moves on either way
    if value.startswith(MARKERS):  # the alert engine's record: neither stored nor dead
        assert not producer.sent and not sink.batch.sources
    elif producer.sent:
        ((topic, sent, headers),) = producer.sent
        assert (topic, sent) == (topics.EXECUTIONS_DLQ, value)
        assert dict(headers)["error"] and dict(headers)["source"] == b"executions/0/7"
        assert not sink.batch.sources
    else:
        assert sink.batch.sources
        for table in TABLES:
            columns = {"executions": rows.EXECUTION_COLUMNS, "execution_payloads": rows.PAYLOAD_COLUMNS,
                       "executions_started": rows.STARTED_COLUMNS, "delivery_attempts": rows.ATTEMPT_COLUMNS,
                       "alerts": rows.ALERT_COLUMNS, "alert_acks": rows.ACK_COLUMNS}  # fmt: skip
            assert all(len(row) == len(columns[table]) for row in sink.batch.rows(table))
            assert len(sink.batch.origins[table]) == len(sink.batch.rows(table))


@FUZZ
@given(values_for(ATTEMPT, []))
def test_the_sink_stores_or_dead_letters_any_delivery_log_record(value: bytes) -> None:
    sink, producer = asyncio.run(_sink_add(topics.DELIVERY_LOG, value))
    assert sink.batch.records == 1
    if producer.sent:
        ((topic, sent, headers),) = producer.sent
        assert (topic, sent) == (topics.DELIVERY_LOG_DLQ, value) and dict(headers)["error"]


ALERT_EVENT = {
    "v": 1, "alertId": "alr_1", "projectId": "prj_a", "subscriptionId": "ntf_1",
    "workflowId": "w1", "rule": "consecutive_failures", "kind": "fired", "silenced": False,
    "notified": True, "reason": "3 failures", "observed": 3, "threshold": 3, "atMs": 1,
    "firedAtMs": 1, "notificationCount": 1, "version": 1,
}  # fmt: skip
ACK = {"kind": "ack", "v": 1, "alertId": "alr_1", "projectId": "prj_a", "acknowledgedAtMs": 5}


def test_alert_events_and_acknowledgements_are_stored() -> None:
    sink, producer = asyncio.run(_sink_add(topics.ALERT_EVENTS, msgspec.json.encode(ALERT_EVENT)))
    assert producer.sent == [] and len(sink.batch.alerts) == 1
    assert len(sink.batch.alerts[0]) == len(rows.ALERT_COLUMNS)
    sink, producer = asyncio.run(_sink_add(topics.ALERT_ACKS, msgspec.json.encode(ACK)))
    assert producer.sent == [] and len(sink.batch.acks) == 1


@FUZZ
@given(values_for(ALERT_EVENT, []))
def test_the_sink_stores_or_dead_letters_any_alert_event(value: bytes) -> None:
    sink, producer = asyncio.run(_sink_add(topics.ALERT_EVENTS, value))
    assert sink.batch.records == 1 and sink.batch.next_offsets
    if producer.sent:
        ((topic, sent, headers),) = producer.sent
        assert (topic, sent) == (topics.ALERT_EVENTS_DLQ, value) and dict(headers)["error"]
        assert dict(headers)["source"] == b"alert-events/0/7"
    else:
        assert [len(r) for r in sink.batch.alerts] == [len(rows.ALERT_COLUMNS)]


@FUZZ
@given(values_for(ACK, []))
def test_the_sink_stores_or_dead_letters_any_acknowledgement(value: bytes) -> None:
    sink, producer = asyncio.run(_sink_add(topics.ALERT_ACKS, value))
    assert sink.batch.records == 1
    if producer.sent:
        ((topic, sent, _),) = producer.sent
        assert (topic, sent) == (topics.ALERT_EVENTS_DLQ, value)
    else:
        assert [len(r) for r in sink.batch.acks] == [len(rows.ACK_COLUMNS)]


class RefusingClickHouse:
    """Refuses an insert holding a negative number (as ClickHouse does for UInt64 columns) and
    drops an insert whose deduplication token it has seen."""

    def __init__(self) -> None:
        self.stored: dict[str, list[bytes]] = {}
        self.tokens: set[str] = set()

    async def insert_json(self, table: str, data: bytes, columns: Any, settings: Any) -> None:
        lines = data.split(b"\n")
        if any(re.search(rb"[,\[]-\d", line) for line in lines):
            raise RefusedData("Code: 72. Unsigned type must not contain '-' symbol", 72)
        token = settings["insert_deduplication_token"]
        if token not in self.tokens:
            self.tokens.add(token)
            self.stored.setdefault(table, []).extend(lines)


class FlakyProducer(Producer):
    """Fails its first send, as a broker that is briefly away."""

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: bytes | None = None, **kw: Any
    ) -> None:
        if not hasattr(self, "failed"):
            self.failed = True
            raise KafkaConnectionError("away")
        await super().send_and_wait(topic, value, key, **kw)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_a_refused_insert_is_split_until_the_refused_records_are_found(bad: list[bool]) -> None:
    async def run() -> tuple[LogSink, Batch, RefusingClickHouse]:
        sink, ch = a_sink(), RefusingClickHouse()
        sink.ch, sink.producer = cast(Any, ch), cast(Any, FlakyProducer())
        tp = TopicPartition(topics.EXECUTIONS, 0)
        for offset, is_bad in enumerate(bad):
            event = {**EVENT, "executionId": f"e{offset}", "totalDurationMs": -1 if is_bad else 5}
            value = msgspec.json.encode({**EXECUTION, "events": [event]})
            await sink._add(tp, consumer_record(topics.EXECUTIONS, value, offset))
        batch = sink.batch
        try:
            await sink._write(batch)
        except KafkaConnectionError:  # the first dead letter could not be sent: a retry
            await sink._write(batch)
        return sink, batch, ch

    sink, batch, ch = asyncio.run(run())
    producer = cast(Producer, sink.producer)
    dead = [msgspec.json.decode(v or b"")["events"][0]["executionId"] for _, v, _ in producer.sent]
    assert dead == [f"e{i}" for i, is_bad in enumerate(bad) if is_bad]  # each once
    assert all(topic == topics.EXECUTIONS_DLQ for topic, _, _ in producer.sent)
    assert all(b"executions: RefusedData" in dict(h)["error"] for _, _, h in producer.sent)
    good = [f"e{i}" for i, is_bad in enumerate(bad) if not is_bad]
    assert [row[5] for row in batch.executions] == good
    stored = [msgspec.json.decode(line)[5] for line in ch.stored.get("executions", [])]
    assert sorted(stored) == sorted(good)  # all stored, none twice
    assert batch.next_offsets[TopicPartition(topics.EXECUTIONS, 0)] == len(bad)


# ---- the dispatcher ------------------------------------------------------------------------

NOTIFICATION = {
    "kind": "notification", "v": 1, "deliveryId": "dlv_1", "eventId": "evt_1",
    "subscriptionId": "ntf_1", "projectId": "prj_a", "notificationType": "webhook",
    "destination": {"url": "https://hooks.example.com/x"},
    "payload": {"id": "evt_1", "type": "workflow.execution.completed", "timestamp": 1,
                "data": {"workflowId": "wf_1"}, "links": {}},
    "createdAtMs": 1,
}  # fmt: skip


async def _dispatch(
    topic: str, value: bytes, delivered: bool, producer: Producer | None = None
) -> tuple[Any, Producer, Any]:
    settings_ = Settings(data_dir=Path("unused"), clickhouse_url="", database_url="",
                         secret_key="unit-test-secret-key-0123456789abcdef")  # fmt: skip

    async def send(record: Any, secrets: Any, context: Any) -> Result:
        return Result(delivered=delivered, retryable=not delivered, error=None)

    channels = dict.fromkeys(("webhook", "email", "slack"), send)
    dispatcher = service.Dispatcher(settings_, service.DispatcherConfig(), channels=channels)
    producer = producer or Producer()
    unused = cast(Any, None)
    clients = service.Clients(unused, cast(Any, producer), unused, unused,
                              cast(Any, SimpleNamespace()))  # fmt: skip
    loop = dispatcher.loop(clients)
    tp = TopicPartition(topic, 0)
    part = loop.parts[tp] = Partition()
    message = consumer_record(topic, value, offset=0)
    message.timestamp = 1  # a tier record enqueued long ago: due now
    part.take(message)
    await loop.pump(part)
    await loop.drain(5)
    await asyncio.sleep(0)  # the starts written in the last turn
    return dispatcher, producer, part


@FUZZ
@given(
    st.sampled_from([topics.NOTIFICATIONS, topics.retry_tier(2)]),
    values_for(NOTIFICATION, [], ["destination"], ["payload"]),
    st.booleans(),
)
def test_the_dispatcher_delivers_or_dead_letters_any_record(
    topic: str, value: bytes, delivered: bool
) -> None:
    started = time.monotonic()
    _, producer, part = asyncio.run(_dispatch(topic, value, delivered))
    assert time.monotonic() - started < 10
    if part.buffer:  # only a well-formed tier record may wait: for its due time
        assert isinstance(part.buffer[0][1], NotificationRecord)
        return
    assert part.tracker.take_commit() == 1  # finished: the partition goes on
    dlq = topics.RETRY_TIERS_DLQ if topic != topics.NOTIFICATIONS else topics.DELIVERIES_DLQ
    dead = [(v, h) for t, v, h in producer.sent if t == dlq]
    if isinstance(decode(value), Exception):
        assert [v for v, _ in dead] == [value]
    for _, headers in dead:
        assert dict(headers)["error"] and dict(headers)["source"].startswith(topic.encode())
    # a dead letter, an attempt's end on the log or the next attempt on a tier
    assert any(t != topics.DELIVERY_LOG or b'"outcome"' in (v or b"") for t, v, _ in producer.sent)


class RefusingBroker(Producer):
    """Refuses an attempt's end on the log and any dead letter with a value: too large."""

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: bytes | None = None, **kw: Any
    ) -> None:
        refused = topic == topics.DELIVERY_LOG and b'"outcome"' in (value or b"")
        if refused or (topic == topics.DELIVERIES_DLQ and value):
            raise MessageSizeTooLargeError("over the broker's limit")
        await super().send_and_wait(topic, value, key, **kw)


def test_an_attempt_the_broker_refuses_to_log_is_dead_lettered_not_retried_forever() -> None:
    value = msgspec.json.encode(NOTIFICATION)
    run = _dispatch(topics.NOTIFICATIONS, value, True, RefusingBroker())
    _, producer, part = asyncio.run(asyncio.wait_for(run, 10))
    assert part.tracker.take_commit() == 1
    ((value_sent, headers),) = [(v, h) for t, v, h in producer.sent if t == topics.DELIVERIES_DLQ]
    assert value_sent == b"" and dict(headers)["error"].startswith(b"MessageSizeTooLargeError")


# ---- the outbox relay ----------------------------------------------------------------------

LIMIT = 100  # the fake broker's message limit, in bytes


class Broker:
    """A producer with aiokafka's checks: known partitions, a size limit (some refused at send,
    some by the broker), and an outage when asked."""

    def __init__(self, down: bool) -> None:
        self.down = down
        self.sent: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, value: bytes | None, key: bytes, partition: int | None
    ) -> "asyncio.Future[SimpleNamespace]":
        if self.down:
            raise KafkaConnectionError("broker down")
        assert partition is None or partition in (0, 1, 2), "Unrecognized partition"
        if value is not None and len(value) > 2 * LIMIT:
            raise MessageSizeTooLargeError("over max_request_size")
        future: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        if value is not None and len(value) > LIMIT:
            future.set_exception(MessageSizeTooLargeError("refused by the broker"))
        else:
            self.sent.append((topic, value, key, []))
            future.set_result(SimpleNamespace(offset=len(self.sent)))
        return future

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        if value is not None and len(value) > LIMIT:
            raise MessageSizeTooLargeError("refused by the broker")
        self.sent.append((topic, value, key, headers))


class Outbox:
    def __init__(self, messages: list[OutboxMessage]) -> None:
        self.messages = messages
        self.published: list[int] = []

    async def pending_outbox(self, limit: int) -> list[OutboxMessage]:
        return self.messages[:limit]

    async def mark_published(self, ids: list[int], now_ms: int) -> None:
        self.published += ids


outbox_messages = st.lists(
    st.builds(
        OutboxMessage,
        topic=st.just(topics.SUBSCRIPTIONS),
        key=st.text(max_size=12),  # lone surrogates included: not encodable
        partition=st.none() | st.integers(min_value=-3, max_value=5),
        value=st.none() | st.binary(max_size=3 * LIMIT),
    ),
    max_size=12,
).map(lambda ms: [msgspec.structs.replace(m, id=i + 1) for i, m in enumerate(ms)])


@FUZZ
@given(outbox_messages)
def test_the_relay_publishes_or_dead_letters_every_message(messages: list[OutboxMessage]) -> None:
    broker, store = Broker(down=False), Outbox(messages)
    deps = cast(
        Deps,
        SimpleNamespace(
            controlplane=store, producer=broker, clock=time.time, outbox_lock=asyncio.Lock()
        ),
    )
    assert asyncio.run(outbox.relay_once(deps)) == len(messages)
    assert store.published == [m.id for m in messages]
    dead = [dict(h)["outbox-id"] for t, _, _, h in broker.sent if t == topics.SUBSCRIPTIONS_DLQ]
    published = [t for t, *_ in broker.sent if t == topics.SUBSCRIPTIONS]
    assert len(dead) + len(published) == len(messages)
    assert len(set(dead)) == len(dead)


class Log:
    """A producer that takes everything, each record at the next offset of one log."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, bytes, bytes | None, int]] = []

    async def send(
        self, topic: str, value: bytes | None, key: bytes, partition: int | None
    ) -> "asyncio.Future[SimpleNamespace]":
        offset = 100 + len(self.sent)
        self.sent.append((topic, partition, key, value, offset))
        future: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=offset))
        return future


def test_subscription_silence_and_ack_records_are_published_after_their_markers() -> None:
    sub_value, sil_value = msgspec.json.encode(subscription()), msgspec.json.encode(silence())
    ack_value = msgspec.json.encode(msgspec.convert(ACK, AckRecord))
    store = Outbox([
        OutboxMessage(topics.SUBSCRIPTIONS, "ntf_cost/0", 0, sub_value, id=1),
        OutboxMessage(topics.SILENCES, "sil_maint/1", 1, sil_value, id=2),
        OutboxMessage(topics.SILENCES, "sil_gone/2", 2, None, id=3),  # a tombstone: no marker
        OutboxMessage(topics.ALERT_ACKS, "alr_1/2", 2, ack_value, id=4),
    ])  # fmt: skip
    log = Log()
    deps = cast(
        Deps,
        SimpleNamespace(
            controlplane=store, producer=log, clock=time.time, outbox_lock=asyncio.Lock()
        ),
    )
    assert asyncio.run(outbox.relay_once(deps)) == 4
    markers = [(p, k, v, o) for t, p, k, v, o in log.sent if t == topics.EXECUTIONS]
    assert [(p, k, v) for p, k, v, _ in markers] == [
        (0, b"ntf_cost/0", sub_value), (1, b"sil_maint/1", sil_value), (2, b"alr_1/2", ack_value)
    ]  # fmt: skip
    assert all(v.startswith(MARKERS) for _, _, v, _ in markers)  # the log sink skips them
    published = {(t, k): v for t, _, k, v, _ in log.sent if t != topics.EXECUTIONS}
    assert set(published) == {(topics.SUBSCRIPTIONS, b"ntf_cost/0"),
                              (topics.SILENCES, b"sil_maint/1"), (topics.SILENCES, b"sil_gone/2"),
                              (topics.ALERT_ACKS, b"alr_1/2")}  # fmt: skip
    acked = msgspec.json.decode(published[topics.ALERT_ACKS, b"alr_1/2"] or b"", type=AckRecord)
    assert acked == msgspec.structs.replace(msgspec.convert(ACK, AckRecord), markerOffset=102)
    for (_, key), value in published.items():
        offset = None if value is None else msgspec.json.decode(value)["markerOffset"]
        assert offset == next((o for _, k, _, o in markers if k == key), None)


def test_a_broker_outage_publishes_nothing_and_marks_nothing() -> None:
    store = Outbox([OutboxMessage(topics.SUBSCRIPTIONS, "ntf_1/0", 0, b"{}", id=1)])
    deps = cast(
        Deps,
        SimpleNamespace(
            controlplane=store, producer=Broker(down=True), clock=time.time,
            outbox_lock=asyncio.Lock(),
        ),
    )  # fmt: skip
    try:
        asyncio.run(outbox.relay_once(deps))
    except KafkaConnectionError:
        pass
    else:
        raise AssertionError("an outage must be retried, not dead-lettered")
    assert store.published == []


# ---- the ClickHouse adapter ----------------------------------------------------------------


class FailingClient:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def raw_insert(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


def _insert_error(error: Exception) -> Exception:
    ch = ClickHouse("http://clickhouse.invalid:8123")
    ch._client = FailingClient(error)
    try:
        asyncio.run(ch.insert_json("executions", b"[]", ["a"]))
    except Exception as exc:
        return exc
    raise AssertionError("no error")


def test_the_adapter_tells_refused_data_from_an_unreachable_server() -> None:
    refused = _insert_error(DatabaseError("Code: 72. Unsigned type must not contain '-'", code=72))
    assert isinstance(refused, RefusedData) and refused.code == 72
    assert isinstance(_insert_error(OperationalError("Network Error")), Unavailable)
    assert isinstance(_insert_error(ConnectionRefusedError()), Unavailable)
    # any other server error (too many parts, memory, a timeout) is retried, not dead-lettered
    other = _insert_error(DatabaseError("Code: 252. Too many parts", code=252))
    assert not isinstance(other, RefusedData | Unavailable)


def test_numbers_clickhouse_would_store_wrapped_are_dead_lettered() -> None:
    for event, record in (
        ({**EVENT, "totalDurationMs": 2**64}, {}),
        ({**EVENT, "totalDurationMs": 10**40}, {}),
        (EVENT, {"retentionDays": 70_000}),
    ):
        value = msgspec.json.encode({**EXECUTION, **record, "events": [event]})
        sink, producer = asyncio.run(_sink_add(topics.EXECUTIONS, value))
        ((topic, _, headers),) = producer.sent
        assert topic == topics.EXECUTIONS_DLQ
        assert dict(headers)["error"].startswith(b"ValueError") and not sink.batch.executions
    value = msgspec.json.encode({**ATTEMPT, "round": 2**63})
    _, producer = asyncio.run(_sink_add(topics.DELIVERY_LOG, value))
    assert [t for t, _, _ in producer.sent] == [topics.DELIVERY_LOG_DLQ]
