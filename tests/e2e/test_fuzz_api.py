"""API fuzzing: every operation of the committed OpenAPI document against a running stack.

Schemathesis generates valid and invalid requests from docs/openapi.json; every answer must be
documented, never a 5xx, and its body must match the documented schema. Deterministic (fixed
seed, derandomized) and bounded (a fixed number of examples per operation).
"""

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.processes import ROOT, Stack, running_stack

EXAMPLES = 50
# Rate limits are tested elsewhere; here every request should reach its handler.
PLANS = '{"enterprise": {"apiPerMinute": 1000000, "apiBurst": 1000000}}'
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

schemathesis.serializer.alias("application/x-ndjson", "text/plain")  # lines of JSON, as text
config = SchemathesisConfig.from_dict({"seed": 20261206, "generation": {"max-examples": EXAMPLES}})
schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json", config=config)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own, with rate limits out of the way."""
    with running_stack(tmp_path_factory.mktemp("fuzz") / "data", {"CC_PLANS": PLANS}) as running:
        yield running


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_documented(case, fuzz_stack: Stack) -> None:
    token = fuzz_stack.admin_token if case.path.startswith("/admin/") else fuzz_stack.api_key
    case.call_and_validate(
        base_url=fuzz_stack.base_url,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=30,
    )
