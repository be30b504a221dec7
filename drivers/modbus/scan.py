"""`gateway scan modbus`: list the units that answer on a bus, for commissioning.

    gateway scan modbus --port /dev/ttyUSB0 --baud 9600 --units 1-247 --timeout 0.1
    gateway scan modbus --port tcp:192.168.1.50:502 --units 1-10,12

A unit counts as present when it answers at all, even with a Modbus exception (it refused the
probe register but it is there). Each silent unit costs one --timeout (no retries), so a full
1-247 sweep at 0.1 s takes about 25 s. Prints one line per unit found and a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from drivers.modbus.options import BAUDS, BusOptions, rtu_gap
from drivers.modbus.points import KINDS


def parse_units(text: str) -> list[int]:
    """'1-5,9,12-13' -> [1, 2, 3, 4, 5, 9, 12, 13]; raises ValueError with the bad part."""
    units: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(
                f"bad unit range {part.strip()!r} (expected e.g. 1-247 or 5)"
            ) from None
        if not 0 <= first <= last <= 255:
            raise ValueError(f"bad unit range {part.strip()!r}: units are 0..255, low <= high")
        units.update(range(first, last + 1))
    return sorted(units)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gateway scan modbus", description=__doc__.splitlines()[0])
    p.add_argument("--port", required=True, help="serial device path or tcp:HOST:PORT")
    p.add_argument("--units", default="1-247", help="unit ids to probe, e.g. 1-247 or 1-5,9")
    p.add_argument("--timeout", type=float, default=0.1, help="seconds to wait per unit")
    p.add_argument("--baud", type=int, default=9600, choices=BAUDS)
    p.add_argument("--parity", default="N", choices=("N", "E", "O"))
    p.add_argument("--stopbits", type=int, default=1, choices=(1, 2))
    p.add_argument("--register", default="holding:0", help="probe KIND:ADDRESS (holding:0)")
    return p


async def scan(options: BusOptions, units: list[int], kind: str, address: int) -> list[str]:
    from drivers.modbus.errors import NoResponse, UnitException
    from drivers.modbus.transport import Link

    found = []
    async with Link(options) as link:
        for unit in units:
            try:
                values = await link.read(unit, kind, address, 1)
            except UnitException as exc:
                line = f"unit {unit}: answers with {str(exc).split(': ', 1)[1]}"
            except NoResponse:
                continue
            else:
                line = f"unit {unit}: answers, {kind} {address} = {values[0]} (0x{values[0]:04X})"
            print(line, flush=True)
            found.append(line)
            await asyncio.sleep(options.gap)
    return found


def main(argv: list[str]) -> int:
    from gateway.errors import Transient

    args = _parser().parse_args(argv)
    try:
        units = parse_units(args.units)
    except ValueError as exc:
        print(f"gateway scan modbus: {exc}", file=sys.stderr)
        return 2
    kind, _, addr = args.register.partition(":")
    if kind not in KINDS or not addr.isdigit() or int(addr) > 65535:
        print(
            f"gateway scan modbus: bad --register {args.register!r} (e.g. holding:0)",
            file=sys.stderr,
        )
        return 2
    if args.port.startswith("tcp:"):
        host, _, port = args.port[4:].rpartition(":")
        options = BusOptions("modbus-tcp", host=host, port=port, timeout=args.timeout, retries=0)
    else:
        options = BusOptions(
            "modbus-rtu",
            port=args.port,
            baud=args.baud,
            parity=args.parity,
            stopbits=args.stopbits,
            timeout=args.timeout,
            retries=0,
            gap=rtu_gap(args.baud),
        )
    try:
        found = asyncio.run(scan(options, units, kind, int(addr)))
    except Transient as exc:
        print(f"gateway scan modbus: {exc}", file=sys.stderr)
        return 1
    print(f"{len(found)} of {len(units)} unit(s) answered on {args.port}")
    return 0
