"""Simulators: an NMEA 0183 buoy talker and a trap-detector radio receiver, with faults.

`gateway sim nmea [--link PATH | --port /dev/ttyUSB0] [--rate 1] [--garbage 0.05] ...` and
`gateway sim trap [--traps 17,18] [--script "2 17 TRIG; 9 17 SET"] [--repeats 3] ...` write
to a pseudo-terminal (printing its path; `--link` adds a stable symlink) or to a real port.
Faults: `--garbage P` (random bytes before a line), `--bad-checksum P`, `--overlong P` (a line
far beyond any max_line), `--repeats N` (each message sent N times, as radios do),
`--silence START:SECONDS` (say nothing for a while). Tests and the demo use the classes
directly. Simulators never import pyserial except through drivers.serial.transport.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from drivers.serial.nmea import checksum

Writer = Callable[[bytes], Awaitable[None]]


def sentence(body: str) -> str:
    """`$body*hh` with a correct checksum."""
    return f"${body}*{checksum(body)}"


def trap_line(trap: str, state: str, battery_mv: int = 3000, rssi: int = -80) -> str:
    body = f"TRAP,{trap},{state},{battery_mv},{rssi}"
    return f"{body}*{checksum(body)}"


@dataclass
class Faults:
    garbage: float = 0.0
    bad_checksum: float = 0.0
    overlong: float = 0.0
    repeats: int = 1
    silence: tuple[float, float] | None = None  # (start, duration) in seconds of run time

    def silent(self, elapsed: float) -> bool:
        return self.silence is not None and 0 <= elapsed - self.silence[0] < self.silence[1]

    def frame(self, line: str, rng: random.Random) -> bytes:
        """The bytes for one line (CR LF ended), faults applied."""
        out = b""
        if rng.random() < self.garbage:
            out += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        if rng.random() < self.overlong:
            out += b"$" + b"X" * 2000 + b"\r\n"
        data = line
        if "*" in line and rng.random() < self.bad_checksum:
            data = line[:-1] + ("0" if line[-1] != "0" else "1")
        return out + (data.encode("ascii") + b"\r\n") * max(1, self.repeats)


class BuoyTalker:
    """Plausible buoy weather: wind as a random walk with gusts, slow water temperature."""

    def __init__(self, seed: int = 1, lat: float = 36.7833, lon: float = 137.0833) -> None:
        self.rng = random.Random(seed)
        self.speed = 6.0  # m/s
        self.direction = 220.0  # deg, wind from the south-west
        self.lat, self.lon = lat, lon
        self.tick = 0

    def sentences(self) -> list[str]:
        r = self.rng
        self.tick += 1
        self.speed = min(25.0, max(0.0, self.speed + r.gauss(0, 0.3)))
        self.direction = (self.direction + r.gauss(0, 3.0)) % 360
        gust = self.speed * (1 + abs(r.gauss(0, 0.1)))
        water = 17.9 + 0.5 * math.sin(self.tick / 600)
        out = [
            sentence(f"WIMWV,{self.direction:.0f},T,{gust:.1f},M,A"),
            sentence(f"WIMWV,{(self.direction - 35) % 360:.0f},R,{gust / 0.514444:.1f},N,A"),
            sentence(f"INMTW,{water:.1f},C"),
        ]
        if self.tick % 5 == 1:
            out.append(
                sentence(
                    f"WIXDR,C,{water + 3.6:.1f},C,AIRTEMP,P,{1.0132 + r.gauss(0, 0.0005):.4f},"
                    f"B,BARO,H,{65 + r.gauss(0, 2):.1f},P,RH"
                )
            )
            out.append(
                sentence(
                    f"GPGGA,000000,{_nmea_deg(self.lat, 2)},N,"
                    f"{_nmea_deg(self.lon, 3)},E,1,08,0.9,1.0,M,34.0,M,,"
                )
            )
            out.append(sentence("GPGSV,1,1,01,03,03,111,00"))  # unused: must be ignored
        return out


def _nmea_deg(value: float, width: int) -> str:
    degrees = int(value)
    return f"{degrees:0{width}d}{(value - degrees) * 60:07.4f}"


class TrapReceiver:
    """Trap messages: scripted events, random triggers and hourly-style heartbeats."""

    def __init__(self, traps: list[str], seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.traps = traps
        self.state = dict.fromkeys(traps, "SET")
        self.battery = {t: 3100 - 10 * i for i, t in enumerate(traps)}

    def message(self, trap: str, state: str) -> str:
        if state != "HB":
            self.state[trap] = state
        rssi = -60 - self.rng.randrange(50)
        return trap_line(trap, state, self.battery.get(trap, 3000), rssi)

    def heartbeats(self) -> list[str]:
        return [self.message(t, "HB") for t in self.traps]

    def random_event(self) -> str:
        trap = self.rng.choice(self.traps)
        return self.message(trap, "TRIG" if self.state[trap] == "SET" else "SET")


def parse_script(text: str) -> list[tuple[float, str, str]]:
    """'2 17 TRIG; 9 17 SET' -> [(2.0, '17', 'TRIG'), (9.0, '17', 'SET')]."""
    events = []
    for item in filter(None, (p.strip() for p in text.split(";"))):
        at, trap, state = item.split()
        events.append((float(at), trap, state))
    return sorted(events)


async def run_talker(
    write: Writer,
    lines: Callable[[float], list[str]],
    faults: Faults,
    period: float,
    seconds: float,
    rng: random.Random,
) -> int:
    """Every `period`, write `lines(elapsed)` with faults; returns how many lines were sent."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while seconds <= 0 or loop.time() - start < seconds:
        elapsed = loop.time() - start
        if not faults.silent(elapsed):
            for line in lines(elapsed):
                await write(faults.frame(line, rng))
                sent += 1
        await asyncio.sleep(period)
    return sent


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", help="a real serial port to write to (default: a new pty)")
    parser.add_argument("--link", type=Path, help="stable symlink to the pty's path")
    parser.add_argument("--baud", type=int, default=4800)
    parser.add_argument("--seconds", type=float, default=0, help="stop after (0 = never)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--garbage", type=float, default=0.0)
    parser.add_argument("--bad-checksum", type=float, default=0.0)
    parser.add_argument("--overlong", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--silence", help="START:SECONDS of silence")


def _faults(args: argparse.Namespace) -> Faults:
    silence = None
    if args.silence:
        start, _, duration = args.silence.partition(":")
        silence = (float(start), float(duration))
    return Faults(args.garbage, args.bad_checksum, args.overlong, args.repeats, silence)


async def _serve(
    args: argparse.Namespace, what: str, lines: Callable[[float], list[str]], period: float
) -> int:
    faults = _faults(args)
    rng = random.Random(args.seed)
    async with contextlib.AsyncExitStack() as stack:
        if args.port:
            from drivers.serial.options import PortSettings
            from drivers.serial.transport import open_writer

            writer = open_writer(args.port, PortSettings(baudrate=args.baud, exclusive=False))
            stack.callback(writer.close)
            write: Writer = writer.write
            where = args.port
        else:
            from drivers.serial.ptyline import pty_line

            line = await stack.enter_async_context(pty_line(args.link))
            write, where = line.write, line.port
        print(f"{what} simulator on {where}", flush=True)
        sent = await run_talker(write, lines, faults, period, args.seconds, rng)
        print(f"{what} simulator sent {sent} lines", flush=True)
    return 0


def nmea_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway sim nmea", description=__doc__.splitlines()[0])
    _common(parser)
    parser.add_argument("--rate", type=float, default=1.0, help="sentence groups per second")
    args = parser.parse_args(argv)
    talker = BuoyTalker(args.seed)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(
            _serve(args, "NMEA buoy", lambda _t: talker.sentences(), 1.0 / max(args.rate, 1e-3))
        )
    return 130


def trap_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway sim trap", description=__doc__.splitlines()[0])
    _common(parser)
    parser.add_argument("--traps", default="17,18,A3", help="comma-separated trap ids")
    parser.add_argument("--script", default="", help='"AT TRAP STATE; ..." e.g. "2 17 TRIG"')
    parser.add_argument("--event-every", type=float, default=0, help="random event period (s)")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="heartbeat period (s)")
    args = parser.parse_args(argv)
    try:
        script = parse_script(args.script)
    except ValueError:
        print(f"gateway sim trap: bad --script {args.script!r}", file=sys.stderr)
        return 2
    receiver = TrapReceiver([t for t in args.traps.split(",") if t], args.seed)
    due = {"hb": 0.0, "event": args.event_every or float("inf")}

    def lines(elapsed: float) -> list[str]:
        out = []
        while script and script[0][0] <= elapsed:
            _, trap, state = script.pop(0)
            out.append(receiver.message(trap, state))
        if elapsed >= due["event"]:
            out.append(receiver.random_event())
            due["event"] += args.event_every
        if elapsed >= due["hb"]:
            out.extend(receiver.heartbeats())
            due["hb"] += args.heartbeat
        return out

    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_serve(args, "trap receiver", lines, 0.1))
    return 130
