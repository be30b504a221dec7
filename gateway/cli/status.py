"""`gateway status`: what a technician needs at a glance over SSH.

Reads the outbox file read-only (rows per lane, oldest waiting reading, drops) and the
daemon's `status.json` beside it (uplink state, unavailable devices, disk-full flag).
Exit 0 when the daemon reported within the last 30 s, 3 when it did not (not running).
Never writes anything.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

from gateway.config import loader as config_mod
from gateway.errors import ConfigError
from gateway.outbox import inspect

STALE_AFTER = 30.0


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _show_outbox(store: Path, now: float) -> None:
    try:
        box = inspect.summary(store)
    except sqlite3.Error as exc:
        print(f"outbox   {store}: cannot read ({exc})")
        return
    if box is None:
        print(f"outbox   {store}: not created yet")
        return
    print(f"outbox   {store}  {box.rows} rows waiting, file {box.file_bytes / 1e6:.1f} MB")
    for name in sorted(box.lanes):
        lane = box.lanes[name]
        print(f"  {name:<10} {lane.rows:>9} rows, oldest {_age(now - lane.oldest_ts)} ago")
    drops = {k: v for k, v in box.dropped.items() if v}
    if drops:
        print("  dropped  " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
    if box.dead_letters:
        print(
            f"  dead letters {box.dead_letters} (rows the uplink can never send: table dead_letter)"
        )
    print(f"  last seq {box.last_seq}")


def main(config_path: str) -> int:
    try:
        cfg = config_mod.load(config_path)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 1
    store = Path(cfg.store.path)
    now = time.time()
    print(f"gateway {cfg.site.id}  config {config_path}")
    _show_outbox(store, now)
    status_file = store.with_name("status.json")
    try:
        status = json.loads(status_file.read_text())
    except (OSError, json.JSONDecodeError):
        print("daemon   no status file: not running (or never ran with this config)")
        return 3
    age = now - status["time"]
    uplink = status.get("uplink") or {}
    link = "connected" if uplink.get("connected") else "DOWN"
    clock = "synced" if status["clock_synced"] else "NOT synced"
    print(
        f"daemon   pid {status['pid']}, reported {_age(age)} ago; uplink {link} to "
        f"{cfg.uplink.host}:{cfg.uplink.port}; clock {clock}"
    )
    if status["outbox"].get("disk_full"):
        print(f"  DISK FULL: {status['outbox']['memory_rows']} rows held in memory")
    if status.get("devices_unavailable"):
        print("  unavailable: " + ", ".join(status["devices_unavailable"]))
    if age > STALE_AFTER:
        print("daemon   status is stale: the daemon is not running")
        return 3
    return 0
