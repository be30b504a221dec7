"""A scripted field of BLE sensors for the simulator, the demo and the benchmark.

`Field.round(n)` gives round `n` of advertisements from a greenhouse BTHome thermometer, an
encrypted BTHome one, a paddy water probe, a Ruuvi tag, a pvvx thermometer and an iBeacon
cow tag that wanders off for a while; values drift slowly and packet ids advance, so every
round is a new measurement. `devices_toml` is the matching `[[buses.devices]]` config.
No I/O and no clock: the caller passes the round number.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from drivers.ble import bthome
from drivers.ble.advert import Advert, uuid16

BINDKEY = "231d39c1d7cc1ab1aee224cd096db932"
GREENHOUSE = "A4:C1:38:10:00:01"
SEALED = "A4:C1:38:10:00:02"
PADDY = "A4:C1:38:10:00:03"
RUUVI = "C4:D5:6E:10:00:04"
PVVX = "A4:C1:38:10:00:05"
COW = "C0:FF:EE:10:00:06"
WIND = "F0:0D:00:10:00:07"  # the GATT wind sensor (mocked adapter only)
COW_UUID = "e2c56db5dffb48d2b060d0f5a71096e0"


@dataclass(frozen=True)
class Field:
    cow_away: tuple[int, int] = (40, 80)  # rounds during which the tag is out of range

    def round(self, n: int) -> list[Advert]:
        pid = n % 256
        temp = 24.0 + 3.0 * math.sin(n / 30)
        hum = 60.0 + 10.0 * math.cos(n / 45)
        out = [
            Advert(GREENHOUSE, -58, service={uuid16(0xFCD2): _bthome(pid, temp, hum, 92)}),
            Advert(
                SEALED,
                -71,
                service={
                    uuid16(0xFCD2): bthome.encrypt(
                        _objects(pid, temp - 2.0, hum + 5.0, 88),
                        bytes.fromhex(BINDKEY),
                        SEALED,
                        n + 1,
                    )
                },
            ),
            Advert(PADDY, -80, service={uuid16(0xFCD2): _paddy(pid, n)}),
            Advert(RUUVI, -66, manufacturer={0x0499: _ruuvi(n, temp - 5.0, hum)}),
            Advert(PVVX, -62, service={uuid16(0x181A): _pvvx(n, temp + 1.0, hum - 8.0)}),
        ]
        if not self.cow_away[0] <= n < self.cow_away[1]:
            out.append(Advert(COW, -75, manufacturer={0x004C: _ibeacon()}))
        return out


def _objects(pid: int, temp: float, hum: float, battery: int) -> bytes:
    return struct.pack(
        "<BBBBBhBH", 0x00, pid, 0x01, battery, 0x02, round(temp * 100), 0x03, round(hum * 100)
    )


def _bthome(pid: int, temp: float, hum: float, battery: int) -> bytes:
    return b"\x40" + _objects(pid, temp, hum, battery)


def _paddy(pid: int, n: int) -> bytes:
    distance = round(1150 - 20 * math.sin(n / 60))  # mm to the water surface
    water = round((22.0 + 2.0 * math.sin(n / 90)) * 10)
    return b"\x40" + struct.pack("<BBBBBHBh", 0x00, pid, 0x01, 90, 0x40, distance, 0x45, water)


def _ruuvi(n: int, temp: float, hum: float) -> bytes:
    power = ((2950 - 1600) << 5) | ((4 + 40) // 2)
    return struct.pack(
        ">BhHHhhhHBH6s", 5, round(temp / 0.005), round(hum / 0.0025), 101325 - 50000,
        4, -4, 1036, power, n % 255, n % 65535, bytes.fromhex(RUUVI.replace(":", "")),
    )  # fmt: skip


def _pvvx(n: int, temp: float, hum: float) -> bytes:
    mac = bytes.fromhex(PVVX.replace(":", ""))[::-1]
    return mac + struct.pack("<hHHBBB", round(temp * 100), round(hum * 100), 2950, 87, n % 256, 0)


def _ibeacon() -> bytes:
    return b"\x02\x15" + bytes.fromhex(COW_UUID) + struct.pack(">HHb", 1, 42, -59)


def wind_values(n: int) -> dict[int, bytes]:
    """ESS characteristic values of the GATT wind sensor in round `n`."""
    speed = 3.0 + 2.0 * math.sin(n / 10)
    direction = (180.0 + 40.0 * math.sin(n / 25)) % 360
    return {
        0x2A70: struct.pack("<H", round(speed * 100)),
        0x2A71: struct.pack("<H", round(direction * 100)),
        0x2A6E: struct.pack("<h", round(21.5 * 100)),
    }


def devices_toml(interval: float = 10.0, gatt: bool = False) -> str:
    """The [[buses.devices]] tables for this field (append to a [[buses]] table)."""
    devices = [
        ("greenhouse-th", "bthome", GREENHOUSE, ""),
        ("greenhouse-sealed", "bthome", SEALED, f'bindkey = "{BINDKEY}"'),
        ("paddy-probe", "bthome-paddy", PADDY, ""),
        ("shed-ruuvi", "ruuvi-df5", RUUVI, ""),
        ("store-pvvx", "atc-thermometer", PVVX, ""),
        ("cow-42", "ibeacon-tag", COW, "presence_timeout = 30\nparams = { major = 1, minor = 42 }"),
    ]
    if gatt:
        devices.append(("wind-gatt", "ess-wind", WIND, 'gatt = "notify"'))
    return "".join(
        f'\n[[buses.devices]]\nid = "{i}"\nprofile = "{p}"\naddress = "{a}"\n'
        f"interval = {interval}\n{extra}\n"
        for i, p, a, extra in devices
    )
