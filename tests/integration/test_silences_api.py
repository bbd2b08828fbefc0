"""`/api/v1/silences` over HTTP on a real control plane (SQLite and PostgreSQL), with a clock the
test moves: create, list by state, read, end, bounds, the caps, the purge and foreign ids."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from services.api import silences
from services.api.deps import Deps
from services.api.purge import ACK_KEPT_MS, purge_acks, purge_silences
from services.common.controlplane import AckRow, ControlPlane, OutboxMessage
from tests.integration.apiserver import ADMIN_TOKEN, admin_project, deps_for, serving, settings_for

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()  # a Monday


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def deps(cp: ControlPlane, tmp_path: Path, clock: Clock) -> Deps:
    return deps_for(settings_for(tmp_path), cp, clock=clock)


@pytest.fixture
async def api(deps: Deps) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(deps) as client:
        yield client


async def new_key(api: TestClient[Any, Any]) -> dict[str, str]:
    return (await admin_project(api, "pro"))[1]


async def post(api: TestClient[Any, Any], key: dict[str, str], body: dict[str, Any]) -> Any:
    response = await api.post("/api/v1/silences", json=body, headers=key)
    return response.status, await response.json()


async def states(api: TestClient[Any, Any], key: dict[str, str], state: str) -> list[str]:
    response = await api.get(f"/api/v1/silences?state={state}", headers=key)
    assert response.status == 200
    return [s["id"] for s in (await response.json())["data"]]


async def test_a_one_off_silence_is_created_listed_read_and_ended(
    api: TestClient[Any, Any], clock: Clock
) -> None:
    key = await new_key(api)
    status, body = await post(api, key, {
        "comment": "deploy", "matchers": {"workflowIds": ["wf1"], "rules": ["error_count"]},
        "endsAt": "2026-06-01T14:00:00Z",
    })  # fmt: skip
    assert status == 201, body
    silence = body["data"]
    assert silence["id"].startswith("sil_")
    assert silence["state"] == "active"
    assert silence["startsAt"] == "2026-06-01T12:00:00.000Z"
    assert silence["createdBy"].endswith(")") and "kak_" in silence["createdBy"]
    assert silence["matchers"] == {"workflowIds": ["wf1"], "rules": ["error_count"]}
    assert await states(api, key, "active") == [silence["id"]]
    assert await states(api, key, "pending") == []
    got = await api.get(f"/api/v1/silences/{silence['id']}", headers=key)
    assert (await got.json())["data"]["id"] == silence["id"]

    clock.now += 600
    ended = await api.delete(f"/api/v1/silences/{silence['id']}", headers=key)
    assert ended.status == 200
    data = (await ended.json())["data"]
    assert data["state"] == "expired" and data["endedAt"] == "2026-06-01T12:10:00.000Z"
    assert await states(api, key, "active") == []
    assert await states(api, key, "expired") == [silence["id"]]
    again = await api.delete(f"/api/v1/silences/{silence['id']}", headers=key)
    assert (await again.json())["data"]["endedAt"] == "2026-06-01T12:10:00.000Z"


async def test_a_weekly_window_shows_its_next_start_and_when_it_closes(
    api: TestClient[Any, Any], clock: Clock
) -> None:
    key = await new_key(api)
    schedule = {"timezone": "Europe/Berlin", "daysOfWeek": ["mon"], "start": "22:00",
                "durationMinutes": 120}  # fmt: skip
    status, body = await post(api, key, {"comment": "weekly job", "schedule": schedule})
    assert status == 201, body
    silence = body["data"]
    assert silence["state"] == "pending"
    assert silence["nextStartsAt"] == "2026-06-01T20:00:00.000Z"  # 22:00 CEST
    assert await states(api, key, "pending") == [silence["id"]]
    clock.now += 8.5 * 3600  # 20:30 UTC
    got = await (await api.get(f"/api/v1/silences/{silence['id']}", headers=key)).json()
    assert got["data"]["state"] == "active"
    assert got["data"]["activeUntil"] == "2026-06-01T22:00:00.000Z"
    assert await states(api, key, "active") == [silence["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"comment": "", "endsAt": "2026-06-01T14:00:00Z"}, "comment"),
        ({"comment": "x" * 1001, "endsAt": "2026-06-01T14:00:00Z"}, "comment"),
        ({"comment": "x", "endsAt": "2026-06-01T11:00:00Z"}, "endsAt"),
        ({"comment": "x"}, "endsAt"),
        ({"comment": "x", "endsAt": "2026-06-01T14:00:00Z", "startsAt": "2026-06-01T15:00:00Z"},
         "endsAt"),
        ({"comment": "x", "endsAt": "2026-06-01T14:00:00Z",
          "matchers": {"workflowIds": [f"w{i}" for i in range(101)]}}, "matchers.workflowIds"),
        ({"comment": "x", "endsAt": "2026-06-01T14:00:00Z", "matchers": {"rules": ["nope"]}},
         "matchers.rules[0]"),
        ({"comment": "x", "schedule": {"timezone": "Nowhere/City", "daysOfWeek": ["mon"],
                                       "start": "22:00", "durationMinutes": 5}},
         "schedule.timezone"),
        ({"comment": "x", "schedule": {"timezone": "UTC", "daysOfWeek": ["mon"],
                                       "start": "22:00", "durationMinutes": 10081}},
         "schedule.durationMinutes"),
    ],
)  # fmt: skip
async def test_bodies_out_of_bounds_are_400_naming_the_field(
    api: TestClient[Any, Any], body: dict[str, Any], field: str
) -> None:
    key = await new_key(api)
    status, answer = await post(api, key, body)
    assert status == 400, answer
    assert answer["error"]["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in answer["error"].get("details", [])], answer


async def test_another_projects_silence_is_not_found(api: TestClient[Any, Any]) -> None:
    mine, theirs = await new_key(api), await new_key(api)
    _, body = await post(api, theirs, {"comment": "x", "endsAt": "2026-06-02T00:00:00Z"})
    foreign = body["data"]["id"]
    for method in ("GET", "DELETE"):
        response = await api.request(method, f"/api/v1/silences/{foreign}", headers=mine)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "NOT_FOUND"
    assert await states(api, mine, "active") == []


async def test_a_project_has_at_most_the_cap_of_unexpired_silences(
    api: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(silences, "MAX_UNEXPIRED", 3)
    key = await new_key(api)
    body = {"comment": "x", "endsAt": "2026-06-02T00:00:00Z"}
    created = [await post(api, key, body) for _ in range(3)]
    assert [status for status, _ in created] == [201] * 3
    status, answer = await post(api, key, body)
    assert status == 409 and answer["error"]["code"] == "CONFLICT"
    await api.delete(f"/api/v1/silences/{created[0][1]['data']['id']}", headers=key)
    assert (await post(api, key, body))[0] == 201


async def test_a_project_creates_at_most_the_daily_cap_of_silences(
    api: TestClient[Any, Any], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(silences, "MAX_PER_DAY", 3)
    key = await new_key(api)
    body = {"comment": "x", "endsAt": "2026-06-09T00:00:00Z"}
    for _ in range(3):  # created and ended at once: never more than one unexpired
        status, created = await post(api, key, body)
        assert status == 201
        await api.delete(f"/api/v1/silences/{created['data']['id']}", headers=key)
    status, answer = await post(api, key, body)
    assert status == 409 and "at most 3 silences in 24 hours" in answer["error"]["message"]
    clock.now += 24 * 3600
    assert (await post(api, key, body))[0] == 201


async def test_a_silence_over_for_thirty_days_is_deleted_and_tombstoned(
    api: TestClient[Any, Any], deps: Deps, cp: ControlPlane, clock: Clock
) -> None:
    key = await new_key(api)
    status, created = await post(api, key, {"comment": "x", "endsAt": "2026-06-01T13:00:00Z"})
    assert status == 201
    sid = created["data"]["id"]
    ends = int(datetime(2026, 6, 1, 13, 0, tzinfo=UTC).timestamp() * 1000)
    assert await cp.silences_over(ends, 10) == []  # over at `ends`, not before it
    assert [r.id for r in await cp.silences_over(ends + 1, 10)] == [sid]
    clock.now += 3600 + 29 * 24 * 3600  # over for 29 days: still listed
    assert await purge_silences(deps) == 0
    assert await states(api, key, "expired") == [sid]
    clock.now += 2 * 24 * 3600
    assert await purge_silences(deps) == 1
    assert await states(api, key, "expired") == []
    assert (await api.get(f"/api/v1/silences/{sid}", headers=key)).status == 404
    pending = await cp.pending_outbox(100)
    assert [(m.topic, m.key, m.value) for m in pending if m.value is None] == [
        ("silences", f"{sid}/0", None),
        ("silences", f"{sid}/1", None),
    ]
    assert await purge_silences(deps) == 0


async def test_an_acknowledgement_older_than_the_alerts_retention_is_deleted_and_tombstoned(
    api: TestClient[Any, Any], deps: Deps, cp: ControlPlane, clock: Clock
) -> None:
    project = (await admin_project(api, "pro"))[0]
    made = int(clock.now * 1000)
    for alert in ("alr_old", "alr_new"):
        row = AckRow(project, alert, made if alert == "alr_old" else made + 1000, "ops")
        record = OutboxMessage("alert-acks", f"{alert}/0", 0, b"{}")
        await cp.acknowledge(row, [record])
    clock.now += ACK_KEPT_MS / 1000  # the first is exactly as old as the retention: kept
    assert await purge_acks(deps) == 0
    clock.now += 0.5
    assert await purge_acks(deps) == 1
    assert await cp.get_ack(project, "alr_old") is None
    assert await cp.get_ack(project, "alr_new") is not None
    tombstoned = [(m.topic, m.key) for m in await cp.pending_outbox(100) if m.value is None]
    assert tombstoned == [("alert-acks", "alr_old/0"), ("alert-acks", "alr_old/1")]


async def test_the_listing_pages_with_a_cursor_bound_to_its_state(
    api: TestClient[Any, Any],
) -> None:
    key = await new_key(api)
    ids = [(await post(api, key, {"comment": str(i), "endsAt": "2026-06-02T00:00:00Z"}))[1]
           ["data"]["id"] for i in range(5)]  # fmt: skip
    first = await (await api.get("/api/v1/silences?state=active&limit=2", headers=key)).json()
    assert first["hasMore"] is True and len(first["data"]) == 2
    seen = [s["id"] for s in first["data"]]
    cursor = first["nextCursor"]
    while cursor:
        page = await api.get(f"/api/v1/silences?state=active&limit=2&cursor={cursor}", headers=key)
        body = await page.json()
        seen += [s["id"] for s in body["data"]]
        cursor = body["nextCursor"]
    assert seen == sorted(ids)
    mismatched = await api.get(
        f"/api/v1/silences?state=expired&cursor={first['nextCursor']}", headers=key
    )
    assert mismatched.status == 400
    assert (await mismatched.json())["error"]["code"] == "INVALID_CURSOR"
    bad_state = await api.get("/api/v1/silences?state=sleeping", headers=key)
    assert bad_state.status == 400


async def test_reading_needs_notifications_read_and_writing_notifications_write(
    api: TestClient[Any, Any],
) -> None:
    key = await new_key(api)
    response = await api.post("/api/v1/keys", json={"name": "ro", "scopes": ["notifications:read"]},
                              headers=key)  # fmt: skip
    reader = {"Authorization": f"Bearer {(await response.json())['data']['secret']}"}
    assert (await api.get("/api/v1/silences", headers=reader)).status == 200
    status, body = await post(api, reader, {"comment": "x", "endsAt": "2026-06-02T00:00:00Z"})
    assert status == 403 and body["error"]["code"] == "SCOPE_DENIED"
