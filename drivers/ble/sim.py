"""`gateway sim ble`: a fake BlueZ adapter with the scripted BLE field, or a replay file of it.

    gateway sim ble [--active] [--period 2] [--seconds 0] [--workdir DIR]
        runs dbus-daemon + python3-dbusmock (drivers.ble.mockbluez) with adapter hci0, the
        advertisers of drivers.ble.field and a connectable GATT wind sensor; prints the
        DBUS_SYSTEM_BUS_ADDRESS to run the gateway against and a matching [[buses]] table
    gateway sim ble --record FILE [--rounds 100] [--period 2]
        writes the same field as a replay file (transport "ble-replay") and exits; no D-Bus

Needs the Debian packages `dbus` and `python3-dbusmock` for the first form.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from drivers.ble.field import WIND, Field, devices_toml, wind_values
from drivers.ble.mockbluez import MockBlueZ, MockUnavailable
from drivers.ble.replay import format_line


def record(path: Path, rounds: int, period: float, field: Field | None = None) -> int:
    """Write `rounds` rounds of the field, `period` seconds apart; returns the advert count."""
    field = field or Field()
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("# drivers.ble.field, recorded by `gateway sim ble --record`\n")
        for n in range(rounds):
            for advert in field.round(n):
                out.write(format_line(n * period, advert) + "\n")
                count += 1
    return count


async def play(bluez: MockBlueZ, period: float, seconds: float, adapter: str = "hci0") -> None:
    """Advertise the field and update the GATT sensor every `period` s (`seconds` 0 = forever)."""
    loop = asyncio.get_running_loop()
    stop = loop.time() + seconds if seconds > 0 else float("inf")
    field, n = Field(), 0
    ess = {"0000181a-0000-1000-8000-00805f9b34fb": b""}
    while loop.time() < stop:
        for advert in field.round(n):
            await bluez.advertise(
                adapter, advert.address, advert.rssi or -60, advert.manufacturer, advert.service
            )
        await bluez.advertise(adapter, WIND, -55, service=ess)
        for uuid, value in wind_values(n).items():
            await bluez.set_characteristic(adapter, WIND, uuid, value)
        n += 1
        await asyncio.sleep(period)


async def start_field(bluez: MockBlueZ, passive: bool = True, adapter: str = "hci0") -> None:
    await bluez.add_adapter(adapter, passive=passive)
    await bluez.add_gatt_sensor(adapter, WIND, wind_values(0))


def bus_toml(interval: float = 10.0) -> str:
    return f"""
[[buses]]
name = "ble-sim"
transport = "ble"
adapter = "hci0"
{devices_toml(interval, gatt=True)}"""


async def _run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gateway-ble-sim-"))
    try:
        async with MockBlueZ(workdir) as bluez:
            await start_field(bluez, passive=not args.active)
            print("fake BlueZ running; run the gateway with")
            print(f"  export DBUS_SYSTEM_BUS_ADDRESS={bluez.address}")
            print(f"and this bus in its config:{bus_toml()}", flush=True)
            await play(bluez, args.period, args.seconds)
    except MockUnavailable as exc:
        print(f"gateway sim ble: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gateway sim ble", description=__doc__.splitlines()[0])
    parser.add_argument("--record", help="write a replay file of the field and exit")
    parser.add_argument("--rounds", type=int, default=100, help="rounds to record")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between rounds")
    parser.add_argument(
        "--seconds", type=float, default=0.0, help="stop after this long (0 = Ctrl-C)"
    )
    parser.add_argument(
        "--active", action="store_true", help="adapter without advertisement monitors"
    )
    parser.add_argument("--workdir", help="where the bus socket lives (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.record:
        count = record(Path(args.record), args.rounds, args.period)
        print(f"{args.record}: {count} adverts in {args.rounds} rounds")
        return 0
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args))
    return 130
