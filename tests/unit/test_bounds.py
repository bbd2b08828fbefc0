"""Bounds at the edge (contract section 4): every out-of-bounds value is a 400 naming its field."""

import contextlib
import json
from datetime import UTC, datetime
from functools import partial
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.api import CreateKeyBody
from schemas.bounds import MAX_JSON_DEPTH, dotted, too_deep_at, within_depth
from schemas.events import Event
from schemas.notifications import SubscriptionBody, SubscriptionPatch
from services.api.events import decode_events, split_body
from services.api.logquery import parse_filters, parse_query
from services.api.routing import int_param
from services.common import kafka
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import InvalidCursor, InvalidInput, PayloadTooLarge
from services.common.http import validation_error
from tests import factories

KEY = b"k" * 32


# One execution for every test; each changes the fields it is about.
completed = partial(
    factories.completed, "e1", "w1", ended=datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC),
    duration_ms=1000, cost=None,
)  # fmt: skip


def nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def errors_of(raws: list[bytes], prefix: str = "events") -> list[tuple[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        decode_events(raws, prefix, 1 << 20)
    return [(d.field, d.message) for d in caught.value.details or []]


def fields_of(body: dict[str, Any]) -> list[str]:
    return [field for field, _ in errors_of([json.dumps(body).encode()])]


# Finding 2: ~3,000 levels raised RecursionError (a 500); now a 400 naming the field.
@pytest.mark.parametrize("field", ["finalOutput", "traceSpans", "files", "workflowState", "zz"])
def test_a_value_thousands_of_levels_deep_is_a_400_naming_its_field(field: str) -> None:
    raw = json.dumps(completed()).encode()[:-1] + f', "{field}": {deep_text(3000)}}}'.encode()
    assert errors_of([raw]) == [
        (f"events[0].{field}", f"JSON nests deeper than {MAX_JSON_DEPTH} levels.")
    ]


def test_a_deep_batch_names_the_event_and_its_field_before_any_decode() -> None:
    body = (
        b'{"events": [' + json.dumps(completed()).encode() + b", "
        + json.dumps(completed())[:-1].encode() + b', "finalOutput": '
        + deep_text(3000).encode() + b"}]}"
    )  # fmt: skip
    with pytest.raises(InvalidInput) as caught:
        split_body(body, "application/json")
    assert [d.field for d in caught.value.details or []] == ["events[1].finalOutput"]


def test_a_deep_single_event_body_names_its_field() -> None:
    for depth in (MAX_JSON_DEPTH + 1, 3000):
        body = (
            json.dumps(completed())[:-1].encode()
            + f', "finalOutput": {deep_text(depth)}}}'.encode()
        )
        with pytest.raises(InvalidInput) as caught:
            decode_events(*split_body(body, "application/json"), 1 << 20)
        assert [d.field for d in caught.value.details or []] == ["finalOutput"]


@pytest.mark.parametrize("field", ["finalOutput", "traceSpans", "files"])
def test_nesting_of_64_levels_is_accepted_and_65_refused(field: str) -> None:
    def value(depth: int) -> Any:
        return nested(depth) if field == "finalOutput" else [nested(depth - 1)]

    (event,) = decode_events([json.dumps(completed(**{field: value(64)})).encode()], "", 1 << 20)
    assert event.executionId == "e1"
    assert fields_of(completed(**{field: value(65)})) == [f"events[0].{field}"]
    state = {"blocks": nested(63)}
    decode_events([json.dumps(completed(workflowState=state)).encode()], "", 1 << 20)
    assert fields_of(completed(workflowState={"blocks": nested(64)})) == ["events[0].workflowState"]


# Finding 1's value and the other Struct bounds: out of range is a 400, never a later crash.
@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"totalDurationMs": 10**40}, "totalDurationMs"),
        ({"totalDurationMs": 31_536_000_001}, "totalDurationMs"),
        ({"totalDurationMs": -1}, "totalDurationMs"),
        ({"cost": {"total": 1_000_000.01}}, "cost.total"),
        ({"cost": {"total": 1, "input": 1e300}}, "cost.input"),
        ({"cost": {"total": 1, "tokens": {"prompt": 10**12 + 1}}}, "cost.tokens.prompt"),
        ({"cost": {"total": 1, "models": {f"m{i}": {} for i in range(101)}}}, "cost.models"),
        ({"cost": {"total": 1, "models": {"m" * 257: {}}}}, "cost.models"),
        ({"startedAt": "2200-01-01T00:00:00Z", "endedAt": "2200-01-01T00:00:00Z"}, "startedAt"),
        ({"startedAt": "1969-12-31T23:59:59Z"}, "startedAt"),
        ({"endedAt": "9999-01-01T00:00:00Z"}, "endedAt"),
        ({"endedAt": "2026-01-01T11:00:00Z"}, "endedAt"),
        ({"files": [{}] * 1001}, "files"),
        ({"workflowName": "n" * 257}, "workflowName"),
        ({"workflowName": ""}, "workflowName"),
        ({"workflowDescription": "d" * 4097}, "workflowDescription"),
        ({"executionId": "x" * 257}, "executionId"),
    ],
)
def test_out_of_bounds_values_are_400_with_the_field_path(
    fields: dict[str, Any], where: str
) -> None:
    assert fields_of(completed(**fields)) == [f"events[0].{where}"]
    raw = json.dumps(completed(**fields)).encode()
    with pytest.raises(msgspec.ValidationError) as caught:  # consumers decode the same Struct
        msgspec.json.decode(raw, type=Event)
    assert validation_error(caught.value).details[0].field == where  # type: ignore[index]


def test_values_at_the_bounds_are_accepted() -> None:
    event = completed(
        startedAt="1970-01-01T00:00:00Z", endedAt="2199-12-31T23:59:59.999Z",
        totalDurationMs=31_536_000_000, files=[{}] * 1000, workflowName="n" * 256,
        workflowDescription="d" * 4096,
        cost={"total": 1_000_000, "tokens": {"total": 10**12},
              "models": {f"m{i}": {"total": 0} for i in range(100)}},
    )  # fmt: skip
    (decoded,) = decode_events([json.dumps(event).encode()], "", 1 << 20)
    assert decoded.executionId == "e1"


def test_started_events_are_bounded_in_time_too() -> None:
    started = {
        "type": "workflow.execution.started", "executionId": "e", "workflowId": "w",
        "trigger": "api", "mode": "sync", "startedAt": "2300-01-01T00:00:00Z",
    }  # fmt: skip
    assert fields_of(started) == ["events[0].startedAt"]


# Finding 5: PATCH accepted an unbounded triggerFilter; it has the bounds of create now.
def test_patch_bounds_its_lists_as_create_does() -> None:
    too_many = json.dumps({"triggerFilter": [f"t{i}" for i in range(51)]}).encode()
    for body_type in (SubscriptionPatch, SubscriptionBody):
        with pytest.raises(msgspec.ValidationError, match="length <= 50"):
            msgspec.json.decode(
                too_many[:-1] + b', "notificationType": "webhook"}'
                if body_type is SubscriptionBody
                else too_many,
                type=body_type,
            )
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"triggerFilter": ["' + b"t" * 65 + b'"]}', type=SubscriptionPatch)


def test_key_expiry_is_bounded_in_time() -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(
            b'{"name": "k", "scopes": ["*"], "expiresAt": "9999-01-01T00:00:00Z"}',
            type=CreateKeyBody,
        )
    assert validation_error(caught.value).details[0].field == "expiresAt"  # type: ignore[index]


# Finding 3: numbers beyond their type were a 500 (ClickHouse UInt64 overflow).
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("minDurationMs", str(2**64)), ("maxDurationMs", "9" * 5000), ("minDurationMs", "-1"),
        ("minDurationMs", "1_000"), ("minDurationMs", "٣"), ("minCost", "1e400"),
        ("maxCost", "nan"), ("minCost", "1000000.5"), ("startDate", "0001-01-01"),
        ("endDate", "9999-12-31T00:00:00Z"), ("workflowIds", "a," + "w" * 257),
    ],
)  # fmt: skip
def test_query_numbers_and_times_beyond_their_bounds_are_400(name: str, value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_filters({name: value})
    assert [d.field for d in caught.value.details or []] == [name]


@pytest.mark.parametrize("value", ["0", "1001", "1e3", " 5", "99999999999999999999999"])
def test_limits_outside_their_range_are_400(value: str) -> None:
    with pytest.raises(InvalidInput):
        parse_query({"limit": value}, "prj_1", KEY)
    with pytest.raises(InvalidInput):
        int_param({"limit": value}, "limit", 50, 1, 1000)


# Finding 3: a non-ASCII cursor made compare_digest raise TypeError (a 500).
@pytest.mark.parametrize("token", ["é", "abc.é", "ü.ü", "a" * 5000 + ".b", ".", "a.", "\x00.\x00"])
def test_any_malformed_cursor_is_invalid_cursor(token: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(token, dict, KEY)


@given(st.text(max_size=300))
def test_decode_cursor_raises_only_invalid_cursor(token: str) -> None:
    with contextlib.suppress(InvalidCursor):
        decode_cursor(token, dict, KEY)


def test_a_good_cursor_still_decodes() -> None:
    class Where(msgspec.Struct):
        at: int

    assert decode_cursor(encode_cursor(Where(at=3), KEY), Where, KEY) == Where(at=3)


def test_records_over_the_log_limit_are_refused_before_producing() -> None:
    kafka.check_record_size(b"x" * (kafka.MAX_RECORD_BYTES - 1), b"k", "record")
    with pytest.raises(PayloadTooLarge):
        kafka.check_record_size(b"x" * kafka.MAX_RECORD_BYTES, b"k", "record")


def test_topics_take_every_request_the_producer_may_send() -> None:
    for spec in kafka.topic_specs(3):
        limit = int(spec.topic_configs["max.message.bytes"])
        assert limit > kafka.PRODUCER_MAX_REQUEST_BYTES > kafka.MAX_RECORD_BYTES
        assert limit > kafka.PRODUCER_MAX_BATCH_BYTES


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text('[]{}"\\,:ab'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text('[]{}"a:,'), inner, max_size=3)
    ),
    max_leaves=30,
)


@given(JSON, st.integers(0, 8))
def test_the_depth_scan_agrees_with_the_decoded_value(value: Any, limit: int) -> None:
    raw = json.dumps(value).encode()
    assert within_depth(raw, limit) == (_depth(value) <= limit)
    path = too_deep_at(raw, limit)
    assert (path is None) == (_depth(value) <= limit)
    if path is not None:  # the path leads to a container nested `limit` deep
        node = value
        for part in path:
            node = node[part]
        assert isinstance(node, list | dict) and len(path) == limit
        assert dotted(path) is not None
