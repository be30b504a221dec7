"""Logging setup: structlog JSON lines on stdout for journald, colour on a TTY.

Events carry bound context (`bus=`, `device=`); components log transitions, not repetitions.
The standard library's logging (paho, pymodbus, bleak, aiosqlite, asyncio's "exception in
callback") goes through the same renderer, so every line on a non-TTY stream is one JSON
object (`logger` names the library); library loggers are kept at warning except at `debug`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = ("debug", "info", "warning", "error")


def debugging(log: Any) -> bool:
    """Whether `log` writes debug lines: hot paths ask once and skip building the line."""
    enabled = getattr(log, "is_enabled_for", None)
    return bool(enabled(logging.DEBUG)) if enabled is not None else False


class _SharedStream(logging.Handler):
    """The stdlib's lines written through structlog's PrintLogger for the same stream, so both
    take one lock: a library logging from a worker thread (aiosqlite at debug) can never
    splice its line into the middle of ours, which journald would store as garbage."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.out = structlog.PrintLogger(stream)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.out.msg(self.format(record))
        except Exception:  # as logging.StreamHandler: a broken log line never raises
            self.handleError(record)


def setup(level: str = "info", *, json: bool | None = None, stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger once, at process start."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    handler = _SharedStream(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *processors],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Library chatter (paho's every PUBLISH) only when a technician asks for debug.
    root.setLevel(logging.DEBUG if numeric <= logging.DEBUG else max(numeric, logging.WARNING))


def get(**context: Any) -> Any:
    return structlog.get_logger().bind(**context)
