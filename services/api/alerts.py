"""Routes: `/api/v1/alerts`: alert episodes as a resource, and their acknowledgement.

An alert is one episode of one rule for one (subscription, workflow), stored in ClickHouse by the
log sink from the engine's `alert-events` (table `alerts`, the latest event of each alert) and
acknowledgements from `alert-acks` (table `alert_acks`). The list is newest first by the time
the alert fired, keyset-paged with a signed cursor bound to its filters.

Acknowledging writes a control-plane row and, in the same transaction, outbox records that
broadcast the acknowledgement to every partition of the compacted `alert-acks` topic, which the
log sink stores. The outbox writes each first as a marker on the same partition of `executions`
(see `services.api.outbox`), and the route answers only once it has published them: the
executions sent after the answer come after the markers, and the engine sends no repeat
notification for them. Acknowledging twice answers the first acknowledgement and publishes
nothing more (but what is still pending, should the first answer have left it to the relay).
"""

import hashlib
from datetime import datetime
from typing import Any, get_args

import msgspec
from msgspec import Struct

from schemas import topics
from schemas.alerts import AckRecord, AlertView, Rule
from services.api.deps import Deps
from services.api.logs import epoch_ms
from services.api.outbox import publish_now
from services.api.routing import (
    CURSOR,
    Call,
    Page,
    Route,
    choice_param,
    int_param,
    limit_param,
    text_param,
    text_param_doc,
)
from services.common.clock import iso_ms, now_ms
from services.common.controlplane import AckRow, OutboxMessage
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import InvalidCursor, InvalidInput, NotFound
from services.common.kafka import check_record_size

STATES = ("firing", "resolved")
RULES: tuple[str, ...] = get_args(Rule)
NARROW = "filter by state, workflowId, subscriptionId or rule"
_json = msgspec.json.Encoder()

# One row per alert (FINAL keeps each alert's latest event); filters are fixed fragments. The
# page's acknowledgements are read by a second query (`_ACKS`) on its ids only.
_SELECT = """
SELECT id, subscription_id, workflow_id, rule, state, silenced, reason, observed, threshold,
       execution_id, fired_at, last_notified_at, resolved_at, notification_count
FROM alerts FINAL
WHERE project_id = {{project:String}} {where}
ORDER BY fired_at DESC, id DESC
LIMIT {{limit:UInt32}}
"""
_ACKS = """
SELECT alert_id, min(acknowledged_at) AS first_at, argMin(acknowledged_by, acknowledged_at) AS by
FROM alert_acks
WHERE project_id = {project:String} AND alert_id IN {ids:Array(String)}
GROUP BY alert_id
"""
_FILTERS = {
    "id": "AND id = {id:String}",
    "state": "AND state = {state:String}",
    "workflowId": "AND workflow_id = {workflowId:String}",
    "subscriptionId": "AND subscription_id = {subscriptionId:String}",
    "rule": "AND rule = {rule:String}",
    "after": "AND (fired_at, id) < (fromUnixTimestamp64Milli({at:Int64}, 'UTC'), {after:String})",
}


class AlertRow(Struct):
    """A row of `_SELECT`: an alert as of its latest event."""

    id: str
    subscription_id: str
    workflow_id: str
    rule: Rule
    state: str
    silenced: int
    reason: str
    observed: float
    threshold: float
    execution_id: str | None
    fired_at: datetime
    last_notified_at: datetime | None
    resolved_at: datetime | None
    notification_count: int


class AckedRow(Struct):
    """A row of `_ACKS`: an alert's (first) acknowledgement."""

    alert_id: str
    first_at: datetime
    by: str


class AlertsCursor(Struct, frozen=True):
    """Where an alert listing stopped: (firedAt ms, alert id), newest first; `h` binds it to
    the project and filters."""

    v: int
    h: str
    fired: int
    id: str


def select_sql(filters: list[str]) -> str:
    """The query for some of `_FILTERS`, from fixed fragments only."""
    return _SELECT.format(where=" ".join(_FILTERS[f] for f in filters))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_ms(epoch_ms(moment))


def _number(value: float) -> int | float:
    """A figure as JavaScript renders it (integral values without a fraction)."""
    return int(value) if value.is_integer() else value


def view(row: AlertRow, stored: AckedRow | None = None, ack: AckRow | None = None) -> AlertView:
    """An alert as the API shows it, with its acknowledgement as stored or, just written, from
    the control plane (`ack`)."""
    acked_at = _iso(stored.first_at) if stored is not None else None
    acked_by = stored.by if stored is not None else None
    if ack is not None:
        acked_at, acked_by = iso_ms(ack.acknowledged_at_ms), ack.acknowledged_by
    return AlertView(
        id=row.id, subscriptionId=row.subscription_id, workflowId=row.workflow_id,
        rule=row.rule, state="resolved" if row.state == "resolved" else "firing",
        acknowledged=acked_at is not None, silenced=bool(row.silenced), reason=row.reason,
        observed=_number(row.observed), threshold=_number(row.threshold),
        firedAt=iso_ms(epoch_ms(row.fired_at)), lastNotifiedAt=_iso(row.last_notified_at),
        resolvedAt=_iso(row.resolved_at), notificationCount=row.notification_count,
        executionId=row.execution_id, acknowledgedAt=acked_at, acknowledgedBy=acked_by,
    )  # fmt: skip


def _binding(*parts: str | None) -> str:
    return hashlib.blake2b(_json.encode(parts), digest_size=8).hexdigest()


async def _rows(call: Call, filters: list[str], params: dict[str, Any]) -> list[AlertRow]:
    limits = call.deps.settings.query_limits_for("alerts")
    return await call.deps.clickhouse.records(AlertRow, select_sql(filters), params, limits, NARROW)


async def _acks(call: Call, rows: list[AlertRow]) -> dict[str, AckedRow]:
    """The stored acknowledgements of some alerts of the project, by alert id."""
    if not rows:
        return {}
    limits = call.deps.settings.query_limits_for("alerts")
    params = {"project": call.principal.project_id, "ids": [r.id for r in rows]}
    found = await call.deps.clickhouse.records(AckedRow, _ACKS, params, limits, NARROW)
    return {a.alert_id: a for a in found}


async def list_alerts(call: Call) -> Page:
    """The project's alerts, newest first, optionally filtered."""
    project, deps = call.principal.project_id, call.deps
    limit = int_param(call.query, "limit", 50, 1, 100)
    state, rule = call.query.get("state"), call.query.get("rule")
    if state is not None and state not in STATES:
        raise InvalidInput.field("state", "Must be firing or resolved.")
    if rule is not None and rule not in RULES:
        raise InvalidInput.field("rule", f"Must be one of {', '.join(RULES)}.")
    params: dict[str, Any] = {"project": project, "limit": limit + 1, "state": state,
                              "rule": rule}  # fmt: skip
    for name in ("workflowId", "subscriptionId"):
        params[name] = text_param(call.query, name)
    filters = [f for f in ("state", "workflowId", "subscriptionId", "rule") if params[f]]
    binding = _binding(project, state, params["workflowId"], params["subscriptionId"], rule)
    if token := call.query.get("cursor"):
        cursor = decode_cursor(token, AlertsCursor, deps.cursor_key)
        if cursor.h != binding:
            raise InvalidCursor("The cursor was issued for another project or filter.")
        params.update({"at": cursor.fired, "after": cursor.id})
        filters.append("after")
    rows = await _rows(call, filters, params)
    page, has_more = rows[:limit], len(rows) > limit
    next_cursor = None
    if has_more:
        last = AlertsCursor(v=1, h=binding, fired=epoch_ms(page[-1].fired_at), id=page[-1].id)
        next_cursor = encode_cursor(last, deps.cursor_key)
    acks = await _acks(call, page)
    return Page([view(r, acks.get(r.id)) for r in page], next_cursor, has_more)


async def _load(call: Call) -> AlertRow:
    alert_id = call.path("id")
    params = {"project": call.principal.project_id, "id": alert_id, "limit": 1}
    rows = await _rows(call, ["id"], params) if alert_id.startswith("alr_") else []
    if not rows:
        raise NotFound(f"No alert {alert_id[:64]} in this project.")
    return rows[0]


async def get_one(call: Call) -> AlertView:
    """One alert."""
    alert = await _load(call)
    return view(alert, (await _acks(call, [alert])).get(alert.id))


def _actor(call: Call) -> str:
    """Who acknowledges: a signed-in user's email, or the key's name and id."""
    key = call.principal
    return key.name if call.session is not None else f"{key.name} ({key.id})"


async def _announce(deps: Deps, row: AckRow) -> list[OutboxMessage]:
    """Outbox messages broadcasting an acknowledgement to every partition of `alert-acks`."""
    record = AckRecord(v=1, alertId=row.alert_id, projectId=row.project_id,
                       acknowledgedAtMs=row.acknowledged_at_ms,
                       acknowledgedBy=row.acknowledged_by)  # fmt: skip
    value = _json.encode(record)
    check_record_size(value, row.alert_id.encode(), "acknowledgement")
    partitions = sorted(await deps.producer.partitions_for(topics.ALERT_ACKS))
    return [OutboxMessage(topics.ALERT_ACKS, f"{row.alert_id}/{p}", p, value) for p in partitions]


async def acknowledge(call: Call) -> AlertView:
    """Acknowledge an alert: no repeat notification of it any more; its resolve still comes."""
    alert, deps = await _load(call), call.deps
    ack = await deps.controlplane.get_ack(call.principal.project_id, alert.id)
    if ack is None:
        row = AckRow(
            project_id=call.principal.project_id, alert_id=alert.id,
            acknowledged_at_ms=now_ms(deps.clock), acknowledged_by=_actor(call)[:300],
        )  # fmt: skip
        ack = await deps.controlplane.acknowledge(row, await _announce(deps, row))
    # Also when acknowledged already (concurrently, or by a request whose publishing failed):
    # the answer says the markers are on `executions`, so it comes after them.
    await publish_now(deps)
    return view(alert, None, ack)


_ID = "/api/v1/alerts/{id}"
ROUTES = [
    Route("GET", "/api/v1/alerts", list_alerts, "List alerts, newest first", "alerts",
          scope="notifications:read", response=AlertView, paged=True,
          params=(choice_param("state", STATES, "only alerts in this state"),
                  text_param_doc("workflowId", "only this workflow's alerts"),
                  text_param_doc("subscriptionId", "only this subscription's alerts"),
                  choice_param("rule", RULES, "only alerts of this rule"),
                  limit_param(100, 50), CURSOR)),
    Route("GET", _ID, get_one, "One alert", "alerts", scope="notifications:read",
          response=AlertView),
    Route("POST", f"{_ID}/acknowledge", acknowledge, "Acknowledge an alert (idempotent)",
          "alerts", scope="notifications:write", response=AlertView),
]  # fmt: skip
