"""Workflows and runs over HTTP: listing, paging, running vs completed, cancellation."""

from tests.e2e.helpers import call, new_key, new_project, post_events, read_all
from tests.factories import completed, started
from tests.processes import Stack
from tests.records import consume_all


async def _commands(stack: Stack) -> list[dict[str, object]]:
    import json

    return [json.loads(r.value) for r in await consume_all(stack.kafka_bootstrap, "commands")]


async def _runs(session, stack: Stack, key: str, query: str = "") -> list[dict[str, object]]:
    status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/runs?{query}", key)
    assert status == 200, body
    return list(body["data"])


async def _wait_runs(session, stack: Stack, key: str, expected: int) -> None:
    import asyncio

    for _ in range(100):
        if len(await _runs(session, stack, key)) >= expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("runs never appeared")


async def test_runs_move_from_running_to_completed_and_cancel_rules(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    events = [
        started("r1", "wf-1", workflowName="Importer"),
        started("r2", "wf-1"),
        completed("r2", "wf-1", level="error"),
    ]
    assert (await post_events(session, stack, key, events))[0] == 202
    await read_all(session, stack, key, 1)
    await _wait_runs(session, stack, key, 2)
    running = await _runs(session, stack, key, "status=running")
    done = await _runs(session, stack, key, "status=completed")
    assert [r["executionId"] for r in running] == ["r1"]
    assert running[0]["status"] == "running" and running[0]["mode"] == "async"
    assert [(r["executionId"], r["status"]) for r in done] == [("r2", "error")]
    assert sorted(r["executionId"] for r in await _runs(session, stack, key)) == ["r1", "r2"]
    status, _, one = await call(session, "GET", f"{stack.base_url}/api/v1/runs/r1", key)
    assert status == 200 and one["data"]["workflowName"] == "Importer"

    status, headers, body = await call(
        session, "POST", f"{stack.base_url}/api/v1/runs/r1/cancel", key
    )
    assert status == 202 and body["data"] == {"executionId": "r1", "status": "cancel_requested"}
    commands = await _commands(stack)
    mine = [
        c
        for c in commands
        if c["executionId"] == "r1" and c["requestId"] == headers["X-Request-ID"]
    ]
    assert len(mine) == 1 and mine[0]["type"] == "workflow.run.cancel_requested"
    status, _, body = await call(session, "POST", f"{stack.base_url}/api/v1/runs/r2/cancel", key)
    assert status == 409 and body["error"]["code"] == "CONFLICT"
    status, _, body = await call(session, "POST", f"{stack.base_url}/api/v1/runs/nope/cancel", key)
    assert status == 404
    reader = await new_key(session, stack, key, ["runs:read"])
    status, _, body = await call(
        session, "POST", f"{stack.base_url}/api/v1/runs/r1/cancel", reader["secret"]
    )
    assert status == 403 and "'runs:cancel'" in body["error"]["message"]
    status, _, body = await call(session, "GET", f"{stack.base_url}/api/v1/runs?status=paused", key)
    assert status == 400 and body["error"]["details"][0]["field"] == "status"


async def test_runs_page_with_a_cursor(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    events = [completed(f"p{i}", "wf-1", duration_ms=1000 + i) for i in range(5)]
    assert (await post_events(session, stack, key, events))[0] == 202
    await read_all(session, stack, key, 5)
    seen, cursor = [], None
    while True:
        url = f"{stack.base_url}/api/v1/runs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        _, _, body = await call(session, "GET", url, key)
        seen += [r["executionId"] for r in body["data"]]
        cursor = body["nextCursor"]
        if not body["hasMore"]:
            break
    assert sorted(seen) == [f"p{i}" for i in range(5)] and len(seen) == 5
    bad = await call(
        session, "GET", f"{stack.base_url}/api/v1/runs?status=completed&limit=2&cursor=x.y", key
    )
    assert bad[0] == 400 and bad[2]["error"]["code"] == "INVALID_CURSOR"


async def test_runs_cursor_is_bound_to_status_and_workflow(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    events = [completed(f"b{i}", "wf-1") for i in range(3)]
    assert (await post_events(session, stack, key, events))[0] == 202
    await _wait_runs(session, stack, key, 3)
    url = f"{stack.base_url}/api/v1/runs?limit=1"
    _, _, first = await call(session, "GET", f"{url}&status=completed", key)
    cursor = first["nextCursor"]
    assert cursor
    same = await call(session, "GET", f"{url}&status=completed&cursor={cursor}", key)
    assert same[0] == 200 and same[2]["data"][0]["executionId"] != first["data"][0]["executionId"]
    for other in ("", "&status=running", "&status=completed&workflowId=wf-1"):
        status, _, body = await call(session, "GET", f"{url}{other}&cursor={cursor}", key)
        assert status == 400 and body["error"]["code"] == "INVALID_CURSOR", other


async def test_workflows_are_listed_with_names_counts_and_paging(session, stack: Stack) -> None:
    _, key = await new_project(session, stack)
    events = [
        completed(f"w{i}", f"wf-{i % 3}", workflowName=f"Flow {i % 3}", folderId="fold")
        for i in range(7)
    ]
    events.append(started("s1", "wf-new", workflowName="Brand new"))
    assert (await post_events(session, stack, key, events))[0] == 202
    await read_all(session, stack, key, 7)
    import asyncio

    for _ in range(50):
        status, _, body = await call(
            session, "GET", f"{stack.base_url}/api/v1/workflows?limit=2", key
        )
        if len(body["data"]) == 2 and body["hasMore"]:
            break
        await asyncio.sleep(0.2)
    pages = [body["data"]]
    while body["hasMore"]:
        _, _, body = await call(
            session,
            "GET",
            f"{stack.base_url}/api/v1/workflows?limit=2&cursor={body['nextCursor']}",
            key,
        )
        pages.append(body["data"])
    workflows = {w["id"]: w for page in pages for w in page}
    assert list(workflows) == ["wf-0", "wf-1", "wf-2", "wf-new"]
    assert workflows["wf-0"]["executionCount"] == 3 and workflows["wf-0"]["name"] == "Flow 0"
    assert workflows["wf-0"]["folderId"] == "fold" and workflows["wf-0"]["lastExecutionAt"]
    assert workflows["wf-new"]["executionCount"] == 0 and workflows["wf-new"]["name"] == "Brand new"
    status, _, one = await call(session, "GET", f"{stack.base_url}/api/v1/workflows/wf-1", key)
    assert status == 200 and one["data"]["executionCount"] == 2
