"""`python -m bench [--smoke | --quick] [--repeats N] [--only NAME ...]`: run the bench
modules, print figures; `python -m bench --markdown FILE` prints the README table from a
saved run.

Each `bench/<name>.py` with `REPEATS` and `run(mode, repeats) -> dict[str, Figure]` is a bench
module. Progress goes to stderr, one line per figure (median, lowest-highest, settings); the
last line on stdout is one JSON object: every figure with its repeats and settings, plus the
machine, the load, the command line, the commit and the date.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import bench
from bench.figures import Figure, Mode, run_record
from bench.table import markdown, settings_text
from gateway import logs

ROOT = Path(__file__).resolve().parent.parent
LOG_LEVEL = "info"
ORDER = ("core", "modbus", "serial", "ble", "alerts", "wire", "formats")


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor()} x{os.cpu_count()}, Python {platform.python_version()}"


def commit() -> str:
    """The checkout's commit, `+dirty` when files differ from it; empty outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return ""
    return head + ("+dirty" if head and dirty else "")


def modules() -> dict[str, ModuleType]:
    """The bench modules, headline figures first (ORDER), then any other by name."""
    found = {}
    names = [i.name for i in pkgutil.iter_modules(bench.__path__)]
    for name in sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n)):
        module = importlib.import_module(f"bench.{name}")
        if hasattr(module, "run") and hasattr(module, "REPEATS"):
            found[name] = module
    return found


def main() -> int:
    found = modules()
    defaults = ", ".join(f"{name} {m.REPEATS}" for name, m in found.items())
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--smoke", action="store_true", help="every module once with tiny sizes (CI: it must run)"
    )
    size.add_argument("--quick", action="store_true", help="smaller sizes, same repeats")
    size.add_argument(
        "--markdown", metavar="FILE", help="print the README table from a saved run's output"
    )
    parser.add_argument(
        "--repeats", type=int, metavar="N", help=f"repeats per figure (default: {defaults})"
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(found), help="run only these modules"
    )
    args = parser.parse_args()
    if args.markdown:
        text = sys.stdin.read() if args.markdown == "-" else Path(args.markdown).read_text()
        print(markdown(text), end="")
        return 0
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    mode: Mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    # In-process modules log as the daemon does by default (info, JSON, to stderr here): with
    # structlog's own default every debug line (a Modbus poll's) would be printed and timed.
    logs.setup(LOG_LEVEL, json=True, stream=sys.stderr)
    started, load_before = time.monotonic(), _load()
    figures: dict[str, Figure] = {}
    for name, module in found.items():
        if args.only and name not in args.only:
            continue
        repeats = args.repeats or (1 if mode == "smoke" else module.REPEATS)
        t0 = time.monotonic()
        result: dict[str, Figure] = module.run(mode, repeats)
        for fig_name, f in result.items():
            spread = f" ({f.low}-{f.high})" if len(f.values) > 1 else ""
            print(
                f"{name}: {fig_name} {f.median}{spread} [{settings_text(f.settings)}]",
                file=sys.stderr,
            )
        print(f"{name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
        figures.update(result)
    record = run_record(
        figures,
        mode=mode,
        log_level=LOG_LEVEL,
        command=shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        commit=commit(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine(),
        load={"before": load_before, "after": _load()},
        seconds=round(time.monotonic() - started),
    )
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return 0


def _load() -> float:
    """The 1-minute load average: how busy the machine was around the run."""
    return round(os.getloadavg()[0], 2)


if __name__ == "__main__":
    sys.exit(main())
