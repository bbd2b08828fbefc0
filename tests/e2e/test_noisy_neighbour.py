"""One tenant's hostile input never hurts another: project A throws everything it can at the
shared stack while project B's ordinary executions keep being stored, notified and alerted on."""

import json
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.helpers import call, eventually, new_project, post_events, read_all, subscribe
from tests.factories import completed, iso
from tests.processes import Stack, running_stack
from tests.receivers import HttpReceiver


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own: the raw poison below stays off the topics other tests read."""
    with running_stack(tmp_path_factory.mktemp("noisy") / "data") as running:
        yield running


@pytest.fixture
async def elsewhere() -> AsyncIterator[aiohttp.ClientSession]:
    """The hostile tenant's client, from another address (per-address throttles apply to it)."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as client:
        yield client


def nested(depth: int) -> Any:
    """A JSON value `depth` levels deep (objects and lists alternating)."""
    value: Any = 1
    for _ in range(depth // 2):
        value = {"a": [value]}
    return value


DEEP = "__deep__"


def deep_body(events: list[dict[str, Any]], depth: int) -> bytes:
    """`{"events": ...}` with every `DEEP` string replaced by JSON `depth` levels deep (too deep
    for the json module to write)."""
    deep = '{"a":[' * (depth // 2) + "1" + "]}" * (depth // 2)
    return json.dumps({"events": events}).replace(f'"{DEEP}"', deep).encode()


def hostile_events() -> list[tuple[str, list[dict[str, Any]]]]:
    """(what, events) that a careless or hostile tenant sends; each must be refused with 400."""
    now = datetime.now(UTC)
    return [
        ("huge duration", [completed(f"x-{i}", "wf-a", totalDurationMs=10**40) for i in range(7)]),
        ("deep finalOutput", [completed("deep", "wf-a", finalOutput=DEEP)]),
        ("deep traceSpans", [completed("deep-ts", "wf-a", traceSpans=[DEEP])]),
        ("deep workflowState", [completed("deep-ws", "wf-a", workflowState={"blocks": DEEP})]),
        ("ended in 2999", [completed("future", "wf-a", endedAt="2999-01-01T00:00:00.000Z")]),
        ("started before 1970", [completed("past", "wf-a", startedAt="1900-01-01T00:00:00.000Z")]),
        ("cost beyond bounds", [completed("rich", "wf-a", cost={"total": 10**30})]),
        ("tokens beyond bounds", [completed("tok", "wf-a", cost={"total": 1, "tokens": {"total": 10**20}})]),
        ("too many files", [completed("files", "wf-a", files=[{}] * 1001)]),
        ("id too long", [completed("i" * 257, "wf-a")]),
        ("ended before started", [completed("rev", "wf-a", startedAt=iso(now), endedAt=iso(now - timedelta(seconds=1)))]),
    ]  # fmt: skip


async def attack(
    session: aiohttp.ClientSession, stack: Stack, key: str, sub: str, throttled: bool = False
) -> list[str]:
    """Project A's hostile requests; returns what answered 5xx or was wrongly accepted. Once
    `throttled`, its address may be refused (429) for the refused keys it sent before."""
    wrong: list[str] = []
    base = stack.base_url

    def check(what: str, status: int, allowed: set[int]) -> None:
        if throttled:
            allowed = allowed | {429}
        if status >= 500 or status not in allowed:
            wrong.append(f"{what}: {status}")

    for what, events in hostile_events():
        status, _, _ = await call(
            session, "POST", f"{base}/api/v1/events", key, data=deep_body(events, 3000),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        check(what, status, {400, 413})
    queries = [
        "cursor=%C3%A9t%C3%A9", "cursor=" + "z" * 5000, "minDurationMs=" + "9" * 30,
        "maxCost=1e400", "limit=1000&includeTraceSpans=true&includeFinalOutput=true",
        "startDate=99999-01-01", "model=" + "m" * 300,
    ]  # fmt: skip
    for query in queries:
        status, _, _ = await call(session, "GET", f"{base}/api/v1/logs?{query}", key)
        check(f"logs?{query[:40]}", status, {200, 400})
    for path in ("runs", "workflows"):
        status, _, _ = await call(session, "GET", f"{base}/api/v1/{path}?limit=1000", key)
        check(path, status, {200})
    status, _, _ = await call(
        session, "PATCH", f"{base}/api/v1/notifications/{sub}", key,
        json={"triggerFilter": [f"t{i}" for i in range(100_000)]},
    )  # fmt: skip
    check("unbounded triggerFilter", status, {400, 413})
    # Workflow ids cost nothing to mint: thousands of them are accepted and must stay harmless.
    minted = [completed(f"mint-{i}", f"wf-mint-{i}") for i in range(1000)]
    status, _, _ = await post_events(session, stack, key, minted)
    check("minted workflows", status, {202})
    # Values at the edge of the bounds are accepted and must not trouble any consumer.
    edge = completed(
        "edge", "wf-a", totalDurationMs=31_536_000_000, finalOutput=nested(60),
        cost={"total": 1_000_000, "tokens": {"total": 10**12}}, workflowName="a\u2028b\u2029c",
    )  # fmt: skip
    status, _, _ = await post_events(session, stack, key, [edge] * 1)
    check("values at the bounds", status, {202})
    for _ in range(50):  # random keys and a wrong admin token: refused, never a 5xx
        fake = "cc_live_" + secrets.token_urlsafe(32).replace("-", "a").replace("_", "b")
        status, _, _ = await call(session, "GET", f"{base}/api/v1/whoami", fake)
        check("random key", status, {401, 429})
        status, _, _ = await call(session, "GET", f"{base}/admin/v1/projects", "cc_admin_wrong")
        check("wrong admin token", status, {401, 404, 405, 429})
    return wrong


async def poison_the_topics(bootstrap: str) -> None:
    """Records no API would write, straight onto the shared topics."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        deep = ('{"a":[' * 2500 + "1" + "]}" * 2500).encode()
        garbage = [b"\xff\xfe", b"{}", b"[]", b"null", deep]
        for topic in ("executions", "notifications", "delivery-log", "subscriptions"):
            for value in garbage:
                await producer.send_and_wait(topic, value, key=b"prj_x/wf-poison")
    finally:
        await producer.stop()


async def test_a_hostile_tenant_does_not_stall_crash_or_starve_another(
    shared: Stack, session: aiohttp.ClientSession, elsewhere: aiohttp.ClientSession
) -> None:
    stack = shared
    _, attacker = await new_project(session, stack, name="noisy")
    _, victim = await new_project(session, stack, name="quiet")
    async with HttpReceiver() as every, HttpReceiver() as alerts, HttpReceiver() as noisy:
        a_sub, _ = await subscribe(
            session, stack, attacker, noisy.url,
            alertConfig={"rule": "latency_spike", "latencySpikePercent": 10},
        )  # fmt: skip
        await subscribe(session, stack, victim, every.url)
        await subscribe(
            session, stack, victim, alerts.url,
            alertConfig={"rule": "latency_threshold", "durationThresholdMs": 5000},
        )  # fmt: skip

        wrong = await attack(elsewhere, stack, attacker, a_sub)
        await poison_the_topics(stack.kafka_bootstrap)
        ordinary = [completed(f"b-{i}", "wf-b") for i in range(20)]
        ordinary.append(completed("b-slow", "wf-b", duration_ms=9000))
        for start in range(0, len(ordinary), 7):  # interleaved with a second round of attacks
            status, _, body = await post_events(session, stack, victim, ordinary[start : start + 7])
            assert status == 202, body
            wrong += await attack(elsewhere, stack, attacker, a_sub, throttled=True)
        assert wrong == [], wrong

        stored = await read_all(session, stack, victim, len(ordinary), timeout_s=60)
        assert sorted(log["executionId"] for log in stored) == sorted(
            e["executionId"] for e in ordinary
        )

        def delivered() -> set[str]:
            return {r.json()["data"]["executionId"] for r in every.requests}

        async def all_delivered() -> bool:
            return delivered() >= {e["executionId"] for e in ordinary}

        await eventually(all_delivered, timeout_s=60)

        async def alerted() -> list[Any]:
            return [r.json() for r in alerts.requests]

        (alert,) = await eventually(alerted, timeout_s=60)
        assert alert["data"]["executionId"] == "b-slow"
        assert alert["data"]["alert"]["rule"] == "latency_threshold"
        status, _, body = await call(session, "GET", f"{stack.base_url}/readyz")
        assert status == 200, body
