"""One composition root: Settings alone reads the environment, the Kafka adapter alone makes
Kafka clients, route handlers never see the driver, and the wiring builds the services."""

import ast
from pathlib import Path

from services import wiring
from services.common.config import Settings
from services.common.workers import SinkConfig

SERVICES = Path(__file__).resolve().parents[2] / "services"
KAFKA_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}


def modules() -> list[tuple[str, ast.Module]]:
    """Every module of services/ with its path relative to services/."""
    return [
        (str(path.relative_to(SERVICES)), ast.parse(path.read_text(), str(path)))
        for path in sorted(SERVICES.rglob("*.py"))
    ]


def names_used(tree: ast.Module) -> set[str]:
    """Every attribute or name read in a module (`os.environ` gives `environ`)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.ImportFrom):
            found.update(alias.name for alias in node.names)
    return found


def calls(tree: ast.Module) -> set[str]:
    """The names of the callables a module calls directly."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            found.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return found


def imported(tree: ast.Module) -> set[str]:
    """The modules a module imports."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_only_settings_read_the_environment() -> None:
    # The all-in-one runner still passes its environment on to the services it starts.
    allowed = {"common/config.py", "supervisor.py"}
    readers = {
        name
        for name, tree in modules()
        if names_used(tree) & {"environ", "getenv", "environb"} and name not in allowed
    }
    assert readers == set()


def test_only_the_kafka_adapter_makes_kafka_clients() -> None:
    makers = {name for name, tree in modules() if calls(tree) & KAFKA_CLIENTS}
    assert makers <= {"common/kafka.py", "common/kafkaclients.py"}


def test_route_handlers_do_not_import_the_kafka_driver() -> None:
    drivers = {
        name
        for name, tree in modules()
        if name.startswith("api/") and any(m.startswith("aiokafka") for m in imported(tree))
    }
    assert drivers == set()


def settings(**overrides: object) -> Settings:
    """Settings for building services without starting them."""
    fields: dict[str, object] = {
        "data_dir": Path("unused"),
        "clickhouse_url": "",
        "database_url": "",
        "secret_key": "unit-test-secret-key-0123456789abcdef",
    }
    return Settings(**(fields | overrides))  # type: ignore[arg-type]


def test_the_log_sink_gets_its_configured_scope_unless_given_another() -> None:
    configured = settings(logsink=SinkConfig(flush_s=0.1, dedup_scope="1:"))
    sink = wiring.log_sink(configured, "127.0.0.1:9", None)  # type: ignore[arg-type]
    assert sink.config == SinkConfig(flush_s=0.1, dedup_scope="1:")
    assert sink.kafka.bootstrap == "127.0.0.1:9"
    scoped = wiring.log_sink(configured, "127.0.0.1:9", None, "42:")  # type: ignore[arg-type]
    assert scoped.config == SinkConfig(flush_s=0.1, dedup_scope="42:")


async def test_the_delivery_context_links_to_the_local_api_unless_told_otherwise() -> None:
    async with wiring.delivery_context(settings(http_port=8181)) as context:
        assert context.public_base_url == "http://127.0.0.1:8181"
        assert context.timeout_s == 30.0 and not context.http.closed
        session = context.http
    assert session.closed
    told = settings(public_base_url="https://cc.example.com")
    async with wiring.delivery_context(told) as context:
        assert context.public_base_url == "https://cc.example.com"
