"""`gateway tail`: the running daemon's readings live, one line each, over its local socket.

Talks to the daemon's monitor socket (gateway.monitor) in `[store] runtime_dir`, not to MQTT,
so it works with the uplink dead. Each line: local time, device, quantity, value and unit,
and flags (`IMPLAUSIBLE`, `clock not synced`); alerts, device up/down and uplink changes get
their own lines; `--json` prints the daemon's event objects as they come (one per line).
`--device` / `--quantity` filter in the daemon (less to carry over a bad SSH link);
`--count N` stops after N readings or alerts. Exit 0 at Ctrl-C, at `--count` or when the
daemon stops; 3 when no daemon listens; 1 on a bad config or a socket we may not open.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from gateway.config import loader as config_mod
from gateway.errors import ConfigError
from gateway.monitor import ask, socket_path

NOT_RUNNING = 3


def _clock(iso_time: str) -> str:
    """HH:MM:SS in the box's local time (what the technician's watch says)."""
    try:
        when = dt.datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return str(iso_time)
    return when.astimezone().strftime("%H:%M:%S")


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def line(event: dict[str, Any]) -> str | None:
    """The text line for one event (None: nothing to show)."""
    kind = event.get("event")
    if kind == "reading":
        flags = []
        if not event.get("plausible", True):
            flags.append("IMPLAUSIBLE")
        if not event.get("synced", True):
            flags.append("clock not synced")
        unit = f" {event['unit']}" if event.get("unit") else ""
        text = (
            f"{_clock(event['time'])}  {event['device']:<16} {event['quantity']:<20} "
            f"{_value(event['value'])}{unit}"
        )
        return text + (f"  [{', '.join(flags)}]" if flags else "")
    if kind == "alert":
        a = event.get("alert")
        if not isinstance(a, dict):
            return f"{_clock(event['time'])}  ALERT {event['device']}: {a}"
        state = "ALERT" if a.get("status") == "active" else "CLEARED"
        return (
            f"{_clock(event['time'])}  {state} {a.get('severity', '')} {event['device']}: "
            f"{a.get('description', '')} ({a.get('subCategory', '')})"
        )
    if kind == "device":
        if event.get("available"):
            return f"{'':8}  DEVICE {event['device']} available again"
        return f"{'':8}  DEVICE {event['device']} DOWN: {event.get('reason') or 'no reason'}"
    if kind == "uplink":
        if event.get("connected"):
            return f"{'':8}  UPLINK connected"
        return f"{'':8}  UPLINK DOWN: {event.get('reason') or 'no reason'}"
    if kind == "dropped":
        lost = event["count"]
        return f"{'':8}  ({lost} events dropped: this terminal reads slower than they come)"
    return None


def events(sock_lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    for raw in sock_lines:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        cfg = config_mod.load(args.config)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return 1
    path = socket_path(cfg.store.runtime_dir)
    request = {"op": "tail", "device": args.device or "", "quantity": args.quantity or ""}
    try:
        sock = ask(path, request)
    except (FileNotFoundError, ConnectionRefusedError):
        print(f"gateway tail: no daemon listens on {path}: is it running?", file=sys.stderr)
        return NOT_RUNNING
    except PermissionError:
        print(
            f"gateway tail: may not open {path}: run it as root or as the gateway user "
            "(sudo gateway tail)",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"gateway tail: cannot reach the daemon at {path}: {exc}", file=sys.stderr)
        return NOT_RUNNING
    shown = 0
    sock.settimeout(None)  # a quiet field may send nothing for minutes
    try:
        with sock, sock.makefile("rb") as stream:
            for event in events(iter(stream.readline, b"")):
                if "error" in event:
                    print(f"gateway tail: the daemon refused: {event['error']}", file=sys.stderr)
                    return 1
                if event.get("event") == "hello":
                    continue
                text = json.dumps(event, ensure_ascii=False) if args.json else line(event)
                if text is not None:
                    print(text, file=out, flush=True)
                if event.get("event") in ("reading", "alert"):
                    shown += 1
                    if args.count and shown >= args.count:
                        return 0
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"gateway tail: connection lost: {exc}", file=sys.stderr)
        return NOT_RUNNING
    print("gateway tail: the daemon closed the connection (stopped)", file=sys.stderr)
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], default: str) -> None:
    p = sub.add_parser(
        "tail",
        help="readings, alerts and device changes live from the running daemon",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("-c", "--config", default=default, help=f"config file (default: {default})")
    p.add_argument("--device", help="only this device (a sub-device key such as traps-4 too)")
    p.add_argument("--quantity", help="only this quantity (e.g. water_level)")
    p.add_argument("--json", action="store_true", help="the daemon's events as JSON lines")
    p.add_argument("--count", type=int, default=0, help="stop after N readings or alerts")
    p.set_defaults(func=run)
