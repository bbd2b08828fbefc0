"""Delivery attempts: record to row, grouping into deliveries, the page query, batch bookkeeping."""

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from aiokafka.structs import TopicPartition

from schemas import topics
from schemas.deliveries import AttemptsStarted, DeliveryAttempt
from services.api import deliveries
from services.logsink import rows
from services.logsink.batch import Batch

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z


def attempt(**fields: Any) -> DeliveryAttempt:
    base: dict[str, Any] = {
        "v": 1, "deliveryId": "dlv_1", "eventId": "evt_1",
        "eventType": "workflow.execution.completed", "subscriptionId": "ntf_1",
        "projectId": "prj_1", "notificationType": "webhook", "round": 0, "attempt": 1,
        "outcome": "delivered", "attemptedAtMs": T0, "durationMs": 12,
        "target": "https://hooks.example.com",
    }  # fmt: skip
    return DeliveryAttempt(**{**base, **fields})


def row_of(record: DeliveryAttempt) -> dict[str, Any]:
    values = rows.attempt_row(msgspec.json.encode(record))
    assert values is not None
    return dict(zip(rows.ATTEMPT_COLUMNS, values, strict=True))


def test_attempt_row_maps_every_column_and_keeps_the_payload_text() -> None:
    sent = b'{"id":"evt_1","data":{"name":"caf\xc3\xa9 \\"q\\""}}'
    record = attempt(
        outcome="retrying", responseCode=503, responseBody="busy", error="HTTP 503",
        nextAttemptAtMs=T0 + 5000, payload=msgspec.Raw(sent),
    )  # fmt: skip
    row = row_of(record)
    assert row == {
        "project_id": "prj_1", "subscription_id": "ntf_1", "delivery_id": "dlv_1",
        "event_id": "evt_1", "event_type": "workflow.execution.completed",
        "notification_type": "webhook", "round": 0, "attempt": 1, "outcome": "retrying",
        "attempted_at": "2026-09-21T14:13:20.000Z", "duration_ms": 12,
        "target": "https://hooks.example.com", "response_code": 503, "response_body": "busy",
        "error": "HTTP 503", "next_attempt_at": "2026-09-21T14:13:25.000Z",
        "payload": sent.decode(),
    }  # fmt: skip
    # A JSON string in the row: ClickHouse stores exactly the text that was sent.
    encoded = rows.encode_rows([(row["payload"],)])
    assert msgspec.json.decode(encoded) == [sent.decode()]


def test_an_attempt_without_payload_stores_an_empty_one() -> None:
    assert row_of(attempt(attempt=2))["payload"] == ""
    assert row_of(attempt(payload=msgspec.Raw(b"null")))["payload"] == ""
    assert row_of(attempt())["next_attempt_at"] is None


def test_the_start_of_an_attempt_is_no_row() -> None:
    started = AttemptsStarted(v=1, attempts=[("dlv_1", 0, 2), ("dlv_2", 0, 1)], startedAtMs=T0)
    assert rows.attempt_row(msgspec.json.encode(started)) is None


@pytest.mark.parametrize(
    "value",
    [
        b"\xff not json",
        b'{"kind": "started", "v": 1, "attempts": [["dlv_1", 0, 0]], "startedAtMs": 1}',
        b'{"kind": "started", "v": 1, "attempts": [["dlv_1", 0]], "startedAtMs": 1}',
        b'{"kind": "attempt", "v": 1}',
        msgspec.json.encode(attempt(attempt=0)),
        msgspec.json.encode(attempt(durationMs=-1)),
        msgspec.json.encode(attempt(responseCode=70_000)),
        msgspec.json.encode(attempt(attemptedAtMs=2**50)),
        msgspec.json.encode(attempt(outcome="delivered")).replace(b"delivered", b"lost"),
    ],
)
def test_poison_records_raise_decode_errors(value: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):  # ValidationError is a DecodeError
        rows.attempt_row(value)


def test_batch_partitions_are_per_topic() -> None:
    batch = Batch()
    batch.note(TopicPartition(topics.EXECUTIONS, 1), 10, 99, 5)
    batch.note(TopicPartition(topics.DELIVERY_LOG, 2), 7, 0, 5)
    assert batch.partitions(topics.EXECUTIONS) == {1}
    assert batch.partitions(topics.DELIVERY_LOG) == {2}
    assert batch.max_ts == {1: 99}  # attempts never move an executions watermark


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).replace(tzinfo=None)  # as chDB returns it


def db_row(
    delivery: str, rnd: int, n: int, outcome: str, at_ms: int, next_ms: int | None = None
) -> deliveries.AttemptRow:
    """A row as `_ATTEMPTS` selects it."""
    code = {"delivered": 200, "retrying": 503, "failed": 404}[outcome]
    return deliveries.AttemptRow(
        delivery, "ntf_1", f"evt_{delivery}", "workflow.execution.completed", rnd, n, outcome,
        at(at_ms), 40, "https://h.example.com", code, "body", None,
        None if next_ms is None else at(next_ms),
    )  # fmt: skip


def test_group_takes_the_status_from_the_latest_attempt_of_the_latest_round() -> None:
    redelivered = T0 + 60_000
    found = deliveries.group(
        [
            db_row("dlv_a", 0, 1, "retrying", T0, T0 + 5000),
            db_row("dlv_a", 0, 2, "delivered", T0 + 5100),
            db_row("dlv_b", 0, 1, "failed", T0 + 1000),
            db_row("dlv_b", redelivered, 1, "retrying", redelivered + 5, redelivered + 5005),
        ]
    )
    a, b = found["dlv_a"], found["dlv_b"]
    assert (a.status, a.nextAttemptAt) == ("delivered", None)
    assert a.createdAt == "2026-09-21T14:13:20.000Z"
    assert a.lastAttemptAt == "2026-09-21T14:13:25.100Z"
    assert [(x.round, x.attempt) for x in a.attempts] == [(0, 1), (0, 2)]
    first = msgspec.to_builtins(a.attempts[0])
    assert first == {
        "round": 0, "attempt": 1, "outcome": "retrying", "attemptedAt": "2026-09-21T14:13:20.000Z",
        "durationMs": 40, "target": "https://h.example.com", "responseCode": 503,
        "responseBody": "body", "error": None, "nextAttemptAt": "2026-09-21T14:13:25.000Z",
    }  # fmt: skip
    assert (b.status, b.createdAt) == ("retrying", "2026-09-21T14:13:21.000Z")
    assert b.nextAttemptAt == "2026-09-21T14:14:25.005Z"
    assert b.eventId == "evt_dlv_b" and b.subscriptionId == "ntf_1"
    shown = msgspec.to_builtins(a)
    assert "nextAttemptAt" not in shown  # omitted unless a retry is scheduled
    assert list(shown) == [
        "id", "subscriptionId", "eventId", "eventType", "status", "createdAt", "lastAttemptAt",
        "attempts",
    ]  # fmt: skip


def test_page_sql_adds_only_the_fragments_asked_for() -> None:
    plain = deliveries.page_sql(status=False, after=False)
    assert "HAVING 1 AND 1" in plain and "{status:String}" not in plain
    both = deliveries.page_sql(status=True, after=True)
    assert "argMax(outcome, (round, attempt)) = {status:String}" in both
    assert "< (fromUnixTimestamp64Milli({at:Int64}, 'UTC'), {after:String})" in both
    assert "{project:String}" in both and "{limit:UInt32}" in both
