"""`gateway status`: what a technician needs at a glance over SSH, or a script needs as JSON.

Reads the outbox file read-only (rows and the oldest waiting reading per lane, drops), lists
the quarantined outbox files beside it (each with the `gateway outbox salvage` line to re-queue
it), the free space of the outbox's filesystem, and asks the running daemon over its monitor
socket (gateway.monitor; current even when no file can be written), or else reads its
`status.json` in the runtime directory: uplink state (while down: since when, why, the next
try), each unavailable device with its last error and since when, the disk-full flag.
`--json` prints the same as one JSON object (`report`); `--watch` repeats it every
`--interval` seconds until Ctrl-C, redrawing the screen on a terminal and printing a new
block each time otherwise (with `--json`: one object per line). Exit 0 when the daemon is
running, 3 when it is not: it recorded its stop, its pid is gone, or it has not reported for
30 s (hung); 1 on a bad config. Never writes anything but its output.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from gateway.config import loader as config_mod
from gateway.errors import ConfigError
from gateway.monitor import ask, socket_path
from gateway.outbox import inspect
from gateway.report import status_path

STALE_AFTER = 30.0
CLEAR = "\x1b[H\x1b[2J"  # cursor home, erase screen (ECMA-48)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def quarantined(store: Path) -> list[Path]:
    """The outbox files moved aside as damaged, oldest first (not their -wal/-shm)."""
    found = store.parent.glob(f"{store.name}.corrupt-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process (the daemon runs as `gateway`)
    return True


def _outbox(store: Path, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {"path": str(store)}
    try:
        box = inspect.summary(store)
    except sqlite3.Error as exc:
        return {**out, "state": "unreadable", "error": str(exc)}
    if box is None:
        return {**out, "state": "missing"}
    lanes = {
        name: {"rows": lane.rows, "oldest_ts": lane.oldest_ts, "age_s": now - lane.oldest_ts}
        for name, lane in sorted(box.lanes.items())
    }
    return {
        **out,
        "state": "ok",
        "rows": box.rows,
        "file_bytes": box.file_bytes,
        "lanes": lanes,
        "dropped": {k: v for k, v in sorted(box.dropped.items()) if v},
        "dead_letters": box.dead_letters,
        "last_seq": box.last_seq,
    }


def _disk(store: Path) -> dict[str, Any]:
    """Free space of the filesystem the outbox lives on (its nearest existing directory)."""
    where = store.parent
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return {"path": str(where), "error": str(exc)}
    return {"path": str(where), "free_bytes": usage.free, "total_bytes": usage.total}


def live(path: Path, timeout: float = 3.0) -> dict[str, Any] | None:
    """The running daemon's report, asked over its monitor socket; None when no daemon
    answers there (not running, not ours to open, or hung)."""
    try:
        with ask(path, {"op": "status"}, timeout) as sock, sock.makefile("rb") as stream:
            answer = json.loads(stream.readline(1 << 22))
    except (OSError, ValueError):
        return None
    status = answer.get("status") if isinstance(answer, dict) else None
    return status if isinstance(status, dict) else None


def _daemon(status_file: Path, now: float, sock: Path | None = None) -> dict[str, Any]:
    """The daemon's state, asked over its socket when it answers (`source` "socket"), else
    from its status file ("file"); `state` is running|stopped|gone|stale|none."""
    status: dict[str, Any] | None = live(sock) if sock is not None else None
    source = "socket" if status is not None else "file"
    if status is None:
        try:
            status = json.loads(status_file.read_text())
        except (OSError, json.JSONDecodeError):
            return {"state": "none", "status_file": str(status_file)}
    assert status is not None
    if not status.get("stopped") and not _alive(status["pid"]):
        return {"state": "gone", "status_file": str(status_file), "pid": status["pid"]}
    box = status.get("outbox")
    if not isinstance(box, dict):
        box = {}
    uplink = status.get("uplink") or {}
    down = status.get("devices_down")
    if not isinstance(down, dict):  # a daemon from before reasons were kept
        down = {d: {"reason": "", "since": None} for d in status.get("devices_unavailable", [])}
    if status.get("stopped"):
        state = "stopped"
    elif now - status["time"] > STALE_AFTER:
        state = "stale"
    else:
        state = "running"
    return {
        "state": state,
        "source": source,
        "status_file": str(status_file),
        "pid": status.get("pid"),
        "reported": status.get("time"),
        "stopped": status.get("stopped"),
        "clock_synced": status.get("clock_synced"),
        "uplink": {  # the uplink's counters as the daemon reported them, and its state
            **uplink,
            "connected": bool(uplink.get("connected")),
            "down_since": uplink.get("down_since"),
            "down_reason": uplink.get("down_reason"),
            "next_try": uplink.get("next_try"),
            "holding_until": uplink.get("holding_until"),
        },
        "devices_unavailable": down,
        "disk_full": bool(box.get("disk_full")),
        "memory_rows": box.get("memory_rows", 0),
        "readings_emitted": status.get("readings_emitted"),
        # ingest/s against uplink/s and when the outbox is full (gateway.outbox.pressure)
        "pressure": status.get("pressure") if isinstance(status.get("pressure"), dict) else None,
        "values_implausible": status.get("values_implausible"),
    }


def report(cfg: config_mod.Config, config_path: str) -> dict[str, Any]:
    """Everything `gateway status` shows, as one JSON-able object; `exit` is the exit code."""
    now = time.time()
    store = Path(cfg.store.path)
    runtime_dir = cfg.store.runtime_dir
    daemon = _daemon(status_path(runtime_dir), now, socket_path(runtime_dir))
    if "uplink" in daemon:  # known only from a daemon's report
        daemon["uplink"].update(host=cfg.uplink.host, port=cfg.uplink.port)
    return {
        "gateway": cfg.site.id,
        "config": config_path,
        "time": now,
        "outbox": _outbox(store, now),
        "quarantined": [{"path": str(p), "bytes": p.stat().st_size} for p in quarantined(store)],
        "disk": _disk(store),
        "daemon": daemon,
        "exit": 0 if daemon["state"] == "running" else 3,
    }


def render(rep: dict[str, Any]) -> list[str]:
    """The text form of `report(...)`, one line per item."""
    now = rep["time"]
    lines = [f"gateway {rep['gateway']}  config {rep['config']}"]
    lines += _render_outbox(rep["outbox"], now)
    for q in rep["quarantined"]:
        lines.append(f"  QUARANTINED {q['path']} ({q['bytes'] / 1e6:.1f} MB)")
        lines.append(f"    re-queue what is readable: gateway outbox salvage {q['path']}")
    disk = rep["disk"]
    if "error" in disk:
        lines.append(f"disk     {disk['path']}: cannot read ({disk['error']})")
    else:
        lines.append(
            f"disk     {disk['free_bytes'] / 1e6:.0f} MB free of "
            f"{disk['total_bytes'] / 1e6:.0f} MB at {disk['path']}"
        )
    return lines + _render_daemon(rep["daemon"], now)


def _render_outbox(box: dict[str, Any], now: float) -> list[str]:
    if box["state"] == "unreadable":
        return [f"outbox   {box['path']}: cannot read ({box['error']})"]
    if box["state"] == "missing":
        return [f"outbox   {box['path']}: not created yet"]
    lines = [
        f"outbox   {box['path']}  {box['rows']} rows waiting, file {box['file_bytes'] / 1e6:.1f} MB"
    ]
    for name, lane in box["lanes"].items():
        lines.append(f"  {name:<10} {lane['rows']:>9} rows, oldest {_age(lane['age_s'])} ago")
    if box["dropped"]:
        lines.append("  dropped  " + ", ".join(f"{k} {v}" for k, v in box["dropped"].items()))
    if box["dead_letters"]:
        lines.append(
            f"  dead letters {box['dead_letters']} "
            "(rows the uplink can never send: table dead_letter)"
        )
    lines.append(f"  last seq {box['last_seq']}")
    return lines


def _render_daemon(d: dict[str, Any], now: float) -> list[str]:
    state = d["state"]
    if state == "none":
        return [f"daemon   no status file {d['status_file']}: not running (or never ran)"]
    if state == "gone":
        return [f"daemon   pid {d['pid']} is gone: stopped without a word (killed, crashed)"]
    lines = []
    if state == "stopped":
        lines.append(f"daemon   stopped {_age(now - d['stopped'])} ago (pid {d['pid']})")
    else:
        up = d["uplink"]
        link = "connected" if up["connected"] else "DOWN"
        clock = "synced" if d["clock_synced"] else "NOT synced"
        lines.append(
            f"daemon   pid {d['pid']}, reported {_age(now - d['reported'])} ago; uplink {link} "
            f"to {up['host']}:{up['port']}; clock {clock}"
        )
        holding = up.get("holding_until")
        if up["connected"] and holding:
            lines.append(
                f"  holding the backlog for {max(0.0, holding - now):.0f} s more "
                "(the broker lost our session: the platform is subscribing again)"
            )
        if not up["connected"] and up["down_since"] is not None:
            retry = up["next_try"]
            if not retry:
                when = "no retry planned"
            elif retry > now:
                when = f"next try in {retry - now:.0f} s"
            else:  # the daemon reports a new try's time at its next refresh (<= 10 s)
                when = f"a try was due {_age(now - retry)} ago"
            lines.append(
                f"  uplink down {_age(now - up['down_since'])} ({up['down_reason']}); {when}"
            )
    if d["disk_full"]:
        lines.append(f"  DISK FULL: {d['memory_rows']} rows held in memory")
    pressure = d.get("pressure")
    if state != "stopped" and pressure and pressure.get("imbalanced") and pressure.get("summary"):
        lines.append(f"  BACK-PRESSURE {pressure['summary']}")
    if state != "stopped":
        for device, why in d["devices_unavailable"].items():
            since = f" for {_age(now - why['since'])}" if why["since"] else ""
            lines.append(f"  unavailable {device}{since}: {why['reason'] or 'no reason given'}")
    if state == "stale":
        lines.append("daemon   status is stale: the daemon is not running")
    return lines


def main(config_path: str, *, as_json: bool = False, watch: float | None = None) -> int:
    """Print the status once, or every `watch` seconds until Ctrl-C; the exit code as above."""
    try:
        cfg = config_mod.load(config_path)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 1
    if watch is None:
        return _show(cfg, config_path, as_json=as_json, watch=None)
    code = 3
    # Ctrl-C must end a watch even when whoever started us ignored SIGINT (a background job
    # of a non-interactive shell does): Python then leaves it ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:  # Ctrl-C is the normal end of a watch: exit with the last report's code
            code = _show(cfg, config_path, as_json=as_json, watch=watch)
            time.sleep(watch)
    except KeyboardInterrupt:
        return code


def _show(cfg: config_mod.Config, config_path: str, *, as_json: bool, watch: float | None) -> int:
    """Print one report (for a watch: a screen on a TTY, else a block); its exit code."""
    rep = report(cfg, config_path)
    if as_json:
        text = json.dumps(rep, indent=None if watch is not None else 1)
    else:
        text = "\n".join(render(rep))
    if watch is not None and not as_json:
        if sys.stdout.isatty():
            text = CLEAR + text
        else:
            text += "\n" + "-" * 40  # a new block each time: logs and pipes keep every one
    print(text, flush=True)
    return int(rep["exit"])
