"""Bounds at the edge over HTTP: hostile values are a 400 naming the field, never a 500."""

import json

import pytest

from tests.e2e.helpers import call, new_project, post_events, subscribe
from tests.factories import completed
from tests.processes import Stack

DEEP = "[" * 3000 + "]" * 3000


async def test_a_final_output_3000_levels_deep_is_a_400_naming_it(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    event = json.dumps(completed("deep-1"))[:-1] + f', "finalOutput": {DEEP}}}'
    for body in (event, '{"events": [' + event + "]}"):
        status, _, answer = await call(
            session, "POST", f"{stack.base_url}/api/v1/events", key, data=body.encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert status == 400, answer
        assert answer["error"]["code"] == "VALIDATION_ERROR"
        field = "finalOutput" if body == event else "events[0].finalOutput"
        assert [d["field"] for d in answer["error"]["details"]] == [field]


async def test_out_of_range_values_are_a_400_with_the_field_path(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    status, _, answer = await post_events(
        session, stack, key,
        [completed("ok-1"), completed("big-1", totalDurationMs=10**40, cost={"total": 1e9})],
    )  # fmt: skip
    assert status == 400
    fields = {d["field"] for d in answer["error"]["details"]}
    assert fields == {"events[1].totalDurationMs"} or fields == {"events[1].cost.total"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/logs", "/api/v1/runs", "/api/v1/workflows", "/api/v1/keys",
        "/api/v1/notifications",
    ],
)  # fmt: skip
async def test_a_non_ascii_cursor_is_invalid_cursor(session, stack: Stack, path: str) -> None:
    for cursor in ("%C3%A9", "abc.%C3%A9%C3%A9", "%F0%9F%98%80.x"):
        status, _, answer = await call(
            session, "GET", f"{stack.base_url}{path}?cursor={cursor}", stack.api_key
        )
        assert status == 400 and answer["error"]["code"] == "INVALID_CURSOR", answer


@pytest.mark.parametrize(
    "query",
    [
        f"minDurationMs={2**64}", f"maxDurationMs={10**30}", "minCost=1e400", "limit=1e3",
        "startDate=0001-01-01", "endDate=9999-12-31T00:00:00Z", "minDurationMs=-1",
    ],
)  # fmt: skip
async def test_query_numbers_beyond_their_type_are_400(session, stack: Stack, query: str) -> None:
    status, _, answer = await call(
        session, "GET", f"{stack.base_url}/api/v1/logs?{query}", stack.api_key
    )
    assert status == 400 and answer["error"]["code"] == "VALIDATION_ERROR", answer
    assert answer["error"]["details"][0]["field"] == query.partition("=")[0]


async def test_patch_bounds_the_trigger_filter_as_create_does(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    subscription, _ = await subscribe(session, stack, key)
    url = f"{stack.base_url}/api/v1/notifications/{subscription}"
    huge = [f"t{i:05d}-" + "x" * 50 for i in range(12_000)]  # a record near the broker's limit
    for triggers in (huge, [f"t{i}" for i in range(51)]):
        status, _, answer = await call(session, "PATCH", url, key, json={"triggerFilter": triggers})
        assert status == 400, answer
        assert answer["error"]["details"][0]["field"] == "triggerFilter"
    status, _, answer = await call(session, "GET", url, key)
    assert answer["data"]["triggerFilter"] == []


async def test_ingest_charges_a_token_before_parsing(session, stack: Stack) -> None:
    oversized = json.dumps({"events": [completed("big", finalOutput="x" * (300 << 10))]}).encode()
    for body in (b"{not json", b'{"events": []}', b"[" * 100 + b"]" * 100, oversized):
        _, key = await new_project(session, stack, plan="free")  # a full bucket: 2,000 tokens
        status, headers, _ = await call(
            session, "POST", f"{stack.base_url}/api/v1/events", key, data=body,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert status in (400, 413)
        # the refused body took a token (refill cannot lift a full bucket past its burst)
        assert headers["X-RateLimit-Remaining"] == "1999"
