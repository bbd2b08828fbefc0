"""Structured logging: JSON lines when not on a terminal, readable lines on one."""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog

from services.common.clock import iso_ms, now_ms

_encoder = msgspec.json.Encoder(enc_hook=repr)


def _json_line(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> bytes:
    # msgspec straight to bytes: a log line per request must stay cheap.
    return _encoder.encode(event)


def _timestamp(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # The contract's millisecond ISO format, with strftime cached per second.
    event["timestamp"] = iso_ms(now_ms())
    return event


def configure_logging(level: str = "info") -> None:
    """Route structlog (and the standard library's loggers) to stderr at `level`."""
    tty = sys.stderr.isatty()
    renderer: structlog.types.Processor = structlog.dev.ConsoleRenderer() if tty else _json_line
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr)
        if tty
        else structlog.BytesLoggerFactory(file=sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
    # Third-party libraries log through the standard library; keep them quiet but visible.
    logging.basicConfig(
        level=max(numeric, logging.WARNING),
        stream=sys.stderr,
        format="%(name)s %(levelname)s %(message)s",
    )
