"""Child services the tests and benchmarks start: the project's own commands, each with the
environment of a service (data directory, ports, broker, log level) and a log file of its own."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from msgspec import Struct

from services.common.processes import free_port
from tests import external

ROOT = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).with_name("codecourier"))
# A test chooses its own broker and ClickHouse (see tests.external); a developer's exported ones
# must not leak in.
CHOSEN_BY_THE_TEST = ("CC_KAFKA_BOOTSTRAP", "CC_CLICKHOUSE_URL")


def service_env(
    data_dir: Path,
    *,
    bootstrap: str | None = None,
    http_port: int | None = None,
    kafka_port: int | None = None,
    log_level: str | None = "warning",
    settings: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a child service: this run's own, then the service's settings."""
    env = {name: value for name, value in os.environ.items() if name not in CHOSEN_BY_THE_TEST}
    env["CC_DATA_DIR"] = str(data_dir)
    chosen = {
        "CC_KAFKA_BOOTSTRAP": bootstrap,
        "CC_HTTP_PORT": http_port,
        "CC_KAFKA_PORT": kafka_port,
        "CC_LOG_LEVEL": log_level,
    }
    env |= {name: str(value) for name, value in chosen.items() if value is not None}
    return env | dict(settings or {})


def start_service(
    command: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    append: bool = False,
    own_session: bool = False,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` from the repository root with `env`, its output going to `log_path`."""
    with log_path.open("ab" if append else "wb") as log:
        return subprocess.Popen(
            list(command),
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
            preexec_fn=preexec_fn,
        )


def wait_for_file(
    path: Path, process: subprocess.Popen[bytes], timeout_s: float = 60
) -> dict[str, str]:
    """Wait for a JSON file a child process writes when it is ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before it was ready")
        if path.exists():
            return dict(json.loads(path.read_text()))
        time.sleep(0.05)
    raise TimeoutError(f"{path} did not appear within {timeout_s} s")


class Stack(Struct):
    """A running `codecourier up`: where it listens and the credentials it printed."""

    base_url: str
    admin_token: str
    project_id: str
    api_key: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    kafka_bootstrap: str = ""


def start_stack(
    data_dir: Path, extra_env: dict[str, str] | None = None, command: list[str] | None = None
) -> Stack:
    """Start `codecourier up` (or `command`) on free ports and wait until it is ready (on the
    Kafka cluster and ClickHouse database of `data_dir` under the container profile)."""
    kafka_port = free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    chosen = dict(extra_env or {})
    if services := external.active():
        bootstrap = services.kafka(str(data_dir))
        chosen |= {"CC_KAFKA_BOOTSTRAP": bootstrap,
                   "CC_CLICKHOUSE_URL": services.clickhouse(str(data_dir))}  # fmt: skip
    env = service_env(data_dir, http_port=free_port(), kafka_port=kafka_port, settings=chosen)
    log_path = data_dir.parent / f"{data_dir.name}.log"
    process = start_service(command or [CLI, "up"], env, log_path, own_session=True)
    creds = wait_for_file(data_dir / "local.json", process)
    return Stack(
        creds["baseUrl"],
        creds["adminToken"],
        creds["projectId"],
        creds["apiKey"],
        data_dir,
        process,
        bootstrap,
    )


def stop_stack(stack: Stack) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if stack.process.poll() is None:
        stack.process.send_signal(signal.SIGTERM)
        try:
            stack.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(stack.process.pid, signal.SIGKILL)
            stack.process.wait()


@contextmanager
def running_stack(data_dir: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """A stack for the length of a `with` block: a module's own, with settings of its own."""
    stack = start_stack(data_dir, extra_env)
    try:
        yield stack
    finally:
        stop_stack(stack)
