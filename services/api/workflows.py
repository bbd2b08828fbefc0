"""Routes: `/api/v1/workflows` and `/api/v1/workflows/{id}` (workflows seen in events)."""

from typing import Any

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

# Counted from the stored executions rather than a materialized view: a sink killed during an
# insert can leave a view behind its table, and the sink's replay check then skips those rows.
_SQL = """
SELECT s.workflow_id, m.name, m.description, m.folder_id, s.last, s.cnt FROM (
    SELECT workflow_id, sum(c) AS cnt, max(l) AS last FROM (
        SELECT workflow_id, toUInt64(count()) AS c, max(ended_at) AS l FROM executions
        WHERE project_id = {project:String} AND workflow_id > {after:String} {only}
        GROUP BY workflow_id
        UNION ALL
        SELECT workflow_id, toUInt64(0) AS c, max(started_at) AS l FROM executions_started
        WHERE project_id = {project:String} AND workflow_id > {after:String} {only}
        GROUP BY workflow_id
    )
    GROUP BY workflow_id ORDER BY workflow_id LIMIT {limit:UInt32}
) AS s
LEFT JOIN (
    SELECT workflow_id,
           argMaxIf(name, version, name != '') AS name,
           argMaxIf(description, version, description != '') AS description,
           argMaxIf(folder_id, version, folder_id != '') AS folder_id
    FROM workflow_meta WHERE project_id = {project:String} {only}
    GROUP BY workflow_id
) AS m USING (workflow_id)
ORDER BY s.workflow_id
"""
_ONE = "AND workflow_id = {id:String}"


class WorkflowsCursor(Struct, frozen=True):
    """Where a workflow listing stopped."""

    v: int
    project: str
    after: str


def _workflow(row: tuple[Any, ...]) -> Workflow:
    workflow_id, name, description, folder_id, last, count = row
    has_run = last is not None and epoch_ms(last) > 0
    return Workflow(
        id=workflow_id, name=name or None, description=description or None,
        folderId=folder_id or None, lastExecutionAt=iso_ms(epoch_ms(last)) if has_run else None,
        executionCount=int(count),
    )  # fmt: skip


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
    rows = await call.deps.clickhouse.rows(_SQL.replace("{only}", ""), params)
    page, has_more = rows[:limit], len(rows) > limit
    next_cursor = None
    if has_more:
        next_cursor = encode_cursor(
            WorkflowsCursor(v=1, project=project_id, after=page[-1][0]), call.deps.cursor_key
        )
    return Page([_workflow(r) for r in page], next_cursor, has_more)


async def get_workflow(call: Call) -> Workflow:
    """One workflow; another project's workflow is 404."""
    params = {"project": call.principal.project_id, "after": "", "limit": 1, "id": call.path("id")}
    rows = await call.deps.clickhouse.rows(_SQL.replace("{only}", _ONE), params)
    if not rows:
        raise NotFound(f"No workflow {call.path('id')} in this project.")
    return _workflow(rows[0])


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
