"""Structured logging, one stream per process: JSON lines when stderr is not a terminal, readable
lines on one.

structlog writes the project's own lines. The standard library's loggers (aiokafka, faust, mode,
aiohttp) and Python's warnings go through structlog's `ProcessorFormatter` with the same
renderer, so every line of a process, the alert engine's faust worker included, has one format
with `level`, `event` and `timestamp`. Those libraries are heard from WARNING up whatever the
level: their per-step chatter stays off, and a process tells what it does in its own words.
"""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

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


class _StreamHandler(logging.StreamHandler[TextIO]):
    """The root logger's handler installed by `configure_logging` (replaced when called again)."""


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's loggers to `stream` (stderr) at `level`."""
    out = sys.stderr if stream is None else stream
    tty = out.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
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
        if tty
        else structlog.BytesLoggerFactory(file=out.buffer),
        cache_logger_on_first_use=True,
    )
    handler = _StreamHandler(out)
    handler.setFormatter(stdlib_formatter(tty))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StreamHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Third-party libraries log through the standard library; keep them quiet but visible.
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)
