"""External services the tests may run against instead of the embedded ones.

By default a test chooses the embedded broker and chDB itself. Under `make test-containers` the
`tests.containers` plugin registers a `Services` here that starts Apache Kafka and gives out
ClickHouse server databases; the fixtures and `tests.processes` then hand their URLs to the
services they start as `CC_KAFKA_BOOTSTRAP` and `CC_CLICKHOUSE_URL`, and nothing else changes.
"""

from typing import Protocol


class Services(Protocol):
    """Where external services come from."""

    def kafka(self, owner: str) -> str:
        """The bootstrap address of the Kafka cluster of `owner` (a data directory, say): empty
        when first asked for, the same one when asked again."""

    def clickhouse(self, owner: str) -> str:
        """The URL of the ClickHouse database of `owner`, likewise."""


_services: list[Services] = []


def register(services: Services) -> None:
    """Use `services` for the rest of the session."""
    _services[:] = [services]


def active() -> Services | None:
    """The registered external services, or None when the tests run on the embedded ones."""
    return _services[0] if _services else None
