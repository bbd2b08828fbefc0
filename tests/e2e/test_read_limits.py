"""Resource limits of the read path on a stack with small limits: byte-bounded logs pages that
stay gapless, and ClickHouse query limits answered as 503 (time) and 400 (rows)."""

import json
from collections.abc import Iterator

import aiohttp
import pytest

from tests.e2e.helpers import call, new_project, post_events, read_all
from tests.factories import completed
from tests.processes import Stack, running_stack

PAGE_MAX_BYTES = 20_000
LIMITS = {"runs": {"maxExecutionSeconds": 1e-6}, "workflows": {"maxRowsToRead": 1}}


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose logs pages hold 20 kB and whose runs and workflows reads cannot succeed."""
    env = {"CC_LOGS_PAGE_MAX_BYTES": str(PAGE_MAX_BYTES), "CC_QUERY_LIMITS": json.dumps(LIMITS)}
    with running_stack(tmp_path_factory.mktemp("small") / "data", env) as running:
        yield running


async def test_logs_pages_stay_within_the_byte_bound_and_gapless(
    session: aiohttp.ClientSession, small_stack: Stack
) -> None:
    _, key = await new_project(session, small_stack)
    big = {"text": "z" * 5000}
    # Longer than a page row holds (and than what comes back inline): read again by key.
    files = [{"name": "f" * 5000}]
    events = [
        completed(
            f"big-{i:02d}", finalOutput=big, traceSpans=[{"name": "s", "out": big}], files=files
        )
        for i in range(12)
    ]
    assert (await post_events(session, small_stack, key, events))[0] == 202
    await read_all(session, small_stack, key, 12)  # visible, whatever the paging
    seen: list[str] = []
    query = "order=asc&limit=1000&includeFinalOutput=true&includeTraceSpans=true&details=full"
    url = f"{small_stack.base_url}/api/v1/logs?{query}"
    cursor, pages = None, 0
    while True:
        async with session.get(
            url + (f"&cursor={cursor}" if cursor else ""),
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            raw = await response.read()
        body = json.loads(raw)
        assert response.status == 200, body
        pages += 1
        assert len(body["data"]) >= 1 or not body["hasMore"]
        # One row may pass the bound alone; more never do (the envelope adds under 2 kB).
        if len(body["data"]) > 1:
            assert len(raw) <= PAGE_MAX_BYTES + 2000, (len(raw), len(body["data"]))
        seen += [item["executionId"] for item in body["data"]]
        assert all(item["executionData"]["finalOutput"] == big for item in body["data"])
        assert all(item["files"] == files for item in body["data"])
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            break
    assert sorted(seen) == [f"big-{i:02d}" for i in range(12)] and len(seen) == 12
    assert pages >= 4  # about 15 kB per row: at most two rows a page
    logs = f"{small_stack.base_url}/api/v1/logs"
    status, _, basic = await call(session, "GET", f"{logs}?limit=3", key)
    assert status == 200 and [item["files"] for item in basic["data"]] == [files] * 3
    status, _, one = await call(session, "GET", f"{logs}/{basic['data'][0]['id']}", key)
    assert status == 200 and one["data"]["files"] == files


async def test_a_query_over_its_time_limit_is_503_with_retry_after(
    session: aiohttp.ClientSession, small_stack: Stack
) -> None:
    _, key = await new_project(session, small_stack)
    status, headers, body = await call(session, "GET", f"{small_stack.base_url}/api/v1/runs", key)
    assert status == 503 and body["error"]["code"] == "UNAVAILABLE"
    assert int(headers["Retry-After"]) > 0
    assert "longer than this route allows" in body["error"]["message"]
    assert "workflowId" in body["error"]["message"]


async def test_a_query_over_its_row_limit_is_400_saying_what_to_narrow(
    session: aiohttp.ClientSession, small_stack: Stack
) -> None:
    _, key = await new_project(session, small_stack)
    events = [completed(f"w-{i}", f"wf-{i}") for i in range(3)]
    assert (await post_events(session, small_stack, key, events))[0] == 202
    await read_all(session, small_stack, key, 3)
    url = f"{small_stack.base_url}/api/v1/workflows"
    status, _, body = await call(session, "GET", url, key)
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR", body
    assert "more rows than this route allows" in body["error"]["message"]
    assert "limit" in body["error"]["message"]
