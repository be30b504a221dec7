"""Custom thermometer firmware adverts on service data 0x181A: ATC1441 and pvvx formats.

Told apart by length (github.com/atc1441/ATC_MiThermometer and pvvx/ATC_MiThermometer READMEs):
ATC1441, 13 bytes big-endian: MAC[6], temperature s16 x0.1 degC, humidity u8 %, battery u8 %,
battery u16 mV, frame counter u8. pvvx custom, 15 bytes little-endian: MAC[6] (reversed),
temperature s16 x0.01 degC, humidity u16 x0.01 %, battery u16 mV, battery u8 %, counter u8,
flags u8. Pure: only DecodeError escapes.
"""

from __future__ import annotations

import struct

from drivers.ble.advert import Advert, Decoded
from gateway.errors import DecodeError
from gateway.model import Observation

UUID = 0x181A  # Environmental Sensing service UUID, borrowed by both firmwares
_ATC = struct.Struct(">6shBBHB")
_PVVX = struct.Struct("<6shHHBBB")


def decode(advert: Advert) -> Decoded:
    data = advert.service16(UUID)
    if data is None:
        raise DecodeError("no service data 0x181A in advert")
    if len(data) == _ATC.size:
        _mac, temp, hum, bat, mv, counter = _ATC.unpack(data)
        out = [
            Observation("temperature", round(temp * 0.1, 1), "degC"),
            Observation("humidity", hum, "%", plausible=hum <= 100),
            Observation("battery", bat, "%", plausible=bat <= 100),
            Observation("voltage", mv / 1000, "V"),
        ]
        return Decoded(out, ("c", counter))
    if len(data) == _PVVX.size:
        _mac, temp, hum, mv, bat, counter, _flags = _PVVX.unpack(data)
        humidity = round(hum * 0.01, 2)
        out = [
            Observation("temperature", round(temp * 0.01, 2), "degC"),
            Observation("humidity", humidity, "%", plausible=humidity <= 100),
            Observation("battery", bat, "%", plausible=bat <= 100),
            Observation("voltage", mv / 1000, "V"),
        ]
        return Decoded(out, ("c", counter))
    raise DecodeError(
        f"service data 0x181A of {len(data)} bytes is neither ATC1441 (13) nor pvvx (15)"
    )
