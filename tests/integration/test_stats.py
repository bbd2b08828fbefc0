"""`GET /api/v1/stats` over HTTP in this process, on chDB with known executions and a fixed clock:
counts, error rates, percentiles, empty buckets, ranges, and only the caller's project."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.common.clickhouse import ClickHouse
from services.common.config import QueryLimits
from services.common.controlplane import ControlPlane
from services.logsink.rows import EXECUTION_COLUMNS
from tests.integration.apiserver import ADMIN_TOKEN, admin_project, deps_for, serving, settings_for
from tests.integration.conftest import control_plane_engine

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

NOW = datetime(2026, 11, 23, 10, 37, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Api:
    """The API in this process and its chDB."""

    client: TestClient[Any, Any]
    ch: ClickHouse


@pytest.fixture
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    """With the route's default ClickHouse limits, or those a test gives by indirect parameter."""
    plane = ControlPlane(control_plane_engine(request, "sqlite", tmp_path))
    await plane.migrate(1)
    ch = ClickHouse(f"chdb://{tmp_path / 'ch'}")
    await ch.migrate()
    limits = getattr(request, "param", {})
    deps = deps_for(settings_for(tmp_path, query_limits=limits), plane)
    deps.clickhouse, deps.clock = ch, NOW.timestamp
    try:
        async with serving(deps) as client:
            yield Api(client, ch)
    finally:
        ch.close()
        await plane.close()


async def _project(api: Api) -> tuple[str, dict[str, str]]:
    return await admin_project(api.client)


_serial = iter(range(10**6))


def _execution(
    project: str, workflow: str, ended: datetime, duration_ms: int, error: bool = False
) -> tuple[Any, ...]:
    """An `executions` row as the log sink writes it, ingested a moment after it ended."""
    n = next(_serial)
    level = "error" if error else "info"
    ingest_us = int(ended.timestamp() * 1_000_000) + 50_000 + n
    return (
        project, ingest_us, 0, n, f"log_{n}", f"ex-{n}", workflow, "", "", "", "api", level, level,
        ended - timedelta(milliseconds=duration_ms), ended, duration_ms, 0.01, '{"total":0.01}',
        [], "null", 0, 0, 30,
    )  # fmt: skip


async def _seed(api: Api, project: str, other: str) -> None:
    at_10 = NOW.replace(minute=5, second=0)  # the current (partial) hour bucket
    rows = [
        *(
            _execution(project, "wf-a", at_10 + timedelta(minutes=i), d, error=i == 0)
            for i, d in enumerate((100, 200, 300, 400))
        ),
        _execution(project, "wf-a", datetime(2026, 11, 22, 11, 0, tzinfo=UTC), 1000, error=True),
        _execution(project, "wf-b", at_10 - 2 * HOUR, 50),
        _execution(project, "wf-b", at_10 - 2 * HOUR + timedelta(seconds=1), 150),
        # A millisecond before the 24 hour buckets: only in the 7d and 30d ranges.
        _execution(project, "wf-a", datetime(2026, 11, 22, 10, 59, 59, 999000, tzinfo=UTC), 70),
        # Another project's executions, in the same buckets and workflows.
        *(_execution(other, "wf-a", at_10, 5, error=True) for _ in range(5)),
        _execution(other, "wf-z", at_10, 5),
    ]
    await api.ch.insert("executions", rows, EXECUTION_COLUMNS)


async def _stats(api: Api, headers: dict[str, str], query: str = "") -> dict[str, Any]:
    response = await api.client.get(f"/api/v1/stats{query}", headers=headers)
    body = await response.json()
    assert response.status == 200, body
    return dict(body["data"])


async def test_a_day_of_buckets_counts_rates_percentiles_and_only_this_project(api: Api) -> None:
    project, headers = await _project(api)
    other, other_headers = await _project(api)
    await _seed(api, project, other)
    data = await _stats(api, headers)
    assert (data["range"], data["bucketSeconds"]) == ("24h", 3600)
    # wf-a 100, 200, 300, 400 (one error) at 10h, 1000 (error) at 11h yesterday; wf-b 50, 150 at 8h
    assert data["totals"] == {
        "executions": 7, "errors": 2, "errorRate": 0.2857, "p50DurationMs": 200,
        "p95DurationMs": 820, "costUsd": 0.07,
    }  # fmt: skip
    series = data["series"]
    assert len(series) == 24
    assert series[0]["start"] == "2026-11-22T11:00:00.000Z"
    assert series[-1]["start"] == "2026-11-23T10:00:00.000Z"
    assert [b["executions"] for b in series] == [1, *[0] * 20, 2, 0, 4]
    assert series[-1] == {
        "start": "2026-11-23T10:00:00.000Z", "executions": 4, "errors": 1, "p50DurationMs": 250,
        "p95DurationMs": 385, "costUsd": 0.04,
    }  # fmt: skip
    assert series[21]["p50DurationMs"] == 100 and series[21]["p95DurationMs"] == 145
    assert series[1] == {
        "start": "2026-11-22T12:00:00.000Z", "executions": 0, "errors": 0, "p50DurationMs": 0,
        "p95DurationMs": 0, "costUsd": 0.0,
    }  # fmt: skip
    wf_a, wf_b = data["workflows"]
    assert (wf_a["workflowId"], wf_a["executions"], wf_a["errors"], wf_a["errorRate"]) == (
        "wf-a", 5, 2, 0.4,
    )  # fmt: skip
    assert wf_a["lastExecutionAt"] == "2026-11-23T10:08:00.000Z"
    assert wf_a["health"] == [1.0, *[None] * 22, 0.25]
    assert (wf_b["workflowId"], wf_b["executions"], wf_b["errorRate"]) == ("wf-b", 2, 0.0)
    assert wf_b["health"] == [*[None] * 21, 0.0, None, None]
    theirs = await _stats(api, other_headers)
    assert theirs["totals"]["executions"] == 6 and theirs["totals"]["errors"] == 5
    assert [w["workflowId"] for w in theirs["workflows"]] == ["wf-a", "wf-z"]


async def test_longer_ranges_and_one_workflow(api: Api) -> None:
    project, headers = await _project(api)
    other, _ = await _project(api)
    await _seed(api, project, other)
    week = await _stats(api, headers, "?range=7d")
    assert (week["bucketSeconds"], len(week["series"])) == (21600, 28)
    assert week["series"][-1]["start"] == "2026-11-23T06:00:00.000Z"
    assert week["series"][-1]["executions"] == 6 and week["totals"]["executions"] == 8
    assert week["series"][-5]["executions"] == 2  # yesterday 06:00-12:00: 10:59:59.999 and 11:00
    month = await _stats(api, headers, "?range=30d")
    assert (month["bucketSeconds"], len(month["series"])) == (86400, 30)
    assert month["series"][-1]["start"] == "2026-11-23T00:00:00.000Z"
    assert [b["executions"] for b in month["series"][-2:]] == [2, 6]
    assert month["workflows"][0]["health"][-2:] == [0.5, 0.25]
    only_b = await _stats(api, headers, "?range=7d&workflowId=wf-b")
    assert only_b["totals"]["executions"] == 2 and only_b["totals"]["errors"] == 0
    assert [w["workflowId"] for w in only_b["workflows"]] == ["wf-b"]
    none = await _stats(api, headers, "?workflowId=wf-unknown")
    assert none["totals"]["executions"] == 0 and none["workflows"] == []
    assert [b["executions"] for b in none["series"]] == [0] * 24


async def test_an_empty_project_has_every_bucket_at_zero(api: Api) -> None:
    _, headers = await _project(api)
    data = await _stats(api, headers)
    assert data["totals"] == {
        "executions": 0, "errors": 0, "errorRate": 0.0, "p50DurationMs": 0, "p95DurationMs": 0,
        "costUsd": 0.0,
    }  # fmt: skip
    assert len(data["series"]) == 24 and data["workflows"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [("?range=1h", "range"), ("?range=", "range"), ("?workflowId=" + "w" * 257, "workflowId"),
     ("?workflowId=", "workflowId"), ("?since=24h", "since")],
)  # fmt: skip
async def test_bad_parameters_are_400(api: Api, query: str, field: str) -> None:
    _, headers = await _project(api)
    response = await api.client.get(f"/api/v1/stats{query}", headers=headers)
    body = await response.json()
    assert response.status == 400 and body["error"]["code"] == "VALIDATION_ERROR"
    assert body["error"]["details"][0]["field"] == field


async def test_it_needs_the_logs_read_scope(api: Api) -> None:
    _, headers = await _project(api)
    response = await api.client.post(
        "/api/v1/keys", json={"name": "wf", "scopes": ["workflows:read"]}, headers=headers
    )
    secret = (await response.json())["data"]["secret"]
    response = await api.client.get("/api/v1/stats", headers={"Authorization": f"Bearer {secret}"})
    body = await response.json()
    assert response.status == 403 and "'logs:read'" in body["error"]["message"]


@pytest.mark.parametrize("api", [{"stats": QueryLimits(30, 0, 1)}], indirect=True)
async def test_the_route_runs_under_its_query_limits(api: Api) -> None:
    project, headers = await _project(api)
    other, _ = await _project(api)
    await _seed(api, project, other)
    response = await api.client.get("/api/v1/stats", headers=headers)
    body = await response.json()
    assert response.status == 400 and "shorter range" in body["error"]["message"]
