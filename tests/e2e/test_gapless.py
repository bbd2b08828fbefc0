"""Property: an asc poller following nextCursor sees every completed execution exactly once.

Ingest batches (some holding executions that started long before anything already paged) are
interleaved with page reads at arbitrary moments, while the sink is still writing; once all is
visible, the poller has seen each execution once, with none skipped behind its cursor.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.helpers import call, new_project, post_events
from tests.factories import completed
from tests.processes import Stack

Step = tuple[str, int, int]  # ("ingest", size, age_days) or ("read", limit, sleep_ms)

steps = st.lists(
    st.one_of(
        st.tuples(st.just("ingest"), st.integers(1, 40), st.integers(0, 400)),
        st.tuples(st.just("read"), st.integers(1, 7), st.integers(0, 300)),
    ),
    min_size=2,
    max_size=10,
)


async def _page(
    session: aiohttp.ClientSession, stack: Stack, key: str, limit: int, cursor: str | None
) -> tuple[list[str], str, bool]:
    url = f"{stack.base_url}/api/v1/logs?order=asc&limit={limit}" + (
        f"&cursor={cursor}" if cursor else ""
    )
    status, _, body = await call(session, "GET", url, key)
    assert status == 200, body
    assert body["nextCursor"], "order=asc always returns a resume point"
    return [i["executionId"] for i in body["data"]], body["nextCursor"], body["hasMore"]


async def _scenario(stack: Stack, plan: list[Step]) -> None:
    async with aiohttp.ClientSession() as session:
        _, key = await new_project(session, stack)
        sent: list[str] = []
        seen: list[str] = []
        cursor: str | None = None
        for kind, a, b in plan:
            if kind == "ingest":
                batch = []
                for _ in range(a):
                    execution_id = f"x{len(sent)}"
                    sent.append(execution_id)
                    ended = datetime.now(UTC) - timedelta(days=b)
                    batch.append(
                        completed(
                            execution_id,
                            f"wf-{len(sent) % 5}",
                            startedAt=(ended - timedelta(seconds=3)).isoformat(),
                            endedAt=ended.isoformat(),
                        )
                    )
                assert (await post_events(session, stack, key, batch))[0] == 202
            else:
                ids, cursor, _ = await _page(session, stack, key, a, cursor)
                seen += ids
                await asyncio.sleep(b / 1000)
        deadline = asyncio.get_running_loop().time() + 30
        while len(seen) < len(sent) and asyncio.get_running_loop().time() < deadline:
            ids, cursor, has_more = await _page(session, stack, key, 50, cursor)
            seen += ids
            if not has_more:
                await asyncio.sleep(0.1)
        ids, cursor, _ = await _page(session, stack, key, 1000, cursor)  # nothing may follow
        seen += ids
        assert len(seen) == len(set(seen)), "an execution was delivered twice"
        assert sorted(seen) == sorted(sent), "an execution was skipped"


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=steps)
def test_asc_polling_sees_every_execution_exactly_once(stack: Stack, plan: list[Step]) -> None:
    asyncio.run(_scenario(stack, plan))
