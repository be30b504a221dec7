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
from typing import Any

from gateway.config import loader as config_mod
from gateway.errors import ConfigError
from gateway.model import Lane

STALE_AFTER = 30.0


def outbox_summary(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"exists": False}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        lanes = {
            Lane(lane).name.lower(): (count, oldest)
            for lane, count, oldest in db.execute(
                "SELECT lane, count(*), min(ts) FROM outbox GROUP BY lane"
            )
        }
        meta = dict(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()
    return {"exists": True, "lanes": lanes, "meta": meta, "bytes": path.stat().st_size}


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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
    try:
        box = outbox_summary(store)
    except sqlite3.Error as exc:
        print(f"outbox   {store}: cannot read ({exc})")
        box = {"exists": False}
    if box["exists"]:
        total = sum(c for c, _ in box["lanes"].values())
        print(f"outbox   {store}  {total} rows waiting, file {box['bytes'] / 1e6:.1f} MB")
        for lane, (count, oldest) in sorted(box["lanes"].items()):
            print(f"  {lane:<10} {count:>9} rows, oldest {_age(now - oldest)} ago")
        drops = {k[8:]: v for k, v in box["meta"].items() if k.startswith("dropped_") and v}
        if drops:
            print("  dropped  " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))
        print(f"  last seq {box['meta'].get('seq_hwm', 0)}")
    else:
        print(f"outbox   {store}: not created yet")
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
