"""Pure pieces of the HTTP edge: timestamps, validation details, the OpenAPI copy."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from schemas.api import CreateKeyBody
from services.api.openapi import build_document, document_bytes
from services.api.table import ROUTES
from services.common import timing
from services.common.clock import iso_ms
from services.common.http import _LATENCY_BUCKETS, HttpMetrics, validation_error

ROOT = Path(__file__).resolve().parents[2]


def test_iso_ms_has_milliseconds_and_z() -> None:
    assert iso_ms(1735734896789) == "2025-01-01T12:34:56.789Z"
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1735734896005) == "2025-01-01T12:34:56.005Z"
    assert iso_ms(-1) == "1969-12-31T23:59:59.999Z"


def test_iso_ms_matches_datetime_for_every_millisecond_and_past_its_cache() -> None:
    def reference(epoch_ms: int) -> str:
        moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"

    second = 1796634712 * 1000
    assert [iso_ms(second + m) for m in range(1000)] == [reference(second + m) for m in range(1000)]
    # More distinct seconds than the cache holds: it is cleared and refilled, never wrong.
    moments = [second + k * 1001 for k in range(10_000)]
    assert [iso_ms(m) for m in moments] == [reference(m) for m in moments]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"name": 1, "scopes": ["*"]}', "name"),
        (b'{"name": "a", "scopes": ["nope"]}', "scopes[0]"),
        (b'{"name": "a"}', "scopes"),
        (b'{"name": "a", "scopes": []}', "scopes"),
        (b"{not json", "body"),
    ],
)
def test_validation_errors_name_the_field(raw: bytes, field: str) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)) as caught:
        msgspec.json.decode(raw, type=CreateKeyBody)
    error = validation_error(caught.value)
    assert error.code == "VALIDATION_ERROR"
    assert error.details is not None
    assert error.details[0].field == field


def test_committed_openapi_document_is_current() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_bytes()
    assert committed == document_bytes(), "run `make openapi` and commit docs/openapi.json"


def test_openapi_lists_every_route_with_its_security() -> None:
    document = build_document(ROUTES)
    assert document["openapi"].startswith("3.1")
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["summary"] == route.summary
        assert str(route.status) in operation["responses"]
        if route.auth == "key":
            assert {"bearer": []} in operation["security"]


def test_generated_request_ids_are_uuid4() -> None:
    import uuid

    from services.common.http import new_request_id

    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in list(ids)[:50]:
        assert uuid.UUID(rid).version == 4
        assert str(uuid.UUID(rid)) == rid


async def test_query_time_counts_against_the_request_that_waited_for_it() -> None:
    timing.add_query(5.0)  # outside any request: counted nowhere

    async def request(seconds: list[float]) -> timing.Spent:
        spent, token = timing.begin()
        try:
            for s in seconds:
                timing.add_query(s)
                await asyncio.sleep(0)  # the other request runs in between
        finally:
            timing.end(token)
        timing.add_query(7.0)  # after the request: not its
        return spent

    one, two = await asyncio.gather(request([0.004, 0.002]), request([0.010]))
    assert (one.queries, round(one.db_s, 6)) == (2, 0.006)
    assert (two.queries, round(two.db_s, 6)) == (1, 0.01)
    assert timing.server_timing(one, 0.0081) == 'db;dur=6.00;desc="2 queries", total;dur=8.10'
    assert timing.server_timing(two, 0.02) == 'db;dur=10.00;desc="1 query", total;dur=20.00'


def test_request_metrics_scrape_as_prometheus_counter_and_histogram_would() -> None:
    """The tallies render as the prometheus client's own Counter and Histogram render the same
    requests (their `_created` samples aside)."""
    observed = [
        ("GET", "/api/v1/whoami", 200, 0.0004),
        ("GET", "/api/v1/whoami", 200, 0.001),  # on a bound: counted in that bound's bucket
        ("GET", "/api/v1/whoami", 429, 0.003),
        ("POST", "/api/v1/events", 202, 0.07),
        ("GET", "/api/v1/logs", 200, 9.0),  # past every bound
        ("GET", "unmatched", 404, 0.0),
    ]
    ours = HttpMetrics()
    registry = CollectorRegistry()
    requests = Counter("cc_http_requests", "HTTP requests by route and status",
                       ["method", "route", "status"], registry=registry)  # fmt: skip
    latency = Histogram("cc_http_request_duration_seconds", "HTTP request latency", ["route"],
                        registry=registry, buckets=_LATENCY_BUCKETS)  # fmt: skip
    for method, route, status, seconds in observed:
        ours.observe(method, route, status, seconds)
        requests.labels(method, route, str(status)).inc()
        latency.labels(route).observe(seconds)

    def samples(text: bytes) -> list[str]:
        return sorted(
            line for line in text.decode().splitlines() if line and "_created" not in line
        )

    assert samples(generate_latest(ours.registry)) == samples(generate_latest(registry))
    assert 'cc_http_requests_total{method="GET",route="/api/v1/whoami",status="200"} 2.0' in (
        generate_latest(ours.registry).decode()
    )
