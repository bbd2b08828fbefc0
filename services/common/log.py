"""Structured logging, one stream per process: JSON lines when stderr is not a terminal, readable
lines on one.

structlog writes the project's own lines. The standard library's loggers (aiokafka, faust, mode,
aiohttp) and Python's warnings go through structlog's `ProcessorFormatter` with the same
renderer, so every line of a process, the alert engine's faust worker included, has one format
with `level`, `event` and `timestamp`. Those libraries are heard from WARNING up whatever the
level: their per-step chatter stays off, and a process tells what it does in its own words.
"""

import asyncio
import atexit
import logging
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, BinaryIO, TextIO

import msgspec
import structlog

from services.common.clock import iso_ms, now_ms

_encoder = msgspec.json.Encoder(enc_hook=repr)


def _json_line(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> bytes:
    # msgspec straight to bytes: a log line per request must stay cheap.
    return _encoder.encode(event)


def _json_text(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> str:
    # A logging.Formatter returns text; the same JSON as `_json_line`.
    return _encoder.encode(event).decode()


def _timestamp(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # The contract's millisecond ISO format, with strftime cached per second.
    event["timestamp"] = iso_ms(now_ms())
    return event


def renderer(tty: bool) -> structlog.types.Processor:
    """The last processor of structlog's own lines: readable on a terminal, JSON bytes off one."""
    return structlog.dev.ConsoleRenderer() if tty else _json_line


def stdlib_formatter(tty: bool) -> logging.Formatter:
    """A formatter that renders the standard library's records as structlog renders its own."""
    last: structlog.types.Processor = structlog.dev.ConsoleRenderer() if tty else _json_text
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            _timestamp,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            last,
        ],
    )


class Lines:
    """JSON lines on their way to a binary stream, written once per turn of the event loop.

    An API process writes a line per request, and a write per line was a system call per
    request; the lines of one turn go out as one write at its end instead. Off the event loop's
    thread (or with none running) a line is written at once; `flush` runs before a standard
    library record is written and at exit, so lines keep their order and none is left behind.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._pending: list[bytes] = []
        self._lock = threading.RLock()  # a signal handler that logs must not deadlock

    def write(self, line: bytes) -> None:
        """Write `line` (ending in a newline) at the end of this turn."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop in this thread: at once, after what waits
            with self._lock:
                self._pending.append(line)
                self._write_pending()
            return
        with self._lock:
            if not self._pending:
                loop.call_soon(self.flush)
            self._pending.append(line)

    def flush(self) -> None:
        """Write every pending line now."""
        with self._lock:
            self._write_pending()

    def _write_pending(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            self.stream.write(b"".join(lines))
            self.stream.flush()


class _LineLogger:
    """structlog's logger off a terminal: each rendered line goes to `Lines`."""

    def __init__(self, lines: Lines) -> None:
        self._lines = lines

    def msg(self, message: bytes) -> None:
        """Write one rendered line."""
        self._lines.write(message + b"\n")

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _Fast:
    """Where `info_line` writes: set by `configure_logging` off a terminal at info or below."""

    lines: Lines | None = None


def info_line(event: str, fields: dict[str, Any]) -> None:
    """An info line with `fields`, as structlog would render it (the same keys in the same
    order) but without its processor chain: for the line written per request. `fields` is
    taken over."""
    lines = _Fast.lines
    if lines is None:  # on a terminal, or info is filtered out: structlog decides
        structlog.get_logger("codecourier.http").info(event, **fields)
        return
    fields["event"] = event
    fields["level"] = "info"
    fields["timestamp"] = iso_ms(now_ms())
    lines.write(_encoder.encode(fields) + b"\n")


class _StreamHandler(logging.StreamHandler[TextIO]):
    """The root logger's handler installed by `configure_logging` (replaced when called again):
    pending structlog lines are written before each of its records."""

    lines: Lines | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Write what structlog has pending, then the record."""
        if self.lines is not None:
            self.lines.flush()
        super().emit(record)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's loggers to `stream` (stderr) at `level`."""
    out = sys.stderr if stream is None else stream
    tty = out.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    lines = None if tty else Lines(out.buffer)
    if lines is not None:
        atexit.register(lines.flush)
    _Fast.lines = lines if numeric <= logging.INFO else None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            renderer(tty),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out)
        if lines is None
        else (lambda *_args: _LineLogger(lines)),
        cache_logger_on_first_use=True,
    )
    handler = _StreamHandler(out)
    handler.lines = lines
    handler.setFormatter(stdlib_formatter(tty))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StreamHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Third-party libraries log through the standard library; keep them quiet but visible.
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
