"""Routes: `/api/v1/workflows` and `/api/v1/workflows/{id}` (workflows seen in events)."""

from datetime import datetime
from typing import Any, NamedTuple

from msgspec import Struct

from schemas.logs import Workflow
from services.api.logs import epoch_ms
from services.api.routing import (
    CURSOR,
    Call,
    Page,
    Route,
    int_param,
    limit_param,
)
from services.common.clock import iso_ms
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import InvalidCursor, NotFound

# Counted from the stored executions through their aggregate projections (`workflow_totals`,
# `workflow_starts`): exact after a crash of the sink and within retention, and a read of one
# pre-aggregated row per workflow and part instead of every execution.
_PAGE = """
SELECT workflow_id, max(l) AS last, sum(c) AS cnt FROM (
    SELECT workflow_id, count() AS c, max(ended_at) AS l FROM executions
    WHERE project_id = {project:String} AND workflow_id > {after:String} {only}
    GROUP BY workflow_id
    UNION ALL
    SELECT workflow_id, toUInt64(0) AS c, max(started_at) AS l FROM executions_started
    WHERE project_id = {project:String} AND workflow_id > {after:String} {only}
    GROUP BY workflow_id
)
GROUP BY workflow_id ORDER BY workflow_id LIMIT {limit:UInt32}
"""
_META = """
SELECT workflow_id,
       argMaxIf(name, version, name != '') AS name,
       argMaxIf(description, version, description != '') AS description,
       argMaxIf(folder_id, version, folder_id != '') AS folder_id
FROM workflow_meta WHERE project_id = {project:String} AND workflow_id IN {ids:Array(String)}
GROUP BY workflow_id
"""
_ONE = "AND workflow_id = {id:String}"
NARROW = "page with a smaller limit"


class TotalsRow(NamedTuple):
    """A row of `_PAGE`: a workflow, its last execution and how many it had."""

    workflow_id: str
    last: datetime | None
    executions: int


class MetaRow(NamedTuple):
    """A row of `_META`: the latest non-empty name, description and folder of a workflow."""

    workflow_id: str
    name: str
    description: str
    folder_id: str


class WorkflowsCursor(Struct, frozen=True):
    """Where a workflow listing stopped."""

    v: int
    project: str
    after: str


def _workflow(row: TotalsRow, meta: dict[str, MetaRow]) -> Workflow:
    found = meta.get(row.workflow_id) or MetaRow(row.workflow_id, "", "", "")
    last_ms = epoch_ms(row.last) if row.last is not None else 0
    return Workflow(
        id=row.workflow_id, name=found.name or None, description=found.description or None,
        folderId=found.folder_id or None, lastExecutionAt=iso_ms(last_ms) if last_ms > 0 else None,
        executionCount=int(row.executions),
    )  # fmt: skip


async def _query(call: Call, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    limits = call.deps.settings.query_limits_for("workflows")
    return await call.deps.clickhouse.rows(sql, params, limits=limits, narrow=NARROW)


async def _totals(call: Call, only: str, params: dict[str, Any]) -> list[TotalsRow]:
    """Workflows in id order with their counts, all or (with `_ONE`) the one asked for."""
    return [TotalsRow(*row) for row in await _query(call, _PAGE.replace("{only}", only), params)]


async def _meta(call: Call, project_id: str, ids: list[str]) -> dict[str, MetaRow]:
    """Name, description and folder of the listed workflows only."""
    if not ids:
        return {}
    rows = await _query(call, _META, {"project": project_id, "ids": ids})
    return {found.workflow_id: found for found in (MetaRow(*row) for row in rows)}


async def list_workflows(call: Call) -> Page:
    """Workflows of the project in id order."""
    project_id = call.principal.project_id
    limit = int_param(call.query, "limit", 100, 1, 1000)
    after = ""
    if token := call.query.get("cursor"):
        cursor = decode_cursor(token, WorkflowsCursor, call.deps.cursor_key)
        if cursor.project != project_id:
            raise InvalidCursor("The cursor does not belong to this listing.")
        after = cursor.after
    params = {"project": project_id, "after": after, "limit": limit + 1}
    rows = await _totals(call, "", params)
    page, has_more = rows[:limit], len(rows) > limit
    next_cursor = None
    if has_more:
        last = WorkflowsCursor(v=1, project=project_id, after=page[-1].workflow_id)
        next_cursor = encode_cursor(last, call.deps.cursor_key)
    meta = await _meta(call, project_id, [r.workflow_id for r in page])
    return Page([_workflow(r, meta) for r in page], next_cursor, has_more)


async def get_workflow(call: Call) -> Workflow:
    """One workflow; another project's workflow is 404."""
    project_id = call.principal.project_id
    params = {"project": project_id, "after": "", "limit": 1, "id": call.path("id")}
    rows = await _totals(call, _ONE, params)
    if not rows:
        raise NotFound(f"No workflow {call.path('id')} in this project.")
    return _workflow(rows[0], await _meta(call, project_id, [rows[0].workflow_id]))


ROUTES = [
    Route(
        "GET",
        "/api/v1/workflows",
        list_workflows,
        "Workflows seen in events",
        "workflows",
        scope="workflows:read",
        response=Workflow,
        paged=True,
        params=(limit_param(1000, 100), CURSOR),
    ),
    Route(
        "GET",
        "/api/v1/workflows/{id}",
        get_workflow,
        "One workflow",
        "workflows",
        scope="workflows:read",
        response=Workflow,
    ),
]
