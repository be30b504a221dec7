"""The outbox to ourselves: what `gateway outbox salvage | import | purge` share.

`load` reads the config or prints each problem; `run` opens the outbox for this process
alone, runs one piece of work on it and maps the refusals of the store (the daemon holds the
lock, the file or its directory cannot be used) to one printed line. No outbox logic here.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from gateway.config import loader as config_mod
from gateway.errors import ConfigError, StoreLocked, StoreUnusable

if TYPE_CHECKING:
    from gateway.outbox.store import Outbox

T = TypeVar("T")


def load(path: str) -> config_mod.Config | None:
    """The config, or None after printing every problem (path: message)."""
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def run(store: Path, work: Callable[[Outbox], Awaitable[T]]) -> tuple[T] | None:
    """`work`'s result (in a 1-tuple, as it may itself be None), or None after printing why
    the outbox could not be had. Other errors (sqlite3's on a bad input file) propagate."""

    async def opened() -> T:
        # Imported here: the parser is built for every subcommand, the outbox only for these.
        from gateway.outbox.store import Outbox

        async with Outbox.open(store, reserve_bytes=0) as outbox:
            return await work(outbox)

    try:
        return (asyncio.run(opened()),)
    except StoreLocked as exc:
        print(f"{exc.path}: {exc.cause}; stop the daemon first", file=sys.stderr)
    except StoreUnusable as exc:
        print(f"{exc.path}: {exc.cause}", file=sys.stderr)
    return None
