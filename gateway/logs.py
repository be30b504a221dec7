"""Logging setup: structlog JSON lines on stdout for journald, colour on a TTY.

Events carry bound context (`bus=`, `device=`); components log transitions, not repetitions.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


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
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Library loggers (pymodbus, bleak, aiosqlite) go through the same stream, quieter.
    logging.basicConfig(level=logging.WARNING, stream=stream, format="%(name)s: %(message)s")


def get(**context: Any) -> Any:
    return structlog.get_logger().bind(**context)
