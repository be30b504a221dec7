"""`gateway demo` field: a simulated NMEA buoy and a trap receiver on pseudo-terminals.

Starts both simulators as tasks whose cancellation is registered on the demo's exit stack (so
they stop with it) and returns the `[[buses]]` TOML that points the gateway at their stable
links in the demo's work directory. The buoy talks every second with a little line noise; the
receiver reports a random trap event every 20 s (each sent twice, as radios resend) and
heartbeats every 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from pathlib import Path

from drivers.serial.ptyline import pty_line
from drivers.serial.sim import BuoyTalker, Faults, TrapReceiver, run_talker

# The demo's two serial buses; `gateway demo` appends them to its config.
BUSES = """
[[buses]]
name = "buoy"
transport = "serial"
port = "{buoy}"
baudrate = 4800

[[buses.devices]]
id = "buoy-1"
name = "Imizu harbour buoy"
profile = "buoy-nmea"
interval = 10
silence = 30

[[buses]]
name = "trap-rx"
transport = "serial"
port = "{traps}"
baudrate = 9600

[[buses.devices]]
id = "trap-rx"
name = "Trap receiver (base unit)"
profile = "trap-receiver"
"""


def _trap_script(receiver: TrapReceiver) -> Callable[[float], list[str]]:
    """What the receiver prints by elapsed time: an event every 20 s from 5 s on, heartbeats
    every minute."""
    due = {"event": 5.0, "hb": 0.0}

    def trap_lines(elapsed: float) -> list[str]:
        out = []
        if elapsed >= due["event"]:
            out.append(receiver.random_event())
            due["event"] += 20.0
        if elapsed >= due["hb"]:
            out.extend(receiver.heartbeats())
            due["hb"] += 60.0
        return out

    return trap_lines


async def field(stack: contextlib.AsyncExitStack, workdir: Path) -> str:
    buoy_line = await stack.enter_async_context(pty_line(workdir / "buoy-tty"))
    trap_line = await stack.enter_async_context(pty_line(workdir / "trap-rx-tty"))
    talker = BuoyTalker(seed=1)
    trap_lines = _trap_script(TrapReceiver(["17", "18", "A3"], seed=1))
    tasks = [
        asyncio.create_task(
            run_talker(
                buoy_line.write,
                lambda _t: talker.sentences(),
                Faults(garbage=0.02, bad_checksum=0.02),
                1.0,
                0,
                random.Random(1),
            ),
            name="demo nmea buoy",
        ),
        asyncio.create_task(
            run_talker(trap_line.write, trap_lines, Faults(repeats=2), 0.5, 0, random.Random(2)),
            name="demo trap receiver",
        ),
    ]

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    stack.push_async_callback(stop)
    return BUSES.format(buoy=buoy_line.port, traps=trap_line.port)
