"""Recorded advertisements: the replay file format and a replay advert source.

One advertisement per line, `#` comments and blank lines ignored:

    <seconds> <address> <rssi|-> [m:<company>=<hex>]... [s:<uuid>=<hex>]...
    12.500 A4:C1:38:0B:5E:6D -67 s:fcd2=4000010295090346 m:0499=0512fc...

`company` is the 16-bit company id in hex; `uuid` a 16-bit UUID in hex or a full 128-bit
UUID. A replay source plays a file at its recorded pace scaled by `speed` (0 = as fast as the
outbox takes them), once or in a loop; rigs, the demo and the benchmark use it in place of an
adapter. Bad lines are skipped with one warning each; nothing here talks to a radio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.ble.advert import Advert, normalise_mac, short_uuid, uuid16
from gateway.contract import Log
from gateway.errors import BusUnavailable, DecodeError
from gateway.supervise import Backoff, Health, supervise

if TYPE_CHECKING:
    from drivers.ble.bus import BleBus
    from drivers.ble.options import ReplayOptions


def format_line(t: float, advert: Advert) -> str:
    parts = [f"{t:.3f}", advert.address, "-" if advert.rssi is None else str(advert.rssi)]
    parts += [f"m:{company:04x}={data.hex()}" for company, data in advert.manufacturer.items()]
    for uuid, data in advert.service.items():
        short = short_uuid(uuid)
        parts.append(
            f"s:{short:04x}={data.hex()}" if short is not None else f"s:{uuid}={data.hex()}"
        )
    return " ".join(parts)


def parse_line(line: str) -> tuple[float, Advert] | None:
    """(time, advert) of one line; None for a blank or comment line; DecodeError if bad."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.split()
    if len(fields) < 3:
        raise DecodeError("expected <seconds> <address> <rssi> [m:..=..] [s:..=..]")
    try:
        t = float(fields[0])
    except ValueError:
        raise DecodeError(f"bad time {fields[0]!r}") from None
    address = normalise_mac(fields[1])
    if address is None:
        raise DecodeError(f"bad address {fields[1]!r}")
    try:
        rssi = None if fields[2] == "-" else int(fields[2])
    except ValueError:
        raise DecodeError(f"bad rssi {fields[2]!r}") from None
    manufacturer: dict[int, bytes] = {}
    service: dict[str, bytes] = {}
    for item in fields[3:]:
        kind, _, rest = item.partition(":")
        key, sep, value = rest.partition("=")
        try:
            data = bytes.fromhex(value)
            if not sep:
                raise ValueError
            if kind == "m":
                manufacturer[int(key, 16) & 0xFFFF] = data
            elif kind == "s":
                service[uuid16(int(key, 16)) if len(key) == 4 else key.lower()] = data
            else:
                raise ValueError
        except ValueError:
            raise DecodeError(f"bad data item {item!r}") from None
    return t, Advert(address, rssi, manufacturer, service)


def read_lines(lines: Iterable[str]) -> Iterator[tuple[int, tuple[float, Advert] | DecodeError]]:
    for number, line in enumerate(lines, 1):
        try:
            parsed = parse_line(line)
        except DecodeError as exc:
            yield number, exc
            continue
        if parsed is not None:
            yield number, parsed


class ReplaySource:
    """Plays a replay file into a bus (see module docstring)."""

    def __init__(self, options: ReplayOptions, log: Log) -> None:
        self.options = options
        self.log = log
        self.played = 0
        self.skipped = 0

    def _load(self) -> list[tuple[float, Advert]]:
        path = Path(self.options.file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BusUnavailable(f"cannot read replay file {path}: {exc}") from None
        records: list[tuple[float, Advert]] = []
        for number, item in read_lines(text.splitlines()):
            if isinstance(item, DecodeError):
                self.skipped += 1
                self.log.warning(
                    "replay line skipped", file=str(path), line=number, error=str(item)
                )
            else:
                records.append(item)
        return records

    async def run(self, bus: BleBus) -> None:
        backoff = Backoff(initial=1.0, maximum=60.0)
        await supervise(lambda health: self._play(bus, health), Health(self.log, "replay"), backoff)

    async def _play(self, bus: BleBus, health: Health) -> None:
        records = await asyncio.to_thread(self._load)
        health.up()
        loop = asyncio.get_running_loop()
        speed = self.options.speed
        while True:
            start = loop.time()
            first = records[0][0] if records else 0.0
            for t, advert in records:
                if speed > 0:
                    delay = start + (t - first) / speed - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await bus.put(advert)
                self.played += 1
            if not self.options.loop or not records:
                break
        self.log.info("replay finished", file=self.options.file, adverts=self.played)
        await asyncio.Event().wait()
