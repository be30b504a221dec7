"""Ruuvi data format 5 (RAWv2) decoder: manufacturer data of company 0x0499, 24 bytes.

Layout per Ruuvi's "Data format 5" specification (docs.ruuvi.com), big-endian:
[0]=5, temperature s16 x0.005 degC, humidity u16 x0.0025 %, pressure u16 + 50000 Pa,
acceleration x/y/z s16 mG, power u16 (battery = (v >> 5) + 1600 mV, tx = (v & 0x1F) * 2 - 40
dBm), movement counter u8, measurement sequence u16, MAC[6]. Fields holding their "not
available" marker are left out. Pure: only DecodeError escapes.
"""

from __future__ import annotations

import struct

from drivers.ble.advert import Advert, Decoded
from gateway.errors import DecodeError
from gateway.model import Observation

COMPANY = 0x0499  # Ruuvi Innovations Ltd. (Bluetooth SIG company identifier)
FORMAT = 5
LENGTH = 24
_LAYOUT = struct.Struct(">BhHHhhhHBH6s")
# Not-available markers (data format 5 spec, "Invalid values").
NA_S16 = -0x8000
NA_U16 = 0xFFFF
NA_BATTERY = 0x7FF  # 11 bits all set
NA_TX = 0x1F  # 5 bits all set
NA_U8 = 0xFF


def decode(advert: Advert) -> Decoded:
    data = advert.manufacturer.get(COMPANY)
    if data is None:
        raise DecodeError("no Ruuvi manufacturer data (company 0x0499) in advert")
    if not data:
        raise DecodeError("empty Ruuvi manufacturer data")
    if data[0] != FORMAT:
        raise DecodeError(f"Ruuvi data format {data[0]} not supported (only 5)")
    if len(data) != LENGTH:
        raise DecodeError(f"Ruuvi format 5 needs {LENGTH} bytes, got {len(data)}")
    _fmt, temp, hum, pres, ax, ay, az, power, movement, seq, _mac = _LAYOUT.unpack(data)
    out: list[Observation] = []
    if temp != NA_S16:
        out.append(Observation("temperature", round(temp * 0.005, 3), "degC"))
    if hum != NA_U16:
        humidity = round(hum * 0.0025, 4)
        out.append(Observation("humidity", humidity, "%", plausible=humidity <= 100.0))
    if pres != NA_U16:
        out.append(Observation("pressure", round((pres + 50000) / 100, 2), "hPa"))
    for axis, value in (("x", ax), ("y", ay), ("z", az)):
        if value != NA_S16:
            out.append(Observation(f"acceleration_{axis}", round(value / 1000, 3), "g"))
    battery, tx = power >> 5, power & 0x1F
    if battery != NA_BATTERY:
        out.append(Observation("voltage", round((battery + 1600) / 1000, 3), "V"))
    if tx != NA_TX:
        out.append(Observation("tx_power", tx * 2 - 40, "dBm"))
    if movement != NA_U8:
        out.append(Observation("movement_count", movement, ""))
    return Decoded(out, None if seq == NA_U16 else ("s", seq))
