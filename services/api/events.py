"""Route: `POST /api/v1/events`: validate, rate limit, put on Kafka, then answer 202."""

import msgspec
from msgspec import UNSET, Struct, UnsetType

from schemas import topics
from schemas.api import Accepted, ErrorDetail
from schemas.bounds import MAX_JSON_DEPTH, dotted, too_deep_at, too_deep_member
from schemas.events import (
    Event,
    EventBatch,
    ExecutionRecord,
    ExecutionStarted,
    topic_key,
)
from services.api import screening
from services.api.routing import Call, Route
from services.common.clock import now_ms
from services.common.controlplane import KeyRecord
from services.common.errors import (
    InvalidInput,
    PayloadTooLarge,
    RateLimited,
    UnsupportedMediaType,
)
from services.common.http import validation_error
from services.common.kafka import check_record_size
from services.common.ratelimit import Bucket

MAX_EVENTS = 1000
RECORD_BYTES = 512 * 1024  # well under Kafka's default 1 MB message limit
MAX_REPORTED_ERRORS = 50
_event_decoder = msgspec.json.Decoder(Event)
_record_encoder = msgspec.json.Encoder()


Checked = Event | screening.ScreenedCompleted


class _Envelope(Struct):
    events: list[msgspec.Raw] | UnsetType = UNSET


EVENT_DEPTH = MAX_JSON_DEPTH + 1  # the event object, then its free-form fields
BATCH_DEPTH = EVENT_DEPTH + 2  # `{"events": [...]}` around the events
DEPTH_MESSAGE = f"JSON nests deeper than {MAX_JSON_DEPTH} levels."


def _too_deep(field: str) -> InvalidInput:
    return InvalidInput(
        f"Invalid request: {field}: {DEPTH_MESSAGE}", [ErrorDetail(field, DEPTH_MESSAGE)]
    )


def _member(path: list[str | int]) -> str:
    return path[0] if path and isinstance(path[0], str) else ""


def check_body_depth(raw: bytes) -> None:
    """Refuse nesting beyond the bounds, naming the field, without recursing into the body.

    A batch nests two levels more than the events it holds.
    """
    path = too_deep_at(raw, EVENT_DEPTH)
    if path is None:
        return
    if len(path) > 1 and path[0] == "events" and isinstance(path[1], int):
        path = too_deep_at(raw, BATCH_DEPTH)
        if path is not None:
            raise _too_deep(dotted(path[:3]))
        return
    raise _too_deep(_member(path) or "body")


def split_body(raw: bytes, content_type: str) -> tuple[list[bytes], str]:
    """The raw events of a body and the field prefix for errors (`events` or ``)."""
    if content_type == "application/x-ndjson":
        lines = [line for line in raw.split(b"\n") if line.strip()]
        if not lines:
            raise InvalidInput.field("body", "No events in the NDJSON body.")
        return lines, "events"
    if content_type != "application/json":
        raise UnsupportedMediaType(
            "Content-Type must be application/json or application/x-ndjson, "
            f"got {content_type or 'none'}."
        )
    try:
        envelope = msgspec.json.decode(raw, type=_Envelope)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise validation_error(exc) from exc
    except RecursionError:  # far too deep; each event's depth is checked below in any case
        check_body_depth(raw)
        raise _too_deep("body") from None
    if isinstance(envelope.events, UnsetType):
        return [raw], ""
    if not envelope.events:
        raise InvalidInput.field("events", "Send at least one event.")
    return [bytes(item) for item in envelope.events], "events"


def _field(prefix: str, index: int, path: str) -> str:
    base = f"{prefix}[{index}]" if prefix else ""
    return f"{base}.{path}".strip(".") if path else (base or "body")


def decode_events(raws: list[bytes], prefix: str, max_event_bytes: int) -> list[Checked]:
    """Check every event; any failure rejects the whole request with every detail.

    Events are screened (blobs kept raw) and decoded in full only when the screen cannot vouch
    for the full decode's answer: accepted events and errors are exactly those of `Event`.
    """
    if len(raws) > MAX_EVENTS:
        raise InvalidInput.field(prefix or "events", f"At most {MAX_EVENTS} events per request.")
    events: list[Checked] = []
    errors: list[ErrorDetail] = []
    for index, raw in enumerate(raws):
        if len(raw) > max_event_bytes:
            raise PayloadTooLarge(
                f"{_field(prefix, index, '')} is {len(raw)} bytes; the limit is {max_event_bytes}.",
                [ErrorDetail(field=_field(prefix, index, ""), message="Event too large.")],
            )
        if (raw.count(b"[") + raw.count(b"{") > EVENT_DEPTH) and (
            deep := too_deep_member(raw, EVENT_DEPTH)
        ) is not None:  # the count alone clears nearly every event
            errors.append(ErrorDetail(_field(prefix, index, deep), DEPTH_MESSAGE))
            continue
        try:
            try:
                event = screening.SCREEN.decode(raw)
            except Exception:  # whatever it is, the full decode below raises its own
                event = None
            if event is None or not screening.agrees(event, raw):
                event = _event_decoder.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            detail = validation_error(exc).details[0]  # type: ignore[index]
            path = "" if detail.field == "body" else detail.field
            errors.append(ErrorDetail(field=_field(prefix, index, path), message=detail.message))
            continue
        events.append(event)
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        raise InvalidInput(f"{len(errors)} invalid event(s); first: {shown[0].field}.", shown)
    return events


def execution_buckets(call: Call, plan: str) -> dict[str, Bucket]:
    """The project's sync and async execution buckets."""
    limits = call.deps.settings.plan(plan)
    return {
        "sync": Bucket(per_minute=limits.sync_per_minute, burst=limits.sync_burst),
        "async": Bucket(per_minute=limits.async_per_minute, burst=limits.async_burst),
    }


def ingest_bucket(call: Call, plan: str) -> Bucket:
    """The project's ingest bucket: the plan's API rate times the ingest multiplier."""
    limits = call.deps.settings.plan(plan)
    return Bucket(
        per_minute=limits.api_per_minute * limits.ingest_multiplier,
        burst=limits.api_burst * limits.ingest_multiplier,
    )


async def _take(call: Call, name: str, bucket: Bucket, cost: int, what: str) -> None:
    decision = await call.deps.limiter.take(name, bucket, cost)
    if name.startswith("ingest:"):
        call.request["ratelimit"] = decision
    if not decision.allowed:
        raise RateLimited(
            f"{what} limit of {decision.limit_per_minute} per minute exceeded; "
            f"retry in {decision.retry_after_s} s.",
            decision.retry_after_s,
        )


async def charge_request(call: Call, key: KeyRecord) -> None:
    """One ingest token before the body is read, kept if the body is refused.

    It pays for the request's first event; an invalid, oversized or unadmittable body still
    costs it, so that refused requests are not free.
    """
    await _take(call, f"ingest:{key.project_id}", ingest_bucket(call, key.plan), 1, "Ingest")


async def _limit(call: Call, key: KeyRecord, events: list[Checked]) -> None:
    """Take every bucket the request needs, or none: a refusal gives back what was taken
    (the token of `charge_request` included)."""
    ingest_name = f"ingest:{key.project_id}"
    ingest = ingest_bucket(call, key.plan)
    needs = [(ingest_name, ingest, len(events), "Ingest")]
    buckets = execution_buckets(call, key.plan)
    for mode in ("sync", "async"):
        starts = sum(1 for e in events if isinstance(e, ExecutionStarted) and e.mode == mode)
        if starts:
            needs.append(
                (
                    f"exec:{mode}:{key.project_id}",
                    buckets[mode],
                    starts,
                    f"Workflow execution ({mode})",
                )
            )
    for _name, bucket, cost, what in needs:
        if cost > bucket.burst:  # could never pass: retrying would not help
            raise PayloadTooLarge(
                f"{what} needs {cost} tokens but the plan's bucket holds at most "
                f"{int(bucket.burst)}; split the request."
            )
    needs[0] = (ingest_name, ingest, len(events) - 1, "Ingest")  # one paid up front
    taken: list[tuple[str, Bucket, int]] = [(ingest_name, ingest, 1)]
    for name, bucket, cost, what in needs:
        if cost == 0:
            continue
        try:
            await _take(call, name, bucket, cost, what)
        except RateLimited:
            for done_name, done_bucket, done_cost in taken:
                refund = await call.deps.limiter.take(done_name, done_bucket, -done_cost)
                if done_name.startswith("ingest:"):
                    call.request["ratelimit"] = refund
            raise
        taken.append((name, bucket, cost))


def group_by_workflow(
    raws: list[bytes], events: list[Checked], max_bytes: int = RECORD_BYTES
) -> list[tuple[str, list[msgspec.Raw]]]:
    """Events grouped per workflow in arrival order, each group kept under `max_bytes`."""
    groups: dict[str, list[list[msgspec.Raw]]] = {}
    sizes: dict[str, int] = {}
    for raw, event in zip(raws, events, strict=True):
        chunks = groups.setdefault(event.workflowId, [[]])
        if chunks[-1] and sizes[event.workflowId] + len(raw) > max_bytes:
            chunks.append([])
            sizes[event.workflowId] = 0
        chunks[-1].append(msgspec.Raw(raw))
        sizes[event.workflowId] = sizes.get(event.workflowId, 0) + len(raw)
    return [(workflow, chunk) for workflow, chunks in groups.items() for chunk in chunks]


async def ingest(call: Call) -> Accepted:
    """Accept events once every one of them is acknowledged by the broker."""
    key = call.principal
    await charge_request(call, key)
    raw = await call.request.read()
    raws, prefix = split_body(raw, call.request.content_type)
    events = decode_events(raws, prefix, call.deps.settings.max_event_bytes)
    await _limit(call, key, events)
    received = now_ms(call.deps.clock)
    retention = call.deps.settings.plan(key.plan).retention_days
    records = [
        (
            _record_encoder.encode(
                ExecutionRecord(
                    v=2,
                    projectId=key.project_id,
                    receivedAtMs=received,
                    retentionDays=retention,
                    events=group,
                    plan=key.plan,
                )
            ),
            topic_key(key.project_id, workflow_id),
        )
        for workflow_id, group in group_by_workflow(raws, events)
    ]
    for value, record_key in records:
        check_record_size(value, record_key, "events of one workflow")
    await call.deps.producer.send_all(topics.EXECUTIONS, records)
    return Accepted(accepted=len(events))


ROUTES = [
    Route(
        "POST",
        "/api/v1/events",
        ingest,
        "Report execution events (one, a batch, or NDJSON)",
        "events",
        scope="events:write",
        response=Accepted,
        status=202,
        limited=False,
        doc_body=EventBatch,
    ),
]
