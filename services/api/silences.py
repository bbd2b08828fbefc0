"""Routes: `/api/v1/silences`: create, list, read and end silences, written with the outbox.

A silence is broadcast to every partition of the compacted `silences` topic, like a
subscription; ending one publishes its ended version (kept, not tombstoned, so that a replay of
the topics decides as the live engine did). Thirty days after a silence is over, it is deleted
and tombstoned (`services.api.purge`). A project has at most 100 silences not yet over
and creates at most 1,000 in any 24 hours, so that what the engine keeps stays bounded.
"""

import msgspec
from msgspec import Struct

from schemas import topics
from schemas.silences import Matchers, Schedule, Silence, SilenceBody, SilenceRecord, SilenceState
from services.api.deps import Deps
from services.api.outbox import publish_now
from services.api.routing import CURSOR, Call, Page, Route, choice_param, int_param, limit_param
from services.common.clock import iso_ms, now_ms, to_ms
from services.common.controlplane import OutboxMessage, SilenceRow
from services.common.cursor import decode_cursor, encode_cursor
from services.common.errors import Conflict, InvalidCursor, InvalidInput, NotFound
from services.common.ids import new_id
from services.common.kafka import check_record_size
from services.common.silences import active_until, next_starts_at, state_of

MAX_UNEXPIRED = 100  # active or pending silences per project
MAX_PER_DAY = 1000  # silences a project creates in any 24 hours
SCAN_BATCH = 200
STATES: tuple[SilenceState, ...] = ("active", "pending", "expired")
_json = msgspec.json.Encoder()
_matchers = msgspec.json.Decoder(Matchers)
_schedule = msgspec.json.Decoder(Schedule)


class SilencesCursor(Struct, frozen=True):
    """Where a silence listing stopped."""

    v: int
    project: str
    state: str
    after: str


def record(row: SilenceRow) -> SilenceRecord:
    """The `silences` topic record of a row."""
    return SilenceRecord(
        v=1, id=row.id, projectId=row.project_id, version=row.version,
        matchers=_matchers.decode(row.matchers_json), createdAtMs=row.created_at_ms,
        startsAtMs=row.starts_at_ms, endsAtMs=row.ends_at_ms,
        schedule=_schedule.decode(row.schedule_json) if row.schedule_json else None,
        untilMs=row.until_ms, endedAtMs=row.ended_at_ms,
    )  # fmt: skip


def view(row: SilenceRow, at_ms: int) -> Silence:
    """A silence as the API shows it, with its state at `at_ms`."""
    r = record(row)
    return Silence(
        id=row.id, state=state_of(r, at_ms), matchers=r.matchers, comment=row.comment,
        createdBy=row.created_by, createdAt=iso_ms(row.created_at_ms),
        startsAt=iso_ms(row.starts_at_ms), endsAt=_iso(row.ends_at_ms), schedule=r.schedule,
        until=_iso(row.until_ms), endedAt=_iso(row.ended_at_ms),
        nextStartsAt=_iso(next_starts_at(r, at_ms)), activeUntil=_iso(active_until(r, at_ms)),
    )  # fmt: skip


def _iso(ms: int | None) -> str | None:
    return iso_ms(ms) if ms is not None else None


async def _announce(deps: Deps, row: SilenceRow) -> list[OutboxMessage]:
    """Outbox messages broadcasting a silence version to every partition."""
    partitions = sorted(await deps.producer.partitions_for(topics.SILENCES))
    value = _json.encode(record(row))
    check_record_size(value, row.id.encode(), "silence")
    return [OutboxMessage(topics.SILENCES, f"{row.id}/{p}", p, value) for p in partitions]


def _creator(call: Call) -> str:
    """Who creates: a signed-in user's email, or the key's name and id."""
    key = call.principal
    return key.name if call.session is not None else f"{key.name} ({key.id})"


def _times(body: SilenceBody, at: int) -> tuple[int, int | None, int | None]:
    """(starts, ends, until) in ms, checked against each other and the request time."""
    starts = to_ms(body.startsAt) if body.startsAt is not None else at
    ends = to_ms(body.endsAt) if body.endsAt is not None else None
    until = to_ms(body.until) if body.until is not None else None
    if ends is not None and ends <= max(starts, at):
        raise InvalidInput.field("endsAt", "Must be after startsAt and in the future.")
    if until is not None and until <= max(starts, at):
        raise InvalidInput.field("until", "Must be after startsAt and in the future.")
    return starts, ends, until


async def create(call: Call) -> Silence:
    """Create a silence (one-off or weekly)."""
    body: SilenceBody = call.body
    deps, at = call.deps, now_ms(call.deps.clock)
    starts, ends, until = _times(body, at)
    row = SilenceRow(
        id=new_id("sil_"), project_id=call.principal.project_id,
        matchers_json=_json.encode(body.matchers).decode(), comment=body.comment,
        created_by=_creator(call)[:300], created_at_ms=at, starts_at_ms=starts, ends_at_ms=ends,
        schedule_json=_json.encode(body.schedule).decode() if body.schedule else None,
        until_ms=until, ended_at_ms=None, version=1,
    )  # fmt: skip
    messages = await _announce(deps, row)
    refused = await deps.controlplane.create_silence(row, messages, MAX_UNEXPIRED, MAX_PER_DAY)
    if refused == "unexpired":
        raise Conflict(f"A project has at most {MAX_UNEXPIRED} active or pending silences.")
    if refused == "per_day":
        raise Conflict(f"A project creates at most {MAX_PER_DAY} silences in 24 hours.")
    await publish_now(deps)
    return view(row, at)


async def _load(call: Call) -> SilenceRow:
    row = await call.deps.controlplane.get_silence(call.principal.project_id, call.path("id"))
    if row is None:
        raise NotFound(f"No silence {call.path('id')} in this project.")
    return row


async def get_one(call: Call) -> Silence:
    """One silence with its current state."""
    return view(await _load(call), now_ms(call.deps.clock))


async def end(call: Call) -> Silence:
    """End a silence now (an expired one is answered as it is)."""
    row, at = await _load(call), now_ms(call.deps.clock)
    if state_of(record(row), at) == "expired":
        return view(row, at)
    ended = msgspec.structs.replace(row, ended_at_ms=at, version=row.version + 1)
    if not await call.deps.controlplane.end_silence(ended, await _announce(call.deps, ended), at):
        raise Conflict("The silence changed meanwhile; read it again and retry.")
    await publish_now(call.deps)
    return view(ended, at)


async def list_all(call: Call) -> Page:
    """The project's silences in id order, optionally in one state."""
    project, deps = call.principal.project_id, call.deps
    limit = int_param(call.query, "limit", 50, 1, 100)
    state = call.query.get("state", "")
    if state and state not in STATES:
        raise InvalidInput.field("state", f"Must be one of {', '.join(STATES)}.")
    after = None
    if token := call.query.get("cursor"):
        cursor = decode_cursor(token, SilencesCursor, deps.cursor_key)
        if cursor.project != project or cursor.state != state:
            raise InvalidCursor("The cursor does not belong to this listing.")
        after = cursor.after
    at = now_ms(deps.clock)
    rows = await _scan(call, state, after, at, limit + 1)
    page, has_more = rows[:limit], len(rows) > limit
    next_cursor = None
    if has_more:
        last = SilencesCursor(v=1, project=project, state=state, after=page[-1].id)
        next_cursor = encode_cursor(last, deps.cursor_key)
    return Page([view(r, at) for r in page], next_cursor, has_more)


async def _scan(
    call: Call, state: str, after: str | None, at: int, wanted: int
) -> list[SilenceRow]:
    """Up to `wanted` rows in `state` after `after`, read in batches (state is computed)."""
    controlplane, project = call.deps.controlplane, call.principal.project_id
    unexpired = at if state in ("active", "pending") else None  # at most MAX_UNEXPIRED rows
    found: list[SilenceRow] = []
    while len(found) < wanted:
        batch = await controlplane.list_silences(project, SCAN_BATCH, after, unexpired)
        found += [r for r in batch if not state or state_of(record(r), at) == state]
        if len(batch) < SCAN_BATCH:
            break
        after = batch[-1].id
    return found[:wanted]


_ID = "/api/v1/silences/{id}"
ROUTES = [
    Route("POST", "/api/v1/silences", create, "Create a silence or maintenance window",
          "silences", scope="notifications:write", body=SilenceBody, response=Silence,
          status=201, conflict="the project already has 100 active or pending silences, or "
          "created 1000 in the last 24 hours"),
    Route("GET", "/api/v1/silences", list_all, "List silences", "silences",
          scope="notifications:read", response=Silence, paged=True,
          params=(choice_param("state", STATES, "only silences in this state"),
                  limit_param(100, 50), CURSOR)),
    Route("GET", _ID, get_one, "One silence", "silences", scope="notifications:read",
          response=Silence),
    Route("DELETE", _ID, end, "End a silence now", "silences", scope="notifications:write",
          response=Silence, conflict="the silence changed meanwhile; read it again and retry"),
]  # fmt: skip
