"""`gateway outbox export | import | purge`: the backlog by hand, when a link is dead for weeks.

- `export [--lane L] [--since T] [--until T] [--format jsonl|csv] [-o FILE]` writes the
  queued rows (gateway.outbox.export.FIELDS) to FILE or stdout. Read-only: it runs beside the
  daemon and takes nothing out of the queue; it streams (constant memory); a progress bar
  goes to stderr only when stderr is a terminal. In CSV the value is a JSON literal (`5.2`,
  `true`, `"set"`) so its kind survives; an empty parent is none.
- `import FILE` queues an export (either format) into this box's outbox, to leave through
  its uplink. Rows get fresh local seqs; the table `imported` keeps (origin gateway, origin
  seq) -> local seq, and a row already there is skipped: importing twice queues nothing new.
  The payload carries this box's gateway id and the local seq (every format); the origin is
  in the outbox file only. The whole file is checked before anything is queued.
- `purge --lane L --before T [--yes]` deletes a lane's rows older than T, counted as drops
  (`gateway status` shows them). It asks first on a terminal; without one it needs `--yes`.
Import and purge need the outbox to themselves: stop the daemon first. Times are ISO 8601
(UTC when no offset is given). Exit 0 done, 1 the outbox or the file cannot be used, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from gateway.cli import offline
from gateway.clock import iso
from gateway.model import Lane
from gateway.outbox import export, intake

if TYPE_CHECKING:
    from gateway.outbox.store import Outbox

LANES = [lane.name.lower() for lane in Lane]
_BAR_EVERY = 10_000  # rows between progress bar updates


def add_parsers(actions: Any, config: str) -> None:
    """The three subcommands on `gateway outbox`'s subparsers."""
    e = actions.add_parser("export", help="write the queued rows to a file (non-destructive)")
    e.add_argument("--lane", choices=LANES)
    e.add_argument("--since", type=_time, help="ISO 8601 time: rows stamped at or after it")
    e.add_argument("--until", type=_time, help="ISO 8601 time: rows stamped before it")
    e.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    e.add_argument("-o", "--output", help="file to write (default: stdout)")
    e.add_argument("-c", "--config", default=config, help="config TOML file")
    e.set_defaults(func=cmd_export)
    i = actions.add_parser("import", help="queue an export for this box's uplink (once)")
    i.add_argument("file", help="a file `gateway outbox export` wrote (jsonl or csv)")
    i.add_argument("-c", "--config", default=config, help="config TOML file")
    i.set_defaults(func=cmd_import)
    p = actions.add_parser("purge", help="delete a lane's old rows, counted as drops")
    p.add_argument("--lane", choices=LANES, required=True)
    p.add_argument("--before", type=_time, required=True, help="ISO 8601 time")
    p.add_argument("--yes", action="store_true", help="do not ask (scripts)")
    p.add_argument("-c", "--config", default=config, help="config TOML file")
    p.set_defaults(func=cmd_purge)


def _time(text: str) -> float:
    try:
        return intake.parse_time(text)
    except intake.BadRecord as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lane(name: str | None) -> Lane | None:
    return None if name is None else Lane[name.upper()]


# -- export -------------------------------------------------------------------------------
def _write(rows: Iterator[dict[str, Any]], fmt: str, out: IO[str]) -> int:
    n = 0
    if fmt == "jsonl":
        for rec in rows:
            out.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
        return n
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(export.FIELDS)
    for rec in rows:
        rec["value"] = json.dumps(rec["value"], ensure_ascii=False)
        rec["parent"] = rec["parent"] or ""
        rec["synced"] = "true" if rec["synced"] else "false"
        rec["plausible"] = "true" if rec["plausible"] else "false"
        writer.writerow(rec.values())
        n += 1
    return n


def _progress(rows: Iterator[dict[str, Any]], total: int) -> Iterator[dict[str, Any]]:
    for n, rec in enumerate(rows, 1):
        if n % _BAR_EVERY == 0 or n == total:
            filled = 30 * n // max(total, 1)
            bar = "#" * min(filled, 30) + "-" * max(30 - filled, 0)
            print(f"\r[{bar}] {n}/{total} rows", end="", file=sys.stderr, flush=True)
        yield rec
    print(file=sys.stderr)


def cmd_export(args: argparse.Namespace) -> int:
    cfg = offline.load(args.config)
    if cfg is None:
        return 1
    path, lane = Path(cfg.store.path), _lane(args.lane)
    try:
        gen = export.readings(path, lane, args.since, args.until)
        rows: Iterator[dict[str, Any]] = (export.record(r, cfg.site.id) for r in gen)
        if sys.stderr.isatty():
            rows = _progress(rows, export.count(path, lane, args.since, args.until))
        if args.output is None:
            n = _write(rows, args.format, sys.stdout)
        else:
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                n = _write(rows, args.format, out)
    except sqlite3.Error as exc:
        print(f"{path}: cannot read the outbox ({exc})", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"exported {n} rows from {path}", file=sys.stderr)
    return 0


# -- import -------------------------------------------------------------------------------
def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record in the JSON lines form) of a jsonl or csv export."""
    with open(path, encoding="utf-8", newline="") as f:
        first = f.readline()
        f.seek(0)
        if first.startswith("{") or not first.strip():
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield n, _object(json.loads(line))
            return
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != export.FIELDS:
            raise intake.BadRecord(f"not an export: the header is {first.strip()!r}")
        for n, row in enumerate(reader, 2):
            rec: dict[str, Any] = dict(row)
            rec["seq"] = int(row["seq"]) if row["seq"].isdigit() else row["seq"]
            rec["value"] = json.loads(row["value"])
            rec["parent"] = row["parent"] or None
            for key in ("synced", "plausible"):
                rec[key] = {"true": True, "false": False}.get(row[key], row[key])
            yield n, rec


def _object(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise intake.BadRecord(f"expected a JSON object, got {type(v).__name__}")
    return v


def _origins(path: Path) -> Iterator[intake.Origin]:
    for n, rec in _records(path):
        try:
            yield intake.parse(rec)
        except intake.BadRecord as exc:
            raise intake.BadRecord(f"line {n}: {exc}") from None


def _check(path: Path) -> str | None:
    """The first problem of the file, or None: nothing is queued from a file with one."""
    try:
        for _ in _origins(path):
            pass
    except (intake.BadRecord, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError
        return str(exc)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def cmd_import(args: argparse.Namespace) -> int:
    cfg = offline.load(args.config)
    if cfg is None:
        return 1
    store, path = Path(cfg.store.path), Path(args.file)
    problem = _check(path)
    if problem is not None:
        print(f"{path}: {problem}; nothing queued", file=sys.stderr)
        return 1

    async def take(outbox: Outbox) -> intake.Taken:
        return await intake.take(outbox.db, outbox.allocate, _origins(path))

    result = offline.run(store, take)
    if result is None:
        return 1
    (done,) = result
    taken = f"seq {done.first_seq}..{done.last_seq}" if done.queued else "nothing new"
    print(
        f"{path}: queued {done.queued} rows into {store} ({taken}); "
        f"{done.already} taken by an earlier import"
    )
    return 0


# -- purge --------------------------------------------------------------------------------
async def _purge(outbox: Outbox, lane: Lane, before: float, yes: bool) -> int | None:
    """Rows deleted, or None when the technician said no."""
    from gateway.outbox import purge

    if not yes:
        n = await purge.count(outbox.db, lane, before)
        ask = f"delete {n} {lane.name.lower()} rows stamped before {iso(before)}? [y/N] "
        answer = await asyncio.to_thread(input, ask)
        if answer.strip().lower() not in ("y", "yes"):
            return None
    gone = await purge.purge(outbox.db, lane, before)
    outbox.log.warning(
        "outbox purged by hand", lane=lane.name.lower(), before=iso(before), rows=gone
    )
    return gone


def cmd_purge(args: argparse.Namespace) -> int:
    if not args.yes and not sys.stdin.isatty():
        print("purge deletes rows: confirm with --yes when not on a terminal", file=sys.stderr)
        return 2
    cfg = offline.load(args.config)
    if cfg is None:
        return 1
    store, lane = Path(cfg.store.path), Lane[args.lane.upper()]
    result = offline.run(store, lambda outbox: _purge(outbox, lane, args.before, args.yes))
    if result is None:
        return 1
    (gone,) = result
    if gone is None:
        print("nothing deleted")
        return 0
    print(f"{store}: purged {gone} {args.lane} rows, counted as drops")
    return 0
