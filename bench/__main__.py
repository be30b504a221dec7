"""`python -m bench [--quick] [--only NAME ...]`: run every bench module, print figures.

Each `bench/<name>.py` with a `run(quick: bool) -> dict` contributes figures. The last line
printed is one JSON object with all figures plus the machine they ran on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

import bench


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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="about a minute per module")
    parser.add_argument("--only", action="append", help="run only these modules")
    args = parser.parse_args()
    figures: dict[str, object] = {}
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if args.only and info.name not in args.only:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        run = getattr(module, "run", None)
        if run is None:
            continue
        started = time.monotonic()
        result = run(args.quick)
        print(
            f"{info.name}: {json.dumps(result)} ({time.monotonic() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
        figures.update(result)
    figures["machine"] = machine()
    figures["quick"] = args.quick
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
