"""One log stream: the renderer follows the terminal, and the standard library's loggers and
Python's warnings come out in the same format as structlog's own lines."""

import asyncio
import io
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import structlog

from services.common.log import Lines, configure_logging, info_line, renderer, stdlib_formatter


class Stream(io.TextIOWrapper):
    """A stderr stand-in that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__(io.BytesIO(), write_through=True)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def lines(self) -> list[str]:
        self.flush()
        raw = self.buffer
        assert isinstance(raw, io.BytesIO)
        return raw.getvalue().decode().splitlines()


@pytest.fixture
def restored() -> Iterator[None]:
    """Put structlog and the root logger back as they were after the test configures them."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def record(name: str, level: int, message: str, *args: Any) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_the_renderer_is_json_off_a_terminal_and_readable_on_one() -> None:
    assert isinstance(renderer(True), structlog.dev.ConsoleRenderer)
    line = renderer(False)(None, "info", {"event": "api.listening", "level": "info", "port": 1})
    assert msgspec.json.decode(line) == {"event": "api.listening", "level": "info", "port": 1}


def test_a_library_record_renders_like_a_structlog_line() -> None:
    entry = record("aiokafka.conn", logging.WARNING, "Unable to connect to %s", "node 1")
    line = stdlib_formatter(False).format(entry)
    decoded = msgspec.json.decode(line)
    assert decoded["event"] == "Unable to connect to node 1"
    assert (decoded["level"], decoded["logger"]) == ("warning", "aiokafka.conn")
    assert decoded["timestamp"].endswith("Z")
    readable = stdlib_formatter(True).format(entry)
    assert "Unable to connect to node 1" in readable and not readable.startswith("{")


def test_an_exception_of_a_library_record_stays_on_its_json_line() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        entry = record("faust", logging.ERROR, "Agent crashed")
        entry.exc_info = sys.exc_info()
    decoded = msgspec.json.decode(stdlib_formatter(False).format(entry))
    assert decoded["event"] == "Agent crashed" and "ValueError: broken" in decoded["exception"]


@pytest.mark.usefixtures("restored")
def test_off_a_terminal_every_line_of_a_process_is_json() -> None:
    stream = Stream(tty=False)
    configure_logging("info", stream)
    structlog.get_logger("test").info("logsink.batch", records=3)
    logging.getLogger("aiokafka").warning("Heartbeat failed")
    logging.getLogger("faust").info("[^Worker]: Starting...")  # below WARNING: left out
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old call", DeprecationWarning, stacklevel=1)
    entries = [msgspec.json.decode(line) for line in stream.lines()]
    assert [(e["level"], e.get("logger")) for e in entries] == [
        ("info", None), ("warning", "aiokafka"), ("warning", "py.warnings"),
    ]  # fmt: skip
    assert entries[0]["event"] == "logsink.batch" and entries[0]["records"] == 3
    assert entries[1]["event"] == "Heartbeat failed"
    assert "DeprecationWarning: an old call" in entries[2]["event"]


@pytest.mark.usefixtures("restored")
def test_on_a_terminal_lines_are_readable_and_a_second_configuration_replaces_the_first() -> None:
    configure_logging("info", Stream(tty=False))
    stream = Stream(tty=True)
    configure_logging("debug", stream)
    assert sum(type(h).__name__ == "_StreamHandler" for h in logging.getLogger().handlers) == 1
    structlog.get_logger("test").debug("dispatcher.started", group="g")
    logging.getLogger("mode").debug("[^Worker]: Starting...")  # libraries: WARNING and above
    logging.getLogger("mode").warning("Timer woke up too late")
    lines = stream.lines()
    assert len(lines) == 2 and not any(line.startswith("{") for line in lines)
    assert "dispatcher.started" in lines[0] and "Timer woke up too late" in lines[1]


async def test_lines_of_one_turn_are_written_together_at_its_end_in_order() -> None:
    stream = io.BytesIO()
    lines = Lines(stream)
    for n in range(3):
        lines.write(b"%d\n" % n)
    assert stream.getvalue() == b""  # not before the turn ends
    await asyncio.sleep(0)
    assert stream.getvalue() == b"0\n1\n2\n"
    lines.write(b"3\n")
    lines.flush()  # as before a standard library record, or at exit
    assert stream.getvalue() == b"0\n1\n2\n3\n"


@pytest.mark.usefixtures("restored")
async def test_a_request_line_reads_like_a_structlog_line_and_keeps_its_place() -> None:
    stream = Stream(tty=False)
    configure_logging("info", stream)
    structlog.get_logger("test").info("api.listening", port=1)
    info_line("http.request", {"request_id": "r1", "status": 200})
    logging.getLogger("aiohttp").warning("Unclosed connection")  # written after the two above
    entries = [msgspec.json.decode(line) for line in stream.lines()]
    assert [e["event"] for e in entries] == ["api.listening", "http.request", "Unclosed connection"]
    assert list(entries[1]) == ["request_id", "status", "event", "level", "timestamp"]
    assert list(entries[0])[-3:] == ["event", "level", "timestamp"]


@pytest.mark.usefixtures("restored")
def test_request_lines_are_left_out_above_info() -> None:
    stream = Stream(tty=False)
    configure_logging("warning", stream)
    info_line("http.request", {"status": 200})
    assert stream.lines() == []
