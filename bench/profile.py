"""Where the daemon's time goes in the e2e or drain run: py-spy's samples, summed.

    python -m bench.profile e2e|drain [--readings N] [--top K] [--raw FILE]

Runs one bench.core run (defaults, as the headline figures) with the daemon under `py-spy
record` (pip install -e '.[profile]'), then prints the functions with the most samples of
their own ("self") and with their callees ("inclusive"), all threads together, as a share of
every sample. Idle waits show as such (the event loop's select, SQLite's and the thread pool's
queue gets): read the rest as the CPU profile. Sampling slows the daemon, so the run's own
figures printed here are not the bench's.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import core

RATE = 250  # samples per second

# Frames every sample of a thread passes through: they say nothing about where time goes.
WRAPPERS = re.compile(
    r"^(_run_module_as_main|_run_code|<module> \(gateway/__main__|main \(gateway/(cli|daemon)|"
    r"cmd_run|Thread\.(_bootstrap|_bootstrap_inner|run) |run \(asyncio/runners|Runner\.run|"
    r"BaseEventLoop\.(run_forever|run_until_complete|_run_once))"
)
_FRAME = re.compile(r"(?P<fn>.*) \((?P<path>.*?):\d+\)$")
_SHORT = re.compile(r".*/(site-packages|python3\.\d+)/|.*/(?=(gateway|drivers)/)")


def frame_name(frame: str) -> str:
    """`fn (path)`: py-spy's `fn (path:line)` without the line and the install prefix."""
    m = _FRAME.match(frame)
    if m is None:
        return frame
    return f"{m['fn']} ({_SHORT.sub('', m['path'])})"


def summarise(raw: str, top: int) -> str:
    """The top `top` frames by own and by inclusive samples of a py-spy raw (collapsed)
    profile: `frame;frame;... count` per line."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        names = [frame_name(f) for f in stack.split(";")]
        own[names[-1]] += n
        for name in set(names):
            if not WRAPPERS.match(name):
                inclusive[name] += n
    out = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        out.append(f"-- {title}")
        out += [f"{c / max(total, 1) * 100:5.1f}%  {name}" for name, c in counter.most_common(top)]
    return "\n".join(out)


def _spied(raw: Path) -> type[core.Daemon]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    class Spied(core.Daemon):
        def command(self, cfg: Path) -> list[str]:
            spying = [spy, "record", "-r", str(RATE), "-f", "raw", "-o", str(raw), "--"]
            return [*spying, *super().command(cfg)]

        def __init__(self, cfg: Path, log: Path) -> None:
            super().__init__(cfg, log)
            deadline = time.monotonic() + 10
            while not self.ps.children() and time.monotonic() < deadline:
                time.sleep(0.05)
            children = self.ps.children()
            if not children:
                raise RuntimeError("py-spy did not start the daemon")
            self.ps: psutil.Process = children[0]  # the daemon: CPU and the stop signal

    return Spied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    ap.add_argument("run", choices=["e2e", "drain"])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--raw", type=Path, help="keep py-spy's raw profile here")
    args = ap.parse_args(argv)
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        print("py-spy is not installed: pip install -e '.[profile]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        raw = args.raw or Path(tmp) / "profile.txt"
        daemon = _spied(raw)
        if args.run == "e2e":
            figures = core.e2e(args.readings, daemon_type=daemon)
        else:
            backlog = Path(tmp) / "backlog.sqlite"
            asyncio.run(core._fill(backlog, args.readings, 100))
            figures = core.drain(backlog, args.readings, daemon_type=daemon)
        print(f"{args.run}, {args.readings} readings, defaults, under py-spy: {figures}")
        print(summarise(raw.read_text(), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
