"""The ingest screen answers exactly as the full `Event` decode does, errors included."""

import msgspec
import pytest

from schemas.events import Event, ExecutionCompleted
from services.api.events import decode_events
from services.api.screening import ScreenedCompleted
from services.common.errors import AppError
from services.common.http import validation_error

BASE = (
    b'{"type":"workflow.execution.completed","executionId":"e1","workflowId":"w1",'
    b'"trigger":"api","level":"info","startedAt":"2026-01-01T12:00:00Z",'
    b'"endedAt":"2026-01-01T12:00:01Z"'
)
ODD_VALUES = [
    b"1e400", b"-1e400", b"[1.5E+0400]", b"1.7976931348623159e308", b"1e-400", b"1e100",
    b"9" * 250, b"1" * 5000, b'"\xff"', b'["\xed\xa0\x80"]', b'{"a":[2e500]}', b'"3e512"',
    b"[ 3e512 ]", b'"\\ud800"', b"[1,]", b"nul", b'{"blocks": 1e400}', b'{"zz": 1e400}',
    b'{"blocks": ["\xff"]}', b'{"zz": "\xff"}', b'"\\u00e9"', b'["a\xc3\xa9", 1e10]', b"-",
    b"[" * 64 + b"]" * 64, b"[]", b"{}", b'"text"', b"true", b"null", b"3", b"[1, {}]",
]  # fmt: skip
FIELDS = ["files", "finalOutput", "traceSpans", "workflowState", "unknown"]


def outcome(raw: bytes) -> tuple[object, ...]:
    try:
        (event,) = decode_events([raw], "events", 1 << 20)
    except AppError as exc:
        return ("error", [(d.field, d.message) for d in exc.details or []])
    except Exception as exc:  # what the full decode raises outside msgspec's errors
        return ("raised", type(exc).__name__, str(exc))
    return ("ok", event.workflowId, event.startedAt)


def full_outcome(raw: bytes) -> tuple[object, ...]:
    """What decode_events answered when it decoded every event in full."""
    try:
        event = msgspec.json.decode(raw, type=Event)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        detail = validation_error(exc).details[0]  # type: ignore[index]
        field = "events[0]" + ("" if detail.field == "body" else f".{detail.field}")
        return ("error", [(field, detail.message)])
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("ok", event.workflowId, event.startedAt)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", ODD_VALUES)
def test_the_screen_accepts_and_refuses_what_the_full_decode_does(field: str, value: bytes) -> None:
    for raw in (
        BASE + b',"' + field.encode() + b'":' + value + b"}",
        BASE + b',"' + field.encode() + b'":' + value + b',"' + field.encode() + b'":[]}',
        BASE + b',"' + field.encode() + b'":[],"' + field.encode() + b'":' + value + b"}",
    ):
        assert outcome(raw) == full_outcome(raw), raw[:120]


def test_plain_events_skip_the_full_decode_and_doubtful_ones_use_it() -> None:
    (plain,) = decode_events([BASE + b',"traceSpans":[{"id":"3e512"}]}'], "", 1 << 20)
    (doubtful,) = decode_events([BASE + b',"finalOutput":[1e100]}'], "", 1 << 20)
    assert isinstance(plain, ScreenedCompleted)
    assert isinstance(doubtful, ExecutionCompleted)
