"""`gateway outbox salvage FILE`: re-queue what can still be read from a quarantined outbox.

A damaged outbox is moved aside at start (`outbox.sqlite.corrupt-<time>`, listed by
`gateway status`). This reads every row that can still be read from it and appends them to
the current outbox with new sequence numbers above its high-water mark (lane, device, values
and stamps kept, in their original order). Running it again on the same file re-queues
nothing twice. It needs the outbox to itself: stop the daemon first. The damaged file is
left as it is. Exit 0 when rows were re-queued or none were left to take, 1 when the file
cannot be read at all or the outbox is in use, 2 for usage errors. The other `gateway outbox`
subcommands (export, import, purge) are in gateway.cli.backlog.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli import offline

if TYPE_CHECKING:
    from gateway.outbox.salvage import Salvaged
    from gateway.outbox.store import Outbox


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], config: str) -> None:
    """`gateway outbox salvage FILE [-c CONFIG]` on the main parser's subcommands."""
    p = sub.add_parser(
        "outbox", help="outbox maintenance: salvage a quarantined file; export, import, purge"
    )
    actions = p.add_subparsers(dest="action", required=True)
    s = actions.add_parser("salvage", help="re-queue the readable rows of a quarantined file")
    s.add_argument("file", help="a quarantined outbox file (outbox.sqlite.corrupt-...)")
    s.add_argument("-c", "--config", default=config, help="config TOML file")
    s.set_defaults(func=main)
    from gateway.cli import backlog  # export, import, purge: the backlog by hand

    backlog.add_parsers(actions, config)


def main(args: argparse.Namespace) -> int:
    cfg = offline.load(args.config)
    if cfg is None:
        return 1
    store, damaged = Path(cfg.store.path), Path(args.file)
    if damaged.resolve() == store.resolve():
        print(f"{damaged} is the live outbox, not a quarantined file", file=sys.stderr)
        return 2
    if not damaged.is_file():
        print(f"{damaged}: no such file", file=sys.stderr)
        return 2

    async def salvage(outbox: Outbox) -> Salvaged:
        from gateway.outbox.salvage import requeue

        return await requeue(outbox.db, outbox.allocate, damaged)

    try:
        result = offline.run(store, salvage)
    except sqlite3.Error as exc:
        print(f"{damaged}: nothing can be read from it ({exc})", file=sys.stderr)
        return 1
    if result is None:
        return 1
    (done,) = result
    taken = f"seq {done.first_seq}..{done.last_seq}" if done.requeued else "nothing new"
    print(
        f"{damaged}: re-queued {done.requeued} rows into {store} ({taken}); "
        f"{done.already} taken by an earlier salvage; {done.unreadable} unreadable"
    )
    return 0
