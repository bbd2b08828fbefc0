"""Route: `POST /api/v1/events`: validate, rate limit, put on Kafka, then answer 202."""

import asyncio

import msgspec
from aiokafka.errors import KafkaError
from msgspec import UNSET, Struct, UnsetType

from schemas import topics
from schemas.api import ErrorDetail
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
    Unavailable,
    UnsupportedMediaType,
)
from services.common.http import validation_error
from services.common.ratelimit import Bucket

MAX_EVENTS = 1000
RECORD_BYTES = 512 * 1024  # well under Kafka's default 1 MB message limit
MAX_REPORTED_ERRORS = 50
_event_decoder = msgspec.json.Decoder(Event)
_record_encoder = msgspec.json.Encoder()


Checked = Event | screening.ScreenedCompleted


class Accepted(Struct, frozen=True):
    """How many events were put on the log."""

    accepted: int


class _Envelope(Struct):
    events: list[msgspec.Raw] | UnsetType = UNSET


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
        if not isinstance(event, ExecutionStarted) and event.endedAt < event.startedAt:
            errors.append(
                ErrorDetail(
                    field=_field(prefix, index, "endedAt"), message="Must not be before startedAt."
                )
            )
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


async def _limit(call: Call, key: KeyRecord, events: list[Checked]) -> None:
    """Take every bucket the request needs, or none: a refusal gives back what was taken."""
    limits = call.deps.settings.plan(key.plan)
    ingest = Bucket(
        per_minute=limits.api_per_minute * limits.ingest_multiplier,
        burst=limits.api_burst * limits.ingest_multiplier,
    )
    needs = [(f"ingest:{key.project_id}", ingest, len(events), "Ingest")]
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
    taken: list[tuple[str, Bucket, int]] = []
    for name, bucket, cost, what in needs:
        decision = await call.deps.limiter.take(name, bucket, cost)
        if name.startswith("ingest:"):
            call.request["ratelimit"] = decision
        if not decision.allowed:
            for done_name, done_bucket, done_cost in taken:
                refund = await call.deps.limiter.take(done_name, done_bucket, -done_cost)
                if done_name.startswith("ingest:"):
                    call.request["ratelimit"] = refund
            raise RateLimited(
                f"{what} limit of {decision.limit_per_minute} per minute exceeded; "
                f"retry in {decision.retry_after_s} s.",
                decision.retry_after_s,
            )
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
    raw = await call.request.read()
    raws, prefix = split_body(raw, call.request.content_type)
    events = decode_events(raws, prefix, call.deps.settings.max_event_bytes)
    await _limit(call, key, events)
    received = now_ms(call.deps.clock)
    retention = call.deps.settings.plan(key.plan).retention_days
    producer = call.deps.producer
    try:
        futures = [
            await producer.send(
                topics.EXECUTIONS,
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
                key=topic_key(key.project_id, workflow_id),
            )
            for workflow_id, group in group_by_workflow(raws, events)
        ]
        await asyncio.gather(*futures)
    except (KafkaError, OSError) as exc:
        raise Unavailable(f"The event log is unavailable ({type(exc).__name__}); retry.") from exc
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
