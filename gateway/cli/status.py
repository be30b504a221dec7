"""`gateway status`: what a technician needs at a glance over SSH.

Reads the outbox file read-only (rows per lane, oldest waiting reading, drops), lists the
quarantined outbox files beside it (each with the `gateway outbox salvage` line to re-queue
it), and reads the daemon's `status.json` in the runtime directory (uplink state,
unavailable devices, disk-full flag). Exit 0 when the daemon is running, 3 when it is not:
it recorded its stop, its pid is gone, or it has not reported for 30 s (hung).
Never writes anything.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from pathlib import Path

from gateway.config import loader as config_mod
from gateway.errors import ConfigError
from gateway.outbox import inspect
from gateway.report import status_path

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


def quarantined(store: Path) -> list[Path]:
    """The outbox files moved aside as damaged, oldest first (not their -wal/-shm)."""
    found = store.parent.glob(f"{store.name}.corrupt-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def _show_quarantined(store: Path) -> None:
    for path in quarantined(store):
        print(f"  QUARANTINED {path} ({path.stat().st_size / 1e6:.1f} MB)")
        print(f"    re-queue what is readable: gateway outbox salvage {path}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process (the daemon runs as `gateway`)
    return True


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
    _show_quarantined(store)
    status_file = status_path(cfg.store.runtime_dir)
    try:
        status = json.loads(status_file.read_text())
    except (OSError, json.JSONDecodeError):
        print(f"daemon   no status file {status_file}: not running (or never ran)")
        return 3
    if status.get("stopped"):
        print(f"daemon   stopped {_age(now - status['stopped'])} ago (pid {status['pid']})")
        _show_daemon_outbox(status)
        return 3
    if not _alive(status["pid"]):
        print(f"daemon   pid {status['pid']} is gone: stopped without a word (killed, crashed)")
        return 3
    age = now - status["time"]
    uplink = status.get("uplink") or {}
    link = "connected" if uplink.get("connected") else "DOWN"
    clock = "synced" if status["clock_synced"] else "NOT synced"
    print(
        f"daemon   pid {status['pid']}, reported {_age(age)} ago; uplink {link} to "
        f"{cfg.uplink.host}:{cfg.uplink.port}; clock {clock}"
    )
    _show_daemon_outbox(status)
    if status.get("devices_unavailable"):
        print("  unavailable: " + ", ".join(status["devices_unavailable"]))
    if age > STALE_AFTER:
        print("daemon   status is stale: the daemon is not running")
        return 3
    return 0


def _show_daemon_outbox(status: dict[str, object]) -> None:
    box = status.get("outbox")
    if isinstance(box, dict) and box.get("disk_full"):
        print(f"  DISK FULL: {box.get('memory_rows')} rows held in memory")
