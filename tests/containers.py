"""The container profile (`make test-containers`, which sets CC_TEST_CONTAINERS=1 and loads this
plugin): the integration and end-to-end suites against Apache Kafka (Confluent's image, KRaft)
and a ClickHouse server that testcontainers starts, through `CC_KAFKA_BOOTSTRAP` and
`CC_CLICKHOUSE_URL`, instead of the embedded broker and chDB.

Each stack's data directory gets a Kafka of its own (the topic names are fixed, so two stacks on
one cluster would read each other's records; a restart on the same directory finds its cluster
again) and a database of its own on one ClickHouse server; the session's `broker` fixture gets
one more Kafka. Tests that open chDB on a directory of their own keep doing so. Without a Docker
engine every test is skipped with the reason; `make test` never loads this plugin.
"""

import os
import secrets
from typing import Any

import pytest

from tests import external

ENABLED = os.environ.get("CC_TEST_CONTAINERS") == "1"
KAFKA_IMAGE = os.environ.get("CC_TEST_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")
CLICKHOUSE_IMAGE = os.environ.get("CC_TEST_CLICKHOUSE_IMAGE", "clickhouse/clickhouse-server:24.8")
PROBLEM = pytest.StashKey[str]()


class Containers:
    """Kafka clusters and ClickHouse databases in containers, started on first use."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.clusters: dict[str, str] = {}
        self.databases: dict[str, str] = {}
        self.server: Any = None

    def kafka(self, owner: str) -> str:
        if owner not in self.clusters:
            from testcontainers.community.kafka import KafkaContainer

            container = KafkaContainer(KAFKA_IMAGE).with_kraft().start()
            self.started.append(container)
            self.clusters[owner] = container.get_bootstrap_server()
        return self.clusters[owner]

    def clickhouse(self, owner: str) -> str:
        if owner not in self.databases:
            import clickhouse_connect

            server = self._server()
            host, port = server.get_container_host_ip(), server.get_exposed_port(8123)
            name = f"cc_{secrets.token_hex(6)}"
            client = clickhouse_connect.get_client(
                host=host, port=int(port), username=server.username, password=server.password
            )
            client.command(f"CREATE DATABASE {name}")
            client.close()
            login = f"{server.username}:{server.password}"
            self.databases[owner] = f"http://{login}@{host}:{port}/{name}"
        return self.databases[owner]

    def _server(self) -> Any:
        if self.server is None:
            from testcontainers.community.clickhouse import ClickHouseContainer

            self.server = ClickHouseContainer(CLICKHOUSE_IMAGE).start()
            self.started.append(self.server)
        return self.server

    def stop(self) -> None:
        for container in reversed(self.started):
            container.stop()


def docker_problem() -> str:
    """Why containers cannot run here ("" when a Docker engine answers)."""
    try:
        import docker

        docker.from_env().ping()
    except Exception as exc:  # any failure means no engine to run containers on
        return f"no Docker engine reachable for the container profile ({type(exc).__name__}: {exc})"
    return ""


def pytest_configure(config: pytest.Config) -> None:
    if not ENABLED:
        return
    problem = docker_problem()
    config.stash[PROBLEM] = problem
    if not problem:
        external.register(Containers())


def pytest_report_header(config: pytest.Config) -> str | None:
    if not ENABLED:
        return None
    problem = config.stash.get(PROBLEM, "")
    return f"containers: {problem or f'{KAFKA_IMAGE}, {CLICKHOUSE_IMAGE}'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if problem := config.stash.get(PROBLEM, ""):
        for item in items:
            item.add_marker(pytest.mark.skip(reason=problem))


def pytest_unconfigure(config: pytest.Config) -> None:
    services = external.active()
    if isinstance(services, Containers):
        services.stop()
