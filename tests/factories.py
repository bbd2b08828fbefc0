"""Builders of the execution events tests send: as the API takes them (JSON objects), as the
consumers decode them (Structs), and the `executions` topic record that carries them.

Each builder makes a valid, ordinary event; a test names only the fields it is about.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import msgspec

from schemas.events import Cost, ExecutionCompleted

CENT: Mapping[str, float] = MappingProxyType({"total": 0.01})
DEFAULT_DURATION_MS = 1500


def iso(moment: datetime) -> str:
    """A moment as runtimes spell it: RFC 3339 in UTC to the millisecond, with a Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def completed(
    execution_id: str,
    workflow_id: str = "wf-1",
    *,
    ended: datetime | None = None,
    duration_ms: int = DEFAULT_DURATION_MS,
    cost: Any = CENT,
    **fields: Any,
) -> dict[str, Any]:
    """A completed-execution event as the API takes it: ended a second ago unless `ended`,
    after `duration_ms`, costing a cent unless `cost` says otherwise (None: no cost at all)."""
    ended = ended or datetime.now(UTC) - timedelta(seconds=1)
    event: dict[str, Any] = {
        "type": "workflow.execution.completed", "executionId": execution_id,
        "workflowId": workflow_id, "trigger": "api", "level": "info",
        "startedAt": iso(ended - timedelta(milliseconds=duration_ms)), "endedAt": iso(ended),
    }  # fmt: skip
    if cost is not None:
        event["cost"] = dict(cost) if isinstance(cost, Mapping) else cost
    return event | fields


def started(
    execution_id: str,
    workflow_id: str = "wf-1",
    *,
    at: datetime | None = None,
    mode: str = "async",
    **fields: Any,
) -> dict[str, Any]:
    """A started-execution event as the API takes it, started when a default `completed` one
    did unless `at`."""
    at = at or datetime.now(UTC) - timedelta(seconds=1, milliseconds=DEFAULT_DURATION_MS)
    event = {
        "type": "workflow.execution.started", "executionId": execution_id,
        "workflowId": workflow_id, "trigger": "api", "mode": mode, "startedAt": iso(at),
    }  # fmt: skip
    return event | fields


def execution(
    execution_id: str,
    workflow_id: str = "wf-1",
    *,
    ended: datetime | None = None,
    duration_ms: int = 100,
    cost: float | Cost | None = None,
    **fields: Any,
) -> ExecutionCompleted:
    """A completed execution as the consumers decode it: ended now unless `ended`, after
    `duration_ms` (also reported as totalDurationMs), costing `cost` dollars if given."""
    ended = ended or datetime.now(UTC)
    base: dict[str, Any] = {
        "executionId": execution_id, "workflowId": workflow_id, "trigger": "api",
        "level": "info", "startedAt": ended - timedelta(milliseconds=duration_ms),
        "endedAt": ended, "totalDurationMs": duration_ms,
        "cost": Cost(total=cost) if isinstance(cost, float | int) else cost,
    }  # fmt: skip
    return ExecutionCompleted(**(base | fields))


def execution_record(
    project: str,
    *events: ExecutionCompleted | Mapping[str, Any],
    received_at_ms: int = 0,
    retention_days: int = 30,
    **fields: Any,
) -> bytes:
    """The `executions` record of one workflow's events, as the API writes it."""
    record = {
        "kind": "execution", "v": 2, "projectId": project, "receivedAtMs": received_at_ms,
        "retentionDays": retention_days, "events": list(events), **fields,
    }  # fmt: skip
    return msgspec.json.encode(record)
