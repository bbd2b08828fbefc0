"""Ingest and the logs API over HTTP against the real stack: filters, cursors, idempotency."""

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from tests.e2e.helpers import call, new_key, new_project, post_events, read_all
from tests.factories import completed, iso, started
from tests.processes import Stack
from tests.records import consume_all

DAY = "2026-11-02"


def at(clock: str, duration_ms: int = 1000) -> dict[str, Any]:
    """startedAt/endedAt for a time on DAY (or 'D+1 hh:mm:ss.mmm' style offsets)."""
    from datetime import datetime, timedelta

    day_offset = 0
    if clock.startswith("D"):
        head, clock = clock.split(" ", 1)
        day_offset = int(head[1:] or 0)
    start = datetime.fromisoformat(f"{DAY}T{clock}+00:00") + timedelta(days=day_offset)
    end = start + timedelta(milliseconds=duration_ms)
    return {"startedAt": iso(start), "endedAt": iso(end)}


# fmt: off
DATASET = [
    completed("e1", "wf-a", folderId="f1", trigger="api", level="info", **at("10:00:00.000", 100),
              cost={"total": 0.01, "models": {"gpt-4o": {"total": 0.01}}}),
    completed("e2", "wf-a", folderId="f1", trigger="webhook", level="error", **at("11:00:00.000", 2000),
              cost={"total": 0.5, "models": {"claude": {"total": 0.5}}}),
    completed("e3", "wf-b", folderId="f2", trigger="schedule", level="info", **at("D+1 00:00:00.000", 5000),
              cost={"total": 1.0, "models": {"gpt-4o": {"total": 1.0}}}),
    completed("e4", "wf-b", folderId="f2", trigger="manual", level="error", **at("D+1 23:59:59.999", 30000),
              cost={"total": 0.0}),
    completed("e5", "wf-c", trigger="chat", level="info", **at("D+2 12:00:00.000", 1000),
              cost={"total": 0.1, "models": {"gpt-4o": {"total": 0.05}, "claude": {"total": 0.05}}}),
    completed("e6", "wf-c", trigger="api", level="error", **at("D-1 08:00:00.000", 60000)),
]
# fmt: on


@pytest.fixture
async def dataset(session: aiohttp.ClientSession, stack: Stack) -> tuple[str, str]:
    project_id, key = await new_project(session, stack)
    status, _, body = await post_events(session, stack, key, DATASET)
    assert status == 202 and body == {"data": {"accepted": len(DATASET)}}
    await read_all(session, stack, key, len(DATASET))
    return project_id, key


async def ids(session: aiohttp.ClientSession, stack: Stack, key: str, query: str) -> list[str]:
    status, _, body = await call(
        session, "GET", f"{stack.base_url}/api/v1/logs?limit=1000&{query}", key
    )
    assert status == 200, body
    return sorted(item["executionId"] for item in body["data"])


FILTERS = [
    ("workflowIds=wf-a", ["e1", "e2"]),
    ("workflowIds=wf-a,wf-c", ["e1", "e2", "e5", "e6"]),
    ("folderIds=f2", ["e3", "e4"]),
    ("folderIds=f1,f2", ["e1", "e2", "e3", "e4"]),
    ("triggers=api", ["e1", "e6"]),
    ("triggers=api,chat,manual", ["e1", "e4", "e5", "e6"]),
    ("level=error", ["e2", "e4", "e6"]),
    ("level=info", ["e1", "e3", "e5"]),
    ("executionId=e3", ["e3"]),
    ("executionId=nope", []),
    ("minDurationMs=2000", ["e2", "e3", "e4", "e6"]),
    ("maxDurationMs=2000", ["e1", "e2", "e5"]),
    ("minDurationMs=2000&maxDurationMs=5000", ["e2", "e3"]),
    ("minCost=0.5", ["e2", "e3"]),
    ("maxCost=0.1", ["e1", "e4", "e5", "e6"]),
    ("minCost=0.1&maxCost=0.5", ["e2", "e5"]),
    ("model=gpt-4o", ["e1", "e3", "e5"]),
    ("model=claude", ["e2", "e5"]),
    # inclusive bounds on startedAt: e3 starts exactly at D+1 00:00, e4 at D+1 23:59:59.999
    ("startDate=2026-11-03T00:00:00.000Z&endDate=2026-11-03T23:59:59.999Z", ["e3", "e4"]),
    ("startDate=2026-11-03&endDate=2026-11-03", ["e3", "e4"]),
    ("startDate=2026-11-03T00:00:00.001Z", ["e4", "e5"]),
    ("endDate=2026-11-03T00:00:00.000Z", ["e1", "e2", "e3", "e6"]),
    ("level=error&workflowIds=wf-a,wf-b&minDurationMs=3000", ["e4"]),
    ("model=gpt-4o&level=info&triggers=schedule,chat&maxCost=0.5", ["e5"]),
]


@pytest.mark.parametrize(("query", "expected"), FILTERS)
async def test_filters_alone_and_combined(
    session, stack: Stack, dataset, query: str, expected
) -> None:
    _, key = dataset
    assert await ids(session, stack, key, query) == expected


def server_timing(headers: dict[str, Any]) -> dict[str, float]:
    """The durations of a `Server-Timing` header by metric name."""
    metrics = {}
    for metric in headers["Server-Timing"].split(", "):
        name, duration = metric.split(";")[:2]
        metrics[name] = float(duration.removeprefix("dur="))
    return metrics


async def test_basic_items_have_exactly_the_contract_fields(session, stack, dataset) -> None:
    _, key = dataset
    _, headers, body = await call(
        session, "GET", f"{stack.base_url}/api/v1/logs?executionId=e2", key
    )
    # The page's database time, as the API waited for it, within the request's own.
    timing = server_timing(headers)
    assert 0 < timing["db"] <= timing["total"]
    _, headers, _ = await call(session, "GET", f"{stack.base_url}/api/v1/whoami", key)
    assert "Server-Timing" not in headers  # no query ran
    (item,) = body["data"]
    assert set(item) == {
        "id",
        "workflowId",
        "executionId",
        "level",
        "trigger",
        "startedAt",
        "endedAt",
        "totalDurationMs",
        "cost",
        "files",
    }
    assert item["cost"] == {"total": 0.5} and item["totalDurationMs"] == 2000
    assert item["startedAt"] == "2026-11-02T11:00:00.000Z"
    assert set(body) == {"data", "nextCursor", "hasMore", "limits"}
    limits = body["limits"]
    assert set(limits["workflowExecutionRateLimit"]) == {"sync", "async"}
    assert limits["usage"]["plan"] == "enterprise"
    assert limits["usage"]["currentPeriodCost"] >= 0


async def test_full_details_and_include_flags(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    event = completed(
        "full-1",
        "wf-x",
        workflowName="Nightly",
        workflowDescription="ETL",
        traceSpans=[{"name": "step", "durationMs": 5}],
        finalOutput={"ok": True},
        workflowState={"blocks": {"a": 1}, "edges": []},
        cost={"total": 0.2, "tokens": {"prompt": 5, "completion": 6, "total": 11}},
    )
    assert (await post_events(session, stack, key, [event]))[0] == 202
    await read_all(session, stack, key, 1)
    base = f"{stack.base_url}/api/v1/logs"
    _, _, body = await call(session, "GET", f"{base}?details=full", key)
    item = body["data"][0]
    assert item["workflow"] == {"id": "wf-x", "name": "Nightly", "description": "ETL"}
    assert item["cost"]["tokens"] == {"prompt": 5, "completion": 6, "total": 11}
    assert "executionData" not in item
    _, _, body = await call(session, "GET", f"{base}?details=full&includeTraceSpans=true", key)
    assert body["data"][0]["executionData"] == {"traceSpans": [{"name": "step", "durationMs": 5}]}
    _, _, body = await call(
        session, "GET", f"{base}?includeTraceSpans=true&includeFinalOutput=true&details=full", key
    )
    assert body["data"][0]["executionData"]["finalOutput"] == {"ok": True}
    log_id = item["id"]
    status, _, one = await call(session, "GET", f"{base}/{log_id}", key)
    assert status == 200
    assert one["data"]["executionData"]["traceSpans"] == [{"name": "step", "durationMs": 5}]
    assert "usage" in one["data"]["limits"]
    status, _, execution = await call(session, "GET", f"{base}/executions/full-1", key)
    assert status == 200
    assert execution["data"]["workflowState"] == {"blocks": {"a": 1}, "edges": []}  # as sent
    assert execution["data"]["executionMetadata"]["trigger"] == "api"


async def test_parameter_errors(session, stack: Stack, dataset) -> None:
    project_id, key = dataset
    base = f"{stack.base_url}/api/v1/logs"
    for query, field in [
        ("colour=red", "colour"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("level=warn", "level"),
        ("minCost=cheap", "minCost"),
        ("startDate=last-week", "startDate"),
    ]:
        status, _, body = await call(session, "GET", f"{base}?{query}", key)
        assert status == 400, query
        assert body["error"]["code"] == "VALIDATION_ERROR"
        assert body["error"]["details"][0]["field"] == field
    status, _, body = await call(session, "GET", f"{base}?workspaceId=prj_someoneelse", key)
    assert status == 403 and body["error"]["code"] == "FORBIDDEN"
    assert (await call(session, "GET", f"{base}?workspaceId={project_id}", key))[0] == 200


async def test_cursor_misuse_is_invalid_cursor(session, stack: Stack, dataset) -> None:
    _, key = dataset
    base = f"{stack.base_url}/api/v1/logs"
    _, _, body = await call(session, "GET", f"{base}?limit=2&level=error", key)
    cursor = body["nextCursor"]
    assert body["hasMore"] and cursor
    ok = await call(session, "GET", f"{base}?limit=2&level=error&cursor={cursor}", key)
    assert ok[0] == 200 and len(ok[2]["data"]) == 1
    _, other_key = await new_project(session, stack)
    for url, k in [
        (f"{base}?limit=2&level=info&cursor={cursor}", key),
        (f"{base}?limit=2&level=error&order=asc&cursor={cursor}", key),
        (f"{base}?limit=2&level=error&cursor={cursor[:-3]}abc", key),
        (f"{base}?limit=2&level=error&cursor={cursor}", other_key),
    ]:
        status, _, err = await call(session, "GET", url, k)
        assert status == 400 and err["error"]["code"] == "INVALID_CURSOR", url


async def test_foreign_log_and_execution_ids_are_404(session, stack: Stack, dataset) -> None:
    _, key = dataset
    _, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/logs?executionId=e1", key)
    log_id = body["data"][0]["id"]
    _, stranger = await new_project(session, stack)
    for path in (f"logs/{log_id}", "logs/executions/e1", "workflows/wf-a", "runs/e1"):
        status, _, err = await call(session, "GET", f"{stack.base_url}/api/v1/{path}", stranger)
        assert status == 404 and err["error"]["code"] == "NOT_FOUND", path
    assert (await call(session, "GET", f"{stack.base_url}/api/v1/logs/{log_id}", key))[0] == 200


async def test_desc_paging_walks_everything_once(session, stack: Stack, dataset) -> None:
    _, key = dataset
    seen, cursor = [], None
    while True:
        url = f"{stack.base_url}/api/v1/logs?limit=4" + (f"&cursor={cursor}" if cursor else "")
        _, _, body = await call(session, "GET", url, key)
        seen += [i["executionId"] for i in body["data"]]
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            assert cursor is None
            break
    assert sorted(seen) == ["e1", "e2", "e3", "e4", "e5", "e6"]  # each exactly once
    # completion order holds per workflow (one partition each): newest first
    for first, second in (("e1", "e2"), ("e3", "e4"), ("e5", "e6")):
        assert seen.index(second) < seen.index(first)


async def test_late_completion_is_seen_by_an_asc_poller(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    assert (await post_events(session, stack, key, [completed("new-1")]))[0] == 202
    first = await read_all(session, stack, key, 1)
    assert [i["executionId"] for i in first] == ["new-1"]
    _, _, page = await call(session, "GET", f"{stack.base_url}/api/v1/logs?order=asc", key)
    cursor = page["nextCursor"]
    # Started long before everything seen so far, completed only now.
    late = completed("late-1", **at("D-30 00:00:00.000", 10))
    assert (await post_events(session, stack, key, [late]))[0] == 202
    for _ in range(100):
        url = f"{stack.base_url}/api/v1/logs?order=asc&cursor={cursor}"
        _, _, body = await call(session, "GET", url, key)
        if body["data"]:
            assert [i["executionId"] for i in body["data"]] == ["late-1"]
            return
        cursor = body["nextCursor"]
        await asyncio.sleep(0.2)
    raise AssertionError("late completion never appeared after the cursor")


async def test_the_same_batch_twice_is_one_log_per_execution(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    batch = [completed(f"dup-{i}", f"wf-{i % 2}") for i in range(5)]
    for _ in range(2):
        assert (await post_events(session, stack, key, batch))[0] == 202
    # a marker sent after both batches: once it is visible, both batches were processed
    assert (await post_events(session, stack, key, [completed("marker")]))[0] == 202
    logs = await read_all(session, stack, key, 6)
    assert sorted(i["executionId"] for i in logs) == [
        "dup-0",
        "dup-1",
        "dup-2",
        "dup-3",
        "dup-4",
        "marker",
    ]
    _, _, workflows = await call(session, "GET", f"{stack.base_url}/api/v1/workflows", key)
    counts = {w["id"]: w["executionCount"] for w in workflows["data"]}
    assert counts == {"wf-0": 3, "wf-1": 3}  # wf-1 also holds the marker


async def test_ingest_formats_and_errors(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    url = f"{stack.base_url}/api/v1/events"
    single = completed("one")
    status, _, body = await call(session, "POST", url, key, json=single)
    assert status == 202 and body["data"]["accepted"] == 1
    ndjson = "\n".join(json.dumps(completed(f"nd-{i}")) for i in range(3)).encode() + b"\n"
    status, _, body = await call(
        session, "POST", url, key, data=ndjson, headers={"Content-Type": "application/x-ndjson"}
    )
    assert status == 202 and body["data"]["accepted"] == 3
    bad = [completed(f"ok-{i}") for i in range(3)] + [
        completed("bad", endedAt="2020-01-01T00:00:00Z")
    ]
    bad.append({k: v for k, v in completed("missing").items() if k != "level"})
    status, _, body = await post_events(session, stack, key, bad)
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in body["error"]["details"]] == [
        "events[3].endedAt",
        "events[4].level",
    ]
    status, _, body = await call(
        session, "POST", url, key, data=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert status == 415 and body["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    huge = completed("huge", finalOutput="x" * (260 * 1024))
    status, _, body = await post_events(session, stack, key, [huge])
    assert status == 413 and body["error"]["details"][0]["field"] == "events[0]"
    status, _, body = await call(session, "POST", url, key, json={"events": []})
    assert status == 400 and body["error"]["details"][0]["field"] == "events"
    # nothing of the rejected requests was stored
    logs = await read_all(session, stack, key, 4)
    assert sorted(i["executionId"] for i in logs) == ["nd-0", "nd-1", "nd-2", "one"]


async def test_ingest_needs_the_events_scope(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    reader = await new_key(session, stack, key, ["logs:read"])
    status, _, body = await post_events(session, stack, reader["secret"], [completed("x")])
    assert status == 403 and "'events:write'" in body["error"]["message"]


async def test_sync_execution_bucket_rejects_starts_beyond_the_burst(session, stack: Stack) -> None:
    _, key = await new_project(session, stack, plan="free")

    status, _, _ = await post_events(
        session, stack, key, [started(f"s-sync-{i}", "w", mode="sync") for i in range(20)]
    )
    assert status == 202  # the free plan's sync burst is 20
    status, headers, body = await post_events(
        session, stack, key, [started("s-sync-20", "w", mode="sync")]
    )
    assert status == 429 and body["error"]["code"] == "RATE_LIMITED"
    assert int(headers["Retry-After"]) >= 1
    status, _, _ = await post_events(session, stack, key, [started("s-async-0", "w")])
    assert status == 202  # async has its own bucket
    _, _, logs = await call(session, "GET", f"{stack.base_url}/api/v1/logs", key)
    assert logs["limits"]["workflowExecutionRateLimit"]["sync"]["remaining"] == 0
    assert logs["limits"]["workflowExecutionRateLimit"]["sync"]["maxBurst"] == 20


async def test_a_request_no_bucket_could_ever_admit_is_413_and_costs_one_token(
    session, stack: Stack
) -> None:
    _, key = await new_project(session, stack, plan="free")
    starts = [
        {
            "type": "workflow.execution.started",
            "executionId": f"big-{i}",
            "workflowId": "w",
            "trigger": "api",
            "mode": "sync",
            "startedAt": completed("x")["startedAt"],
        }
        for i in range(30)
    ]
    status, _, body = await post_events(session, stack, key, starts)
    assert status == 413 and "split" in body["error"]["message"]
    status, headers, _ = await post_events(session, stack, key, starts[:1])
    assert status == 202
    # the refused request kept only the token taken before its body was read
    assert headers["X-RateLimit-Remaining"] == "1998"


async def test_a_refusal_gives_back_the_ingest_tokens(session, stack: Stack) -> None:
    _, key = await new_project(session, stack, plan="free")

    def start(i: int) -> dict[str, Any]:
        return {
            "type": "workflow.execution.started",
            "executionId": f"r-{i}",
            "workflowId": "w",
            "trigger": "api",
            "mode": "sync",
            "startedAt": completed("x")["startedAt"],
        }

    assert (await post_events(session, stack, key, [start(i) for i in range(20)]))[0] == 202
    status, headers, _ = await post_events(session, stack, key, [start(20), completed("c-1")])
    assert status == 429
    assert int(headers["X-RateLimit-Remaining"]) >= 1979  # 20 taken before; the 2 were refunded


async def test_undecodable_records_go_to_the_dead_letter_topic(session, stack: Stack) -> None:
    from aiokafka import AIOKafkaProducer

    from schemas import topics

    _, key = await new_project(session, stack)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topics.EXECUTIONS, b"\xff not json", key=b"poison")
        await producer.send_and_wait(
            topics.EXECUTIONS, b'{"kind": "execution", "v": 1}', key=b"poison"
        )
    finally:
        await producer.stop()
    # the sink keeps going: a valid event sent afterwards is stored
    assert (await post_events(session, stack, key, [completed("after-poison")]))[0] == 202
    assert [i["executionId"] for i in await read_all(session, stack, key, 1)] == ["after-poison"]
    records = await consume_all(stack.kafka_bootstrap, topics.EXECUTIONS_DLQ)
    dead = [r for r in records if r.key == b"poison"]
    assert {r.value for r in dead} >= {b"\xff not json", b'{"kind": "execution", "v": 1}'}
    assert all(dict(r.headers)["error"] for r in dead)
    async with session.get(f"{stack.base_url}/metrics") as response:
        metrics = await response.text()
    line = next(m for m in metrics.splitlines() if m.startswith("cc_logsink_dead_letters_total"))
    assert float(line.split()[-1]) >= 2
